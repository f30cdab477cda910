package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
)

const kubeDir = "infra/kubernetes"

// manifests reads the objects kustomization.yaml lists, in its order, and
// checks that it lists every manifest of the directory.
func manifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal([]byte(read(t, filepath.Join(kubeDir, "kustomization.yaml"))), &k); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(repo, kubeDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			onDisk = append(onDisk, b)
		}
	}
	if got := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(got, onDisk) {
		t.Errorf("kustomization.yaml resources = %v, want every manifest of %s: %v", got, kubeDir, onDisk)
	}
	var objs []*unstructured.Unstructured
	for _, name := range k.Resources {
		objs = append(objs, decodeObjects(t, name, read(t, filepath.Join(kubeDir, name)))...)
	}
	return objs
}

// decodeObjects reads the objects of a YAML stream; name says where it comes
// from.
func decodeObjects(t *testing.T, name, text string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("%s: %v", name, err)
			}
			return objs
		}
		if doc == nil {
			continue
		}
		// Through JSON, so numbers are the types unstructured objects hold.
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		objs = append(objs, u)
	}
}

func find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

// apiServer is the test control plane, with the stand-in ServiceMonitor CRD
// of testdata installed and served.
type apiServer struct {
	ctx    context.Context
	dyn    *dynamic.DynamicClient
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	cp := kubetest.Start(t)
	cfg := cp.Config(kubetest.AdminUser)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	s := &apiServer{ctx: ctx, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}

	var crd unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(read(t, "infra/deploy/testdata/servicemonitor-crd.yaml")), &crd.Object); err != nil {
		t.Fatal(err)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dyn.Resource(crdGVR).Create(ctx, jsonClean(t, &crd), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("install the ServiceMonitor CRD: %v", err)
	}
	// Served once discovery lists it; the mapper caches discovery, so reset it while waiting.
	smGVK := schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}
	for {
		s.mapper.Reset()
		if _, err := s.mapper.RESTMapping(smGVK.GroupKind(), smGVK.Version); err == nil {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatal("the ServiceMonitor CRD was not served within the deadline")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apply creates o with strict field validation; as a server-side dry run
// when dryRun is set.
func (s *apiServer) apply(o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s: %w", gvk, err)
	}
	var r dynamic.ResourceInterface = s.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		r = s.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = r.Create(s.ctx, o, opts)
	return err
}

// createNamespace creates a namespace for real, if it is not there yet: a
// dry-run object in a namespace that does not exist is refused.
func (s *apiServer) createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := s.apply(ns, false); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace %s: %v", name, err)
	}
}

func TestKubernetesManifestsAcceptedByTheAPIServer(t *testing.T) {
	objs := manifests(t)
	s := startAPIServer(t)
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
		// The namespace is created for real: a dry-run object in a namespace that does not exist is refused.
		dryRun := o.GetKind() != "Namespace"
		if err := s.apply(o, dryRun); err != nil && !(o.GetKind() == "Namespace" && apierrors.IsAlreadyExists(err)) {
			t.Errorf("%s %s/%s refused: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "ServiceMonitor"} {
		if !kinds[k] {
			t.Errorf("no %s among the manifests", k)
		}
	}

	// The dry runs above can fail: a field the API does not know is refused.
	broken := find(objs, "Deployment").DeepCopy()
	containers, _, _ := unstructured.NestedSlice(broken.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["livenessProbes"] = containers[0].(map[string]any)["livenessProbe"]
	if err := unstructured.SetNestedSlice(broken.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(broken, true); err == nil || !strings.Contains(err.Error(), "livenessProbes") {
		t.Errorf("a Deployment with an unknown field: %v, want it refused naming the field", err)
	}
	sm := find(objs, "ServiceMonitor").DeepCopy()
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	eps[0].(map[string]any)["interval"] = "every minute"
	_ = unstructured.SetNestedSlice(sm.Object, eps, "spec", "endpoints")
	if err := s.apply(sm, true); err == nil {
		t.Error("a ServiceMonitor with interval \"every minute\" was accepted; the stand-in CRD checks nothing")
	}
}

// jsonClean passes an object read by yaml.v3 through JSON, so its numbers
// are of the types unstructured objects hold.
func jsonClean(t *testing.T, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKubernetesDeploymentFitsItsConfigAndRBAC(t *testing.T) {
	objs := manifests(t)
	for _, o := range objs {
		if o.GetKind() != "Namespace" && o.GetNamespace() != "agents" {
			t.Errorf("%s %s is in namespace %q, want agents, where rbac.yaml grants the rights", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	checkDeploymentFits(t, objs)
}

// rbacRules are the rules of the Role of infra/kubernetes/rbac.yaml: exactly
// the rights the kubernetes provider uses.
func rbacRules(t *testing.T) []any {
	t.Helper()
	role := find(decodeObjects(t, "rbac.yaml", read(t, filepath.Join(kubeDir, "rbac.yaml"))), "Role")
	if role == nil {
		t.Fatal("rbac.yaml holds no Role")
	}
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	if len(rules) == 0 {
		t.Fatal("the Role of rbac.yaml has no rules")
	}
	return rules
}

// checkDeploymentFits checks that the Deployment among objs runs what the
// binary reads: its arguments name a file of the mounted ConfigMap, which,
// with the Deployment's environment (secrets by reference only), is a
// configuration agentscaler accepts; that every kubernetes pool of it runs
// its agents where a RoleBinding gives the Deployment's ServiceAccount the
// rules of rbac.yaml, and takes its agents' token from the Secret agentscaler
// reads its own from; and the pod security and probes every deployment keeps.
func checkDeploymentFits(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, p := range deploymentProblems(t, objs) {
		t.Error(p)
	}
}

// deploymentProblems lists what checkDeploymentFits finds wrong.
func deploymentProblems(t *testing.T, objs []*unstructured.Unstructured) (problems []string) {
	t.Helper()
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	dep, cm := find(objs, "Deployment"), find(objs, "ConfigMap")
	if dep == nil || cm == nil {
		bad("want a Deployment and a ConfigMap")
		return problems
	}
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	var sa *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "ServiceAccount" && o.GetName() == spec["serviceAccountName"] && o.GetNamespace() == dep.GetNamespace() {
			sa = o
		}
	}
	if sa == nil {
		bad("serviceAccountName = %v, want a ServiceAccount of the manifests in %s", spec["serviceAccountName"], dep.GetNamespace())
		return problems
	}
	type securityContext struct {
		RunAsNonRoot             *bool `json:"runAsNonRoot"`
		ReadOnlyRootFilesystem   bool  `json:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
		SeccompProfile struct{ Type string } `json:"seccompProfile"`
	}
	var pod struct {
		SecurityContext securityContext `json:"securityContext"`
		Containers      []struct {
			Args []string `json:"args"`
			Env  []struct {
				Name      string `json:"name"`
				Value     string `json:"value"`
				ValueFrom *struct {
					SecretKeyRef struct{ Name, Key string } `json:"secretKeyRef"`
				} `json:"valueFrom"`
			} `json:"env"`
			LivenessProbe, ReadinessProbe struct {
				HTTPGet struct{ Path string } `json:"httpGet"`
			}
			SecurityContext securityContext                    `json:"securityContext"`
			VolumeMounts    []struct{ Name, MountPath string } `json:"volumeMounts"`
		} `json:"containers"`
		Volumes []struct {
			Name      string
			ConfigMap *struct{ Name string } `json:"configMap"`
		} `json:"volumes"`
	}
	b, _ := json.Marshal(spec)
	if err := json.Unmarshal(b, &pod); err != nil || len(pod.Containers) != 1 {
		bad("pod spec: %v (%d containers)", err, len(pod.Containers))
		return problems
	}
	c := pod.Containers[0]
	// Pod security: a setting of the container overrides the pod's.
	nonRoot := pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	if c.SecurityContext.RunAsNonRoot != nil {
		nonRoot = *c.SecurityContext.RunAsNonRoot
	}
	seccomp := pod.SecurityContext.SeccompProfile.Type
	if c.SecurityContext.SeccompProfile.Type != "" {
		seccomp = c.SecurityContext.SeccompProfile.Type
	}
	if !nonRoot || !c.SecurityContext.ReadOnlyRootFilesystem {
		bad("want runAsNonRoot and readOnlyRootFilesystem")
	}
	if e := c.SecurityContext.AllowPrivilegeEscalation; e == nil || *e {
		bad("want allowPrivilegeEscalation: false")
	}
	if !slices.Contains(c.SecurityContext.Capabilities.Drop, "ALL") {
		bad("capabilities dropped: %v, want ALL", c.SecurityContext.Capabilities.Drop)
	}
	if seccomp != "RuntimeDefault" {
		bad("seccomp profile %q, want RuntimeDefault", seccomp)
	}
	if c.LivenessProbe.HTTPGet.Path != "/api/healthz" || c.ReadinessProbe.HTTPGet.Path != "/api/healthz" {
		bad("probes on %q and %q, want /api/healthz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	// The environment holds the secrets, by reference only.
	env := map[string]string{}
	secretOf := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name == "" || e.Value != "" {
			bad("env %s is not a secretKeyRef", e.Name)
			continue
		}
		env[e.Name] = "value-of-" + e.Name
		secretOf[e.Name] = e.ValueFrom.SecretKeyRef.Name
	}
	// --config names a file of the mounted ConfigMap.
	var configPath string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			configPath = v
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" || configPath == "" {
		bad("args = %v, want serve ... --config=<file>", c.Args)
		return problems
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.GetName() {
				key, ok := strings.CutPrefix(configPath, m.MountPath+"/")
				_, inData, _ := unstructured.NestedString(cm.Object, "data", key)
				mounted = ok && inData
			}
		}
	}
	if !mounted {
		bad("--config=%s is not a key of ConfigMap %s mounted in the container", configPath, cm.GetName())
		return problems
	}
	text, _, _ := unstructured.NestedString(cm.Object, "data", filepath.Base(configPath))
	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(k string) string { return env[k] })
	if err != nil {
		bad("the ConfigMap's agentscaler.yaml, with the Deployment's environment, is refused: %v", err)
		return problems
	}
	rules := rbacRules(t)
	for _, p := range cfg.Pools {
		if p.Provider != "kubernetes" {
			continue
		}
		if !grants(objs, p.Kubernetes.Namespace, sa, rules) {
			bad("pool %s runs agents in %q, where no RoleBinding gives ServiceAccount %s/%s a Role with the rules of rbac.yaml",
				p.Name, p.Kubernetes.Namespace, sa.GetNamespace(), sa.GetName())
		}
		if secretOf[cfg.AzureDevOps.TokenEnv] != p.Kubernetes.TokenSecret {
			bad("pool %s: agents take their token from Secret %q, agentscaler from %q: create one Secret and name it in both",
				p.Name, p.Kubernetes.TokenSecret, secretOf[cfg.AzureDevOps.TokenEnv])
		}
	}
	return problems
}

// grants reports whether objs bind sa, in namespace ns, to a Role there
// whose rules are exactly rules.
func grants(objs []*unstructured.Unstructured, ns string, sa *unstructured.Unstructured, rules []any) bool {
	for _, rb := range objs {
		if rb.GetKind() != "RoleBinding" || rb.GetNamespace() != ns {
			continue
		}
		var binding struct {
			RoleRef  struct{ Kind, Name string } `json:"roleRef"`
			Subjects []struct{ Kind, Name, Namespace string }
		}
		b, _ := json.Marshal(rb.Object)
		if json.Unmarshal(b, &binding) != nil || binding.RoleRef.Kind != "Role" {
			continue
		}
		bound := slices.ContainsFunc(binding.Subjects, func(s struct{ Kind, Name, Namespace string }) bool {
			return s.Kind == "ServiceAccount" && s.Name == sa.GetName() && s.Namespace == sa.GetNamespace()
		})
		for _, role := range objs {
			if bound && role.GetKind() == "Role" && role.GetNamespace() == ns && role.GetName() == binding.RoleRef.Name {
				got, _, _ := unstructured.NestedSlice(role.Object, "rules")
				if reflect.DeepEqual(got, rules) {
					return true
				}
			}
		}
	}
	return false
}
