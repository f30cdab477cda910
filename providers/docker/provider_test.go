package docker_test

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
	"github.com/agentscaler/agentscaler/providers/providertest"
)

func TestConformance(t *testing.T) {
	for _, tokenFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("token_file=%v", tokenFile), func(t *testing.T) {
			cli := engineClient(t)
			providertest.Run(t, providertest.Harness{
				New: func(t *testing.T) providers.Provider {
					return newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever, TokenFile: tokenFile})
				},
				Spec: func(*testing.T) providers.AgentSpec {
					return providers.AgentSpec{Image: waiterRef, Env: map[string]string{"AZP_URL": "https://dev.azure.com/contoso"}}
				},
				Finish: func(t *testing.T, _ providers.Provider, name string, code int) { finish(t, cli, name, code) },
				Foreign: func(t *testing.T, pool string) {
					// Made by hand with the pool label, as someone copying our
					// labels would; without the managed one it is not ours.
					name := pool + "-r424242"
					_, err := cli.ContainerCreate(ctxFor(t), &container.Config{Image: waiterRef, Labels: map[string]string{providers.LabelPool: pool}},
						&container.HostConfig{NetworkMode: "none"}, nil, nil, name)
					if err != nil {
						t.Fatalf("create the foreign container: %v", err)
					}
					t.Cleanup(func() { _ = cli.ContainerRemove(t.Context(), name, container.RemoveOptions{Force: true}) })
				},
				Wait: opTimeout,
			})
		})
	}
}

func TestTokenFileKeepsTheSecretOutOfTheContainerConfig(t *testing.T) {
	cli := engineClient(t)
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever, TokenFile: true})
	s := spec(t, "tf")
	secret := "azp-pat-" + randomHex(t, 20)
	s.Secrets = map[string]string{"AZP_TOKEN": secret}
	create(t, p, s)

	// The agent, an unprivileged user, reads it from the file the variable names.
	report := waiterReport(t, cli, s.Name)
	sum := sha256.Sum256([]byte(secret))
	for _, want := range []string{"uid=65534\n", fmt.Sprintf("file AZP_TOKEN_FILE sha256=%x\n", sum)} {
		if !strings.Contains(report, want) {
			t.Errorf("the waiter reports:\n%s\nwant a line %q", report, want)
		}
	}

	c, err := cli.ContainerInspect(ctxFor(t), s.Name)
	if err != nil {
		t.Fatal(err)
	}
	if want := "AZP_TOKEN_FILE=" + docker.SecretDir + "/AZP_TOKEN"; !slices.Contains(c.Config.Env, want) {
		t.Errorf("Env = %q, want %q", c.Config.Env, want)
	}
	for _, kv := range c.Config.Env {
		if strings.HasPrefix(kv, "AZP_TOKEN=") {
			t.Errorf("Env carries %s= with token_file on", "AZP_TOKEN")
		}
	}
	// Everything inspect shows: Env, Cmd, Entrypoint, Labels, binds, mounts.
	all, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(all, []byte(secret)) {
		t.Errorf("docker inspect of %s shows the secret", s.Name)
	}
	if c.HostConfig.AutoRemove {
		t.Errorf("AutoRemove is on; the exit code would be lost")
	}

	if err := p.Delete(ctxFor(t), s.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(ctxFor(t), s.Name); !cerrdefs.IsNotFound(err) {
		t.Errorf("after Delete, inspect of %s: %v; want not found", s.Name, err)
	}
}

func TestSecretsAsEnvironmentByDefault(t *testing.T) {
	cli := engineClient(t)
	p := newProvider(t, docker.Options{Pull: docker.PullNever})
	s := spec(t, "env")
	s.Secrets = map[string]string{"AZP_TOKEN": "azp-pat-" + randomHex(t, 20)}
	create(t, p, s)
	c, err := cli.ContainerInspect(ctxFor(t), s.Name)
	if err != nil {
		t.Fatal(err)
	}
	// The stock agent images read AZP_TOKEN itself.
	if want := "AZP_TOKEN=" + s.Secrets["AZP_TOKEN"]; !slices.Contains(c.Config.Env, want) {
		t.Errorf("Env does not carry AZP_TOKEN with token_file off")
	}
	for _, kv := range c.Config.Env {
		if strings.HasPrefix(kv, "AZP_TOKEN_FILE=") {
			t.Errorf("Env carries %q with token_file off", kv)
		}
	}
	if c.HostConfig.NetworkMode != docker.DefaultNetwork {
		t.Errorf("NetworkMode = %q, want the default %q", c.HostConfig.NetworkMode, docker.DefaultNetwork)
	}
}

func TestMountsLimitsLabelsNetworkAndMTU(t *testing.T) {
	cli := engineClient(t)
	hostDir := t.TempDir()
	if err := os.WriteFile(hostDir+"/ca.crt", []byte("not really a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	volume := uniquePool(t, "agentscaler-test-cache-")
	t.Cleanup(func() { _ = cli.VolumeRemove(t.Context(), volume, true) })
	p := newProvider(t, docker.Options{
		Network: "none",
		Pull:    docker.PullNever,
		Mounts: []docker.Mount{
			{Source: hostDir, Target: "/etc/agent-certs", ReadOnly: true},
			{Source: volume, Target: "/cache"},
		},
		Labels: map[string]string{"com.example.team": "platform", providers.LabelPool: "not-this-one"},
		MTU:    1450,
	})
	s := spec(t, "lim")
	s.CPU, s.MemoryMB = 0.5, 96
	create(t, p, s)

	c, err := cli.ContainerInspect(ctxFor(t), s.Name)
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HostConfig
	if hc.NanoCPUs != 500_000_000 || hc.Memory != 96<<20 {
		t.Errorf("NanoCPUs %d, Memory %d; want 500000000 (0.5 cpu) and %d (96 MiB)", hc.NanoCPUs, hc.Memory, 96<<20)
	}
	if hc.NetworkMode != "none" {
		t.Errorf("NetworkMode = %q, want none", hc.NetworkMode)
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeBind, Source: hostDir, Target: "/etc/agent-certs", ReadOnly: true},
		{Type: mount.TypeVolume, Source: volume, Target: "/cache"},
	}
	if !slices.EqualFunc(hc.Mounts, wantMounts, func(a, b mount.Mount) bool {
		return a.Type == b.Type && a.Source == b.Source && a.Target == b.Target && a.ReadOnly == b.ReadOnly
	}) {
		t.Errorf("Mounts = %+v, want %+v", hc.Mounts, wantMounts)
	}
	// The engine mounted them as asked.
	seen := map[string]bool{}
	for _, m := range c.Mounts {
		seen[m.Destination] = true
		if m.Destination == "/etc/agent-certs" && m.RW {
			t.Errorf("/etc/agent-certs is mounted read-write")
		}
	}
	if !seen["/etc/agent-certs"] || !seen["/cache"] {
		t.Errorf("mounted %v; want /etc/agent-certs and /cache", slices.Sorted(maps.Keys(seen)))
	}
	wantLabels := map[string]string{
		"com.example.team":     "platform",
		providers.LabelManaged: "true",
		providers.LabelPool:    s.Pool, // the instance's own labels win
		providers.LabelRequest: "1",
	}
	if !maps.Equal(c.Config.Labels, wantLabels) {
		t.Errorf("Labels = %v, want %v", c.Config.Labels, wantLabels)
	}
	if !slices.Contains(c.Config.Env, docker.MTUEnv+"=1450") {
		t.Errorf("Env = %q, want %s=1450", c.Config.Env, docker.MTUEnv)
	}
}

func TestPullNeverWithAMissingImage(t *testing.T) {
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever})
	s := spec(t, "nv")
	s.Image = "agentscaler-test/absent:" + randomHex(t, 4)
	_, err := p.Create(ctxFor(t), s)
	if err == nil {
		_ = p.Delete(ctxFor(t), s.Name)
		t.Fatalf("Create with pull never and no image succeeded")
	}
	retry, _, reason := providers.Classify(err)
	if retry || reason != "image_not_found" {
		t.Errorf("error %v: retryable %v, reason %q; want permanent, image_not_found", err, retry, reason)
	}
	for _, want := range []string{s.Image, "pull policy is never"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if ins, err := p.List(ctxFor(t), s.Pool); err != nil || len(ins) != 0 {
		t.Errorf("List after the refused create = %+v, %v; want none", ins, err)
	}
	err = p.Prepull(ctxFor(t), s.Image)
	if retry, _, reason := providers.Classify(err); err == nil || retry || reason != "image_not_found" {
		t.Errorf("Prepull with pull never and no image: %v (reason %q); want a permanent image_not_found", err, reason)
	}
}

func TestInvalidParametersArePermanent(t *testing.T) {
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever})
	tooManyCPUs := spec(t, "cpu")
	tooManyCPUs.CPU = 4096
	badRef := spec(t, "ref")
	badRef.Image = "Not A Reference"
	badSecret := spec(t, "sec")
	badSecret.Secrets = map[string]string{"AZP-TOKEN": "x"}
	for _, tc := range []struct {
		spec   providers.AgentSpec
		reason string
		says   string
	}{
		{tooManyCPUs, "invalid_spec", "CPU"},
		{badRef, "invalid_image", "image reference"},
		{badSecret, "invalid_secret", "AZP-TOKEN"},
	} {
		_, err := p.Create(ctxFor(t), tc.spec)
		if err == nil {
			_ = p.Delete(ctxFor(t), tc.spec.Name)
			t.Errorf("Create(%+v) succeeded; want %s", tc.spec, tc.reason)
			continue
		}
		retry, _, reason := providers.Classify(err)
		if retry || reason != tc.reason || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Create: %v (retryable %v, reason %q); want permanent %s saying %q", err, retry, reason, tc.reason, tc.says)
		}
	}
}

func TestAnImageThatCannotStartListsAsFailed(t *testing.T) {
	const ref = "agentscaler-test/no-entrypoint:1"
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever})
	err := p.ImportImage(ctxFor(t), ref, docker.Image{
		Files:      map[string][]byte{dockertest.WaiterPath: dockertest.WaiterBinary(t)},
		Entrypoint: []string{"/not-there"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := spec(t, "bad")
	s.Image = ref
	t.Cleanup(func() { _ = p.Delete(t.Context(), s.Name) })
	_, err = p.Create(ctxFor(t), s)
	if retry, _, reason := providers.Classify(err); err == nil || retry || reason != "start" {
		t.Fatalf("Create of an image whose entrypoint is missing: %v (reason %q); want a permanent start error", err, reason)
	}
	// Kept, so the scaler's failure backoff applies rather than a retry loop.
	ins, err := p.List(ctxFor(t), s.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].State != providers.StateFailed || !strings.Contains(ins[0].Reason, "/not-there") {
		t.Fatalf("List = %+v; want one failed instance whose reason names /not-there", ins)
	}
	// A second create of the name returns it as it is, without starting it again.
	in, err := p.Create(ctxFor(t), s)
	if err != nil || in.State != providers.StateFailed {
		t.Errorf("second Create = %+v, %v; want the failed instance", in, err)
	}
}

func TestCreateFinishesAContainerItsCreatorLeftUnstarted(t *testing.T) {
	cli := engineClient(t)
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever, TokenFile: true})
	s := spec(t, "adopt")
	s.Secrets = map[string]string{"AZP_TOKEN": "azp-pat-" + randomHex(t, 20)}
	// What a process that died between create and start leaves behind.
	_, err := cli.ContainerCreate(ctxFor(t), &container.Config{Image: waiterRef, Labels: providers.Labels(s),
		Env: []string{"AZP_TOKEN_FILE=" + docker.SecretDir + "/AZP_TOKEN"}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, s.Name)
	if err != nil {
		t.Fatal(err)
	}
	in := create(t, p, s)
	if in.State == providers.StatePending {
		in = awaitState(t, p, s.Pool, s.Name, providers.StateRunning)
	}
	if in.State != providers.StateRunning || in.Started.IsZero() {
		t.Errorf("Create of a created-but-never-started instance = %+v; want it running", in)
	}
	sum := sha256.Sum256([]byte(s.Secrets["AZP_TOKEN"]))
	if report := waiterReport(t, cli, s.Name); !strings.Contains(report, fmt.Sprintf("file AZP_TOKEN_FILE sha256=%x", sum)) {
		t.Errorf("the waiter reports:\n%s\nwant the token file it was given", report)
	}
}

func TestDeleteLeavesOthersContainersAlone(t *testing.T) {
	cli := engineClient(t)
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever})
	pool := uniquePool(t, "del")
	if err := p.Delete(ctxFor(t), ci.Requests.JobName(pool, 404)); err != nil {
		t.Errorf("Delete of a missing instance: %v; want nil", err)
	}
	name := ci.Requests.JobName(pool, 1)
	if _, err := cli.ContainerCreate(ctxFor(t), &container.Config{Image: waiterRef}, &container.HostConfig{NetworkMode: "none"}, nil, nil, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.ContainerRemove(t.Context(), name, container.RemoveOptions{Force: true}) })
	err := p.Delete(ctxFor(t), name)
	if retry, _, reason := providers.Classify(err); err == nil || retry || reason != "not_managed" {
		t.Errorf("Delete of a container without our labels: %v (reason %q); want a permanent not_managed", err, reason)
	}
	if _, err := cli.ContainerInspect(ctxFor(t), name); err != nil {
		t.Errorf("the unmanaged container is gone after Delete: %v", err)
	}
	// Nor does Create take it over.
	s := providers.AgentSpec{Name: name, Pool: pool, Request: 1, Image: waiterRef}
	if _, err := p.Create(ctxFor(t), s); err == nil {
		t.Errorf("Create over an unmanaged container of the same name succeeded")
	} else if retry, _, reason := providers.Classify(err); retry || reason != "name_taken" {
		t.Errorf("Create over an unmanaged container: %v (reason %q); want a permanent name_taken", err, reason)
	}
}

func TestUnreachableEngineIsRetryable(t *testing.T) {
	p, err := docker.New(docker.Options{Host: "unix://" + t.TempDir() + "/no.sock", CallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s := spec(t, "down")
	_, err = p.Create(ctxFor(t), s)
	if retry, _, reason := providers.Classify(err); err == nil || !retry || reason != "unreachable" {
		t.Errorf("Create on an engine that is not there: %v (reason %q); want retryable unreachable", err, reason)
	}
	_, err = p.List(ctxFor(t), s.Pool)
	if retry, _, reason := providers.Classify(err); err == nil || !retry || reason != "unreachable" {
		t.Errorf("List on an engine that is not there: %v (reason %q); want retryable unreachable", err, reason)
	}
}

func TestImportImageIsIdempotent(t *testing.T) {
	p := newProvider(t, docker.Options{})
	ref := "agentscaler-test/import:" + randomHex(t, 4)
	cli := engineClient(t)
	t.Cleanup(func() { _, _ = cli.ImageRemove(t.Context(), ref, image.RemoveOptions{Force: true}) })
	if ok, err := p.ImageExists(ctxFor(t), ref); err != nil || ok {
		t.Fatalf("ImageExists before import = %v, %v; want false", ok, err)
	}
	img := docker.Image{Files: map[string][]byte{"/bin/agent": []byte("#!/bin/false\n")}, Entrypoint: []string{"/bin/agent", "run"}}
	if err := p.ImportImage(ctxFor(t), ref, img); err != nil {
		t.Fatal(err)
	}
	first, err := cli.ImageInspect(ctxFor(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first.Config.Entrypoint, []string{"/bin/agent", "run"}) {
		t.Errorf("Entrypoint = %q", first.Config.Entrypoint)
	}
	if err := p.ImportImage(ctxFor(t), ref, img); err != nil {
		t.Fatal(err)
	}
	second, err := cli.ImageInspect(ctxFor(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Errorf("a second import of %s made a new image %s (was %s)", ref, second.ID, first.ID)
	}
	if err := p.ImportImage(ctxFor(t), "agentscaler-test/import:noentry", docker.Image{Files: img.Files}); err == nil {
		t.Errorf("ImportImage without an entrypoint succeeded")
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tarOf returns a tar stream of regular files, mode 0644.
func tarOf(files map[string]string) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), ModTime: time.Now()}); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, files[name]); err != nil {
			return nil, err
		}
	}
	return &buf, tw.Close()
}
