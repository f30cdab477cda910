package docker_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

// registry stands in for a private registry: the Docker Registry HTTP API
// v2 behind basic auth (as an htpasswd-protected registry serves it), with
// the waiter as its one image, recording the Authorization header of every
// request. The engine treats registries on 127.0.0.0/8 as insecure, so
// plain HTTP on loopback is what it speaks to it.
type registry struct {
	host       string // 127.0.0.1:port
	user, pass string

	manifests map[string][]byte // repo:tag and repo:digest -> manifest
	blobs     map[string][]byte // digest -> content

	mu         sync.Mutex
	auths      []string      // Authorization of every request after the ping
	tagLookups int           // manifest requests by tag: one per pull, whether or not it downloads
	hold       chan struct{} // when set, blob downloads wait until it closes
}

const manifestType = "application/vnd.docker.distribution.manifest.v2+json"

func newRegistry(t *testing.T, user, pass string) *registry {
	r := &registry{user: user, pass: pass, manifests: map[string][]byte{}, blobs: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// push stores the waiter as repo:tag and returns the image reference.
func (r *registry) push(t *testing.T, repo, tag string) string {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	bin := dockertest.WaiterBinary(t)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dockertest.WaiterPath, "/"), Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(bin); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layer.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string{dockertest.WaiterPath}, "User": dockertest.WaiterUser},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digest(layer.Bytes())}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifestType,
		"config":        map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": digest(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": gz.Len(), "digest": digest(gz.Bytes())}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.blobs[digest(config)] = config
	r.blobs[digest(gz.Bytes())] = gz.Bytes()
	// The engine asks for the tag, then for the digest it was told.
	r.manifests[repo+":"+tag] = manifest
	r.manifests[repo+":"+digest(manifest)] = manifest
	return r.host + "/" + repo + ":" + tag
}

func digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func (r *registry) serve(w http.ResponseWriter, req *http.Request) {
	got := req.Header.Get("Authorization")
	if req.URL.Path != "/v2/" || got != "" {
		r.mu.Lock()
		r.auths = append(r.auths, got)
		r.mu.Unlock()
	}
	if got != basic(r.user, r.pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="agentscaler-test"`)
		registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	path := strings.TrimPrefix(req.URL.Path, "/v2/")
	switch {
	case path == "":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	case strings.Contains(path, "/manifests/"):
		repo, tag, _ := strings.Cut(path, "/manifests/")
		m, ok := r.manifests[repo+":"+tag]
		if !ok {
			registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		if !strings.HasPrefix(tag, "sha256:") {
			r.mu.Lock()
			r.tagLookups++
			r.mu.Unlock()
		}
		w.Header().Set("Content-Type", manifestType)
		w.Header().Set("Docker-Content-Digest", digest(m))
		w.Header().Set("Content-Length", fmt.Sprint(len(m)))
		if req.Method == http.MethodGet {
			_, _ = w.Write(m)
		}
	case strings.Contains(path, "/blobs/"):
		_, d, _ := strings.Cut(path, "/blobs/")
		b, ok := r.blobs[d]
		if !ok {
			registryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown")
			return
		}
		r.mu.Lock()
		hold := r.hold
		r.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-req.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Header().Set("Docker-Content-Digest", d)
		if req.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	default:
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
	}
}

func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]string{"code": code, "message": msg}}})
}

// sent returns the Authorization headers received so far.
func (r *registry) sent() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auths...)
}

// pulls counts the pulls the engine made: each resolves the tag.
func (r *registry) pulls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tagLookups
}

// checkSent fails the test unless want was sent and nothing else was.
func checkSent(t *testing.T, r *registry, want string) {
	t.Helper()
	sent := r.sent()
	if len(sent) == 0 {
		t.Fatalf("the registry received no authenticated request")
	}
	for _, got := range sent {
		if got != want {
			t.Errorf("the registry received Authorization %q, want %q", got, want)
		}
	}
}

// removeImage deletes ref from the engine when the test ends, so that
// another run pulls it again.
func removeImage(t *testing.T, ref string) {
	cli := engineClient(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_, _ = cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true})
	})
}

func TestPullSendsTheConfiguredCredentials(t *testing.T) {
	const user, pass = "ci-bot", "registry-pass-5f1e"
	reg := newRegistry(t, user, pass)
	configFile := filepath.Join(t.TempDir(), "config.json")
	auths := fmt.Sprintf(`{"auths": {"https://%s": {"auth": %q}, "other.example.com": {"auth": %q}}, "credsStore": "desktop"}`,
		reg.host, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)), base64.StdEncoding.EncodeToString([]byte("someone:else")))
	if err := os.WriteFile(configFile, []byte(auths), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]docker.Options{
		"username_password": {Auth: &docker.Auth{Username: user, Password: pass}},
		"config_file":       {DockerConfig: configFile},
	} {
		t.Run(name, func(t *testing.T) {
			ref := reg.push(t, "agents/"+name, randomHex(t, 4))
			removeImage(t, ref)
			opts.Network, opts.Pull = "none", docker.PullMissing
			p := newProvider(t, opts)
			s := spec(t, "auth")
			s.Image = ref
			in := create(t, p, s)
			if in.State != providers.StateRunning && in.State != providers.StatePending {
				t.Errorf("instance from the pulled image: %+v", in)
			}
			checkSent(t, reg, basic(user, pass))
		})
	}
}

func TestPullWithWrongCredentialsIsAPermanentAuthError(t *testing.T) {
	reg := newRegistry(t, "ci-bot", "registry-pass-5f1e")
	ref := reg.push(t, "agents/waiter", "1")
	removeImage(t, ref)
	const wrong = "not-the-password"
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullMissing, Auth: &docker.Auth{Username: "ci-bot", Password: wrong}})
	s := spec(t, "deny")
	s.Image = ref
	_, err := p.Create(ctxFor(t), s)
	if err == nil {
		_ = p.Delete(ctxFor(t), s.Name)
		t.Fatal("Create with refused credentials succeeded")
	}
	if retry, _, reason := providers.Classify(err); retry || reason != "auth" {
		t.Errorf("Create with refused credentials: %v (retryable %v, reason %q); want a permanent auth error", err, retry, reason)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("the error shows the password: %v", err)
	}
	checkSent(t, reg, basic("ci-bot", wrong))
}

func TestPullPolicies(t *testing.T) {
	reg := newRegistry(t, "ci-bot", "registry-pass-5f1e")
	auth := &docker.Auth{Username: "ci-bot", Password: "registry-pass-5f1e"}
	ref := reg.push(t, "agents/policy", randomHex(t, 4))
	removeImage(t, ref)
	createFrom := func(policy docker.PullPolicy, want int) {
		t.Helper()
		p := newProvider(t, docker.Options{Network: "none", Pull: policy, Auth: auth})
		s := spec(t, "pol")
		s.Image = ref
		create(t, p, s)
		if got := reg.pulls(); got != want {
			t.Errorf("after a create with pull %s, the engine had pulled %d times, want %d", policy, got, want)
		}
	}
	createFrom(docker.PullMissing, 1) // not on the engine: pulled
	createFrom(docker.PullMissing, 1) // there now: not pulled again
	createFrom(docker.PullNever, 1)
	createFrom(docker.PullAlways, 2)
}

func TestPullGoesOnAfterTheCreateThatStartedItGivesUp(t *testing.T) {
	reg := newRegistry(t, "ci-bot", "registry-pass-5f1e")
	ref := reg.push(t, "agents/slow", randomHex(t, 4))
	removeImage(t, ref)
	hold := make(chan struct{})
	reg.mu.Lock()
	reg.hold = hold
	reg.mu.Unlock()
	p := newProvider(t, docker.Options{Network: "none", Pull: docker.PullMissing, Auth: &docker.Auth{Username: "ci-bot", Password: "registry-pass-5f1e"}})
	s := spec(t, "slow")
	s.Image = ref

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	_, err := p.Create(ctx, s)
	cancel()
	if retry, _, reason := providers.Classify(err); err == nil || !retry || reason != "pulling" {
		t.Fatalf("Create while the blobs are held: %v (reason %q); want a retryable pulling error", err, reason)
	}
	close(hold)
	in := create(t, p, s)
	if in.Name != s.Name {
		t.Errorf("Create after the pull = %+v", in)
	}
	if got := reg.pulls(); got != 1 {
		t.Errorf("the engine pulled %d times; want 1: the second create waits for the first pull", got)
	}
}

func TestPrepullLogsAndLeavesTheImage(t *testing.T) {
	const pass = "registry-pass-5f1e"
	reg := newRegistry(t, "ci-bot", pass)
	ref := reg.push(t, "agents/prepull", randomHex(t, 4))
	removeImage(t, ref)
	logs := &syncbuf.Buffer{}
	p := newProvider(t, docker.Options{
		Pull: docker.PullMissing, Auth: &docker.Auth{Username: "ci-bot", Password: pass},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err := p.Prepull(ctxFor(t), ref); err != nil {
		t.Fatal(err)
	}
	if ok, err := p.ImageExists(ctxFor(t), ref); err != nil || !ok {
		t.Errorf("ImageExists after Prepull = %v, %v; want true", ok, err)
	}
	if err := p.Prepull(ctxFor(t), ref); err != nil || reg.pulls() != 1 {
		t.Errorf("a second Prepull with pull missing: %v, %d pulls; want nil and still 1", err, reg.pulls())
	}
	out := logs.String()
	if !strings.Contains(out, "pulled image") || !strings.Contains(out, ref) {
		t.Errorf("logs do not report the pull of %s:\n%s", ref, out)
	}
	if strings.Contains(out, pass) {
		t.Errorf("logs show the registry password:\n%s", out)
	}
}
