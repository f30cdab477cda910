package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
		dec := yaml.NewDecoder(strings.NewReader(read(t, filepath.Join(kubeDir, name))))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				break // io.EOF; a parse error fails TestEveryYAMLAndJSONUnderInfraParses
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
	return objs
}

func find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

func TestKubernetesManifestsAcceptedByTheAPIServer(t *testing.T) {
	objs := manifests(t)
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
	defer cancel()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

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
		mapper.Reset()
		if _, err := mapper.RESTMapping(smGVK.GroupKind(), smGVK.Version); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the ServiceMonitor CRD was not served within the deadline")
		case <-time.After(100 * time.Millisecond):
		}
	}

	apply := func(o *unstructured.Unstructured, dryRun bool) error {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
		var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		opts := metav1.CreateOptions{FieldValidation: "Strict"}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = r.Create(ctx, o, opts)
		return err
	}

	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
		// The namespace is created for real: a dry-run object in a namespace that does not exist is refused.
		dryRun := o.GetKind() != "Namespace"
		if err := apply(o, dryRun); err != nil && !(o.GetKind() == "Namespace" && apierrors.IsAlreadyExists(err)) {
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
	if err := apply(broken, true); err == nil || !strings.Contains(err.Error(), "livenessProbes") {
		t.Errorf("a Deployment with an unknown field: %v, want it refused naming the field", err)
	}
	sm := find(objs, "ServiceMonitor").DeepCopy()
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	eps[0].(map[string]any)["interval"] = "every minute"
	_ = unstructured.SetNestedSlice(sm.Object, eps, "spec", "endpoints")
	if err := apply(sm, true); err == nil {
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
	dep, cm, sa := find(objs, "Deployment"), find(objs, "ConfigMap"), find(objs, "ServiceAccount")
	if dep == nil || cm == nil || sa == nil {
		t.Fatal("want a Deployment, a ConfigMap and the ServiceAccount of rbac.yaml")
	}
	for _, o := range objs {
		if o.GetKind() != "Namespace" && o.GetNamespace() != "agents" {
			t.Errorf("%s %s is in namespace %q, want agents, where rbac.yaml grants the rights", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	if spec["serviceAccountName"] != sa.GetName() {
		t.Errorf("serviceAccountName = %v, want %s from rbac.yaml", spec["serviceAccountName"], sa.GetName())
	}
	var pod struct {
		SecurityContext struct {
			RunAsNonRoot bool `json:"runAsNonRoot"`
		} `json:"securityContext"`
		Containers []struct {
			Args []string `json:"args"`
			Env  []struct {
				Name      string `json:"name"`
				ValueFrom *struct {
					SecretKeyRef struct{ Name, Key string } `json:"secretKeyRef"`
				} `json:"valueFrom"`
			} `json:"env"`
			LivenessProbe, ReadinessProbe struct {
				HTTPGet struct{ Path string } `json:"httpGet"`
			}
			SecurityContext struct {
				ReadOnlyRootFilesystem bool `json:"readOnlyRootFilesystem"`
			} `json:"securityContext"`
			VolumeMounts []struct{ Name, MountPath string } `json:"volumeMounts"`
		} `json:"containers"`
		Volumes []struct {
			Name      string
			ConfigMap *struct{ Name string } `json:"configMap"`
		} `json:"volumes"`
	}
	b, _ := json.Marshal(spec)
	if err := json.Unmarshal(b, &pod); err != nil || len(pod.Containers) != 1 {
		t.Fatalf("pod spec: %v (%d containers)", err, len(pod.Containers))
	}
	c := pod.Containers[0]
	if !pod.SecurityContext.RunAsNonRoot || !c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("want runAsNonRoot and readOnlyRootFilesystem")
	}
	if c.LivenessProbe.HTTPGet.Path != "/api/healthz" || c.ReadinessProbe.HTTPGet.Path != "/api/healthz" {
		t.Errorf("probes on %q and %q, want /api/healthz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	// The environment holds the secrets, by reference only.
	env := map[string]string{}
	secretOf := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name == "" {
			t.Errorf("env %s is not a secretKeyRef", e.Name)
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
		t.Fatalf("args = %v, want serve ... --config=<file>", c.Args)
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
		t.Fatalf("--config=%s is not a key of ConfigMap %s mounted in the container", configPath, cm.GetName())
	}
	text, _, _ := unstructured.NestedString(cm.Object, "data", filepath.Base(configPath))
	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the ConfigMap's agentscaler.yaml, with the Deployment's environment, is refused: %v", err)
	}
	for _, p := range cfg.Pools {
		if p.Provider != "kubernetes" {
			continue
		}
		if p.Kubernetes.Namespace != dep.GetNamespace() {
			t.Errorf("pool %s runs agents in %q; rbac.yaml grants rights in %q only", p.Name, p.Kubernetes.Namespace, dep.GetNamespace())
		}
		if secretOf[cfg.AzureDevOps.TokenEnv] != p.Kubernetes.TokenSecret {
			t.Errorf("pool %s: agents take their token from Secret %q, agentscaler from %q: create one Secret and name it in both",
				p.Name, p.Kubernetes.TokenSecret, secretOf[cfg.AzureDevOps.TokenEnv])
		}
	}
}
