//go:build !nokubernetes

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

// TestKubernetesEndToEnd runs the whole loop on a real node
// (kubetest.StartNode): the emulator posts service hooks to serve, whose
// kubernetes pool makes Jobs; the kubelet runs their pods, this very binary
// as the stand-in agent in an image built here, which registers, takes one
// job, reports it and exits. Every job runs exactly once on an agent of its
// own, and no Job, pod or agent of ours is left (serve deletes the Jobs of
// exited agents; TestRealPods in providers/kubernetes checks that
// ttl_after_finished removes those nobody deletes).
func TestKubernetesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a Kubernetes node")
	}
	node := kubetest.StartNode(t)
	cp := kubetest.Start(t)
	ns := cp.Namespace(t, nil)
	node.Bind(t, ns)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	admin := cp.Admin(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "azp-token"}, StringData: map[string]string{kubernetes.DefaultTokenKey: testPAT}}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(buildBinary(t, "lambda.norpc"))
	if err != nil {
		t.Fatal(err)
	}
	const image = "kubetest.local/agentscaler-e2e-agent:1"
	err = node.Import(ctx, kubetest.Image{
		Ref:        image,
		Files:      map[string][]byte{agentImagePath: bin},
		Entrypoint: []string{agentImagePath, testAgentCommand},
		User:       "65534:65534",
		Writable:   []string{"/work"},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, kubetest.AdminUser, "kubetest"); err != nil {
		t.Fatal(err)
	}
	emu := startEmulator(t, adoemu.Options{AutoAssign: true, ParallelJobs: 10})
	cfgPath := filepath.Join(dir, "agentscaler.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, e2eConfigHead+`pools:
  - name: k8s
    azure_pool: Default
    provider: kubernetes
    max_agents: 3
    capabilities: {Agent.OS: Linux}
    agent: {image: %[2]s, work: /work}
    kubernetes: {kubeconfig: %[3]s, namespace: %[4]s, token_secret: azp-token, host_network: true, ttl_after_finished: 2s}
`, emu.OrgURL(), image, kubeconfig, ns), 0o600); err != nil {
		t.Fatal(err)
	}
	_, logs := serveForTest(t, cfgPath, emu)

	const jobs = 4
	for i := range jobs {
		emu.QueueJob("Default", adoemu.Job{Name: fmt.Sprintf("job-%d", i+1), Duration: time.Second})
	}
	// The control plane's calls get a context of their own, so that the
	// diagnostics of a test out of time can still be had.
	wait, stopWaiting := context.WithTimeout(ctx, 3*time.Minute)
	defer stopWaiting()
	for {
		done, ours := 0, 0
		for _, r := range emu.Requests("Default") {
			if r.State() == adoemu.StateCompleted {
				done++
			}
		}
		for _, ag := range emu.Agents("Default") {
			if strings.HasPrefix(ag.Name, "k8s-r") { // not the empty pool's placeholder
				ours++
			}
		}
		kjobs, err := admin.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if done == jobs && ours == 0 && len(kjobs.Items) == 0 && len(pods.Items) == 0 {
			break
		}
		if wait.Err() != nil {
			t.Fatalf("not done in time: %d of %d jobs done, %d agents, %d Jobs and %d pods of ours left\nlogs:\n%s\nnode:\n%s",
				done, jobs, ours, len(kjobs.Items), len(pods.Items), tail(logs.String(), 40), node.Logs())
		}
		select {
		case <-wait.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Every job ran once, each on an agent (a pod) of its own.
	ran := map[string][]int64{}
	for _, r := range emu.Requests("Default") {
		if r.Result != "succeeded" || !strings.HasPrefix(r.Agent, "k8s-r") {
			t.Errorf("request %d: result %q on agent %q, want succeeded on a k8s agent", r.ID, r.Result, r.Agent)
		}
		ran[r.Agent] = append(ran[r.Agent], r.ID)
	}
	for agent, ids := range ran {
		if len(ids) != 1 {
			t.Errorf("agent %s ran %v; want one job", agent, ids)
		}
	}
	if len(ran) != jobs {
		t.Errorf("%d agents ran the %d jobs: %v", len(ran), jobs, ran)
	}
}
