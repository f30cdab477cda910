// Package kubetest runs a real Kubernetes control plane on loopback for the
// tests of the Kubernetes provider: Debian's etcd, and kube-apiserver and
// kube-controller-manager built from the k8s.io/kubernetes module at Version.
//
// The binaries are built once per machine into a cache outside the
// repository (see CacheDir and Build; `go run ./tools/kubebins`
// warms it), from a throwaway module that requires k8s.io/kubernetes and
// pins every staging module to the matching published version, so this
// module never depends on k8s.io/kubernetes. BuildHelm caches the helm
// binary of HelmVersion the same way, for the chart tests of infra/helm.
//
// The API server serves TLS with a self-signed certificate made at start,
// authenticates static tokens (AdminUser in system:masters, and Users with
// no rights but what RBAC grants them) and service account tokens, and
// authorizes with RBAC. The controller manager runs the Job, garbage
// collector, TTL-after-finished, service account and namespace controllers.
// No kubelet or scheduler runs by default: tests move pods through their
// phases with SetPodRunning, SetPodExited, SetPodWaiting and
// SetPodUnschedulable, or let Kubelet mark every new pod of a namespace
// running. StartNode adds a real node, for tests that run pods: a kubelet
// over containerd's CRI plugin and runc (root only), host-network pods
// only, images imported from archives built here (see Node).
//
// One control plane serves every test of a test binary: Start starts it on
// first use, and Main, called from TestMain, stops it (SIGTERM, then SIGKILL)
// when the tests end. Everything listens on 127.0.0.1 only.
package kubetest
