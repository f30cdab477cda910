package kubetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCacheDir(t *testing.T) {
	t.Setenv("AGENTSCALER_KUBE_CACHE", "/srv/kube-cache")
	if dir, err := CacheDir(); err != nil || dir != filepath.Join("/srv/kube-cache", Version) {
		t.Errorf("CacheDir() = %q, %v; want the version under AGENTSCALER_KUBE_CACHE", dir, err)
	}
	if dir, err := HelmCacheDir(); err != nil || dir != filepath.Join("/srv/kube-cache", "helm-"+HelmVersion) {
		t.Errorf("HelmCacheDir() = %q, %v; want helm-<version> under AGENTSCALER_KUBE_CACHE", dir, err)
	}
	t.Setenv("AGENTSCALER_KUBE_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/home/ci/.cache")
	if dir, err := CacheDir(); err != nil || dir != filepath.Join("/home/ci/.cache/agentscaler/kube", Version) {
		t.Errorf("CacheDir() = %q, %v; want it under XDG_CACHE_HOME", dir, err)
	}
}

// TestStagingModules reads the real k8s.io/kubernetes go.mod (from the
// module cache, or through the proxy) and checks the throwaway module
// replaces what it must.
func TestStagingModules(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.26.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mods, err := stagingModules(t.Context(), goTool, dir, append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go", "k8s.io/apiserver", "k8s.io/component-base", "k8s.io/kube-controller-manager"} {
		if !strings.Contains(string(throwawayGoMod(mods)), "\t"+want+" => "+want+" "+stagingVersion+"\n") {
			t.Errorf("the throwaway go.mod does not pin %s to %s:\n%s", want, stagingVersion, throwawayGoMod(mods))
		}
	}
}

// TestNoEtcd checks that a machine without etcd is told how to get it.
func TestNoEtcd(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := start()
	if err == nil || !strings.Contains(err.Error(), "apt-get install etcd-server") {
		t.Errorf("start() without etcd = %v; want an error naming apt-get install etcd-server", err)
	}
}
