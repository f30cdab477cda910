package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
)

// NodeName is the name the node registers under.
const NodeName = "kubetest-node"

// PauseImage is the sandbox image of the node's pods: testdata/pause, FROM
// scratch, built and imported when the node starts; no registry is pulled.
const PauseImage = "kubetest.local/pause:1"

// Node is a real kubelet registered with the control plane, over the CRI
// plugin of its own containerd (ContainerdVersion) and Debian's runc.
// Pods run with the host's network only: no CNI plugin is installed, so a
// pod must set hostNetwork. No scheduler runs: Bind assigns a namespace's
// pods to the node as they appear.
type Node struct {
	cp      *ControlPlane
	dir     string
	sock    string // containerd's socket
	ctr     string
	Started time.Duration
}

var sharedNode struct {
	once sync.Once
	node *Node
	err  error
	skip string
}

// StartNode returns the node shared by every test of this binary, starting
// it (and the control plane) on first use. It skips the test, with the
// reason, when the machine cannot run a node: not root, or no runc on PATH
// (under CI=1, which make deps installs, a missing runc fails instead).
func StartNode(t testing.TB) *Node {
	t.Helper()
	cp := Start(t)
	sharedNode.once.Do(func() {
		sharedNode.skip = nodeSkipReason()
		if sharedNode.skip != "" {
			return
		}
		sharedNode.node, sharedNode.err = cp.startNode()
		if sharedNode.err == nil {
			cp.stops = append(cp.stops, sharedNode.node.stop)
			t.Logf("kubetest: node %s (kubelet %s, containerd %s) ready in %v", NodeName, Version, ContainerdVersion, sharedNode.node.Started.Round(time.Millisecond))
		}
	})
	if sharedNode.skip != "" {
		if os.Getenv("CI") != "" && strings.Contains(sharedNode.skip, "runc") {
			t.Fatalf("kubetest: %s (make deps installs it)", sharedNode.skip)
		}
		t.Skip("kubetest: " + sharedNode.skip)
	}
	if sharedNode.err != nil {
		t.Fatal(sharedNode.err)
	}
	return sharedNode.node
}

func nodeSkipReason() string {
	if runtime.GOOS != "linux" {
		return "the node runs on Linux only"
	}
	if os.Geteuid() != 0 {
		return "the kubelet and containerd need root (they mount, and make cgroups and namespaces)"
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return "runc is not installed; install it with `apt-get install runc` (Debian)"
	}
	return ""
}

func (cp *ControlPlane) startNode() (_ *Node, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	kubelet, err := BuildKubelet(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	ctrd, err := BuildContainerd(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	pause, err := dockertest.BuildStatic(filepath.Join(sourceDir(), "testdata", "pause"))
	if err != nil {
		return nil, fmt.Errorf("kubetest: build the pause program: %w", err)
	}
	begin := time.Now()
	// Not under cp.dir: the node's paths go into unix socket names, which
	// must stay short.
	dir, err := os.MkdirTemp("", "ktn-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	n := &Node{cp: cp, dir: dir, sock: filepath.Join(dir, "containerd.sock"), ctr: ctrd.CTR}
	defer func() {
		if err != nil {
			_ = n.stop()
		}
	}()
	if err := n.startContainerd(ctx, ctrd); err != nil {
		return nil, err
	}
	if err := n.Import(ctx, Image{Ref: PauseImage, Files: map[string][]byte{"/pause": pause}, Entrypoint: []string{"/pause"}, User: "65535:65535"}); err != nil {
		return nil, err
	}
	if err := n.startKubelet(ctx, kubelet); err != nil {
		return nil, err
	}
	n.Started = time.Since(begin)
	return n, nil
}

func sourceDir() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(self)
}

func (n *Node) startContainerd(ctx context.Context, c Containerd) error {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Never below containerd's own oom_score_adj: the kubelet asks -998 for the
  # sandbox, and lowering it needs CAP_SYS_RESOURCE, which some sandboxed
  # machines' root lacks (runc then fails: "failed to update
  # /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[6]q
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, filepath.Join(n.dir, "root"), filepath.Join(n.dir, "state"), n.sock, n.sock+".ttrpc", PauseImage, runc)
	cfgPath := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	// containerd finds its shim on PATH.
	p, err := n.cp.runEnv("containerd", c.Daemon, []string{"PATH=" + filepath.Dir(c.Shim) + ":" + os.Getenv("PATH")},
		"--config", cfgPath, "--log-level", "warn")
	if err != nil {
		return err
	}
	return p.await(ctx, time.Minute, func(ctx context.Context) error {
		_, err := n.ctrRun(ctx, nil, "version")
		return err
	})
}

// ctrRun runs ctr against the node's containerd in the k8s.io namespace,
// where the CRI plugin keeps its images and containers.
func (n *Node) ctrRun(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, n.ctr, append([]string{"--address", n.sock, "--namespace", "k8s.io"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Import puts the image into the node's containerd with `ctr images
// import`, unpacked, so that pods that name it (pull policy IfNotPresent or
// Never) run it without a registry.
func (n *Node) Import(ctx context.Context, img Image) error {
	archive, err := ociArchive(img)
	if err != nil {
		return fmt.Errorf("kubetest: image %s: %w", img.Ref, err)
	}
	if _, err := n.ctrRun(ctx, archive, "images", "import", "--platform", "linux/"+runtime.GOARCH, "-"); err != nil {
		return fmt.Errorf("kubetest: import %s: %w", img.Ref, err)
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context, bin string) error {
	kubeconfig := filepath.Join(n.dir, "kubelet.kubeconfig")
	if err := n.cp.WriteKubeconfig(kubeconfig, AdminUser, "kubetest"); err != nil {
		return err
	}
	port, healthz := freePort(), freePort()
	if port == 0 || healthz == 0 {
		return errors.New("kubetest: no free loopback port for the kubelet")
	}
	// Pods get no cgroup hierarchy of their own (cgroupsPerQOS false) and
	// nothing is reserved or evicted: the node shares a busy test machine.
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
resolvConf: ""
podLogsDir: %q
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 2s
`, port, healthz, n.sock, filepath.Join(n.dir, "pod-logs"))
	cfgPath := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	p, err := n.cp.run("kubelet", bin,
		"--config="+cfgPath,
		"--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(n.dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.dir, "kubelet-certs"),
		"--hostname-override="+NodeName,
		"--v=1",
	)
	if err != nil {
		return err
	}
	c, err := kubernetes.NewForConfig(n.cp.Config(AdminUser))
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	// Registered is enough: without CNI the node reports its network not
	// ready, which host-network pods do not need.
	return p.await(ctx, 2*time.Minute, func(ctx context.Context) error {
		_, err := c.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		return err
	})
}

// Bind assigns every pod of the namespace to the node as it appears, in the
// scheduler's stead, until the test ends.
func (n *Node) Bind(t testing.TB, namespace string) {
	t.Helper()
	n.cp.eachNewPod(t, namespace, "binder", bindPod)
}

func bindPod(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) error {
	if p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
		return nil
	}
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: NodeName},
	}
	err := c.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // deleted, or bound, meanwhile
	}
	return err
}

// ExitContainer makes the waiter (dockertest's testdata/waiter) in the
// pod's first container exit with code: it writes dockertest.ExitFile into
// the container's root file system from the host, as no exec stream is
// needed for that.
func (n *Node) ExitContainer(t testing.TB, pod *corev1.Pod, code int) {
	t.Helper()
	if len(pod.Status.ContainerStatuses) == 0 {
		t.Fatalf("kubetest: pod %s has no container status yet", pod.Name)
	}
	_, id, ok := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
	if !ok {
		t.Fatalf("kubetest: pod %s: container not started (%+v)", pod.Name, pod.Status.ContainerStatuses[0].State)
	}
	rootfs := filepath.Join(n.dir, "state", "io.containerd.runtime.v2.task", "k8s.io", id, "rootfs")
	if err := os.WriteFile(filepath.Join(rootfs, dockertest.ExitFile), []byte(strconv.Itoa(code)+"\n"), 0o644); err != nil {
		t.Fatalf("kubetest: end the container of pod %s: %v", pod.Name, err)
	}
}

// stop kills the containers still running, then containerd, the shims and
// the kubelet (the control plane stops those it started), and removes the
// node's directory with its mounts.
func (n *Node) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if out, err := n.ctrRun(ctx, nil, "tasks", "ls"); err == nil {
		for _, line := range strings.Split(string(out), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			if pid, err := strconv.Atoi(f[1]); err == nil && pid > 1 {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					errs = append(errs, fmt.Errorf("kill container pid %d: %w", pid, err))
				}
			}
		}
	}
	errs = append(errs, dockertest.CleanDir(n.dir))
	return errors.Join(errs...)
}

// Logs returns the end of the kubelet's and containerd's logs, for a test
// that failed.
func (n *Node) Logs() string {
	var b strings.Builder
	for _, p := range n.cp.procs {
		if p.name == "kubelet" || p.name == "containerd" {
			fmt.Fprintf(&b, "--- %s:\n%s\n", p.name, tail(p.log))
		}
	}
	return b.String()
}
