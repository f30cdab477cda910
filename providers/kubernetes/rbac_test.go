package kubernetes_test

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

const rbacFile = "../../infra/kubernetes/rbac.yaml"

// rights are the verbs the provider uses, by resource as RBAC names them:
// the Role in rbacFile must grant exactly these.
var rights = map[string][]string{
	"jobs.batch": {"create", "delete", "get", "list", "patch"},
	"pods":       {"list"},
	"secrets":    {"create", "update"},
}

// TestRBAC applies infra/kubernetes/rbac.yaml, runs the provider with a
// token of its ServiceAccount, and checks that the Role grants exactly what
// the provider uses: everything works with it, and without any one of its
// verbs the operation that needs it fails with a permanent error that
// names the verb and the resource to grant.
func TestRBAC(t *testing.T) {
	e := newEnv(t, nil)
	role := applyRBAC(t, e)
	if got := grants(role); !maps.EqualFunc(got, rights, slices.Equal) {
		t.Fatalf("the Role in %s grants %v; the provider uses exactly %v", rbacFile, got, rights)
	}
	tok, err := e.cp.Admin(t).CoreV1().ServiceAccounts(e.ns).CreateToken(ctx(t), "agentscaler",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the agentscaler ServiceAccount: %v", err)
	}
	opt := e.options()
	opt.Config = e.cp.TokenConfig(tok.Status.Token)
	s := &scenarios{e: e, sa: e.provider(t, opt), admin: e.provider(t, e.options())}

	for _, res := range slices.Sorted(maps.Keys(rights)) {
		for _, verb := range rights[res] {
			if err := s.use(t, res, verb); err != nil {
				t.Errorf("with the Role as written, the provider cannot %s %s: %v", verb, res, err)
			}
		}
	}
	if t.Failed() {
		return
	}

	for _, res := range slices.Sorted(maps.Keys(rights)) {
		for _, verb := range rights[res] {
			t.Run("without_"+verb+"_"+res, func(t *testing.T) {
				setRole(t, e, role, res, verb)
				err := s.until(t, res, verb, func(err error) bool { return err != nil })
				retryable, _, reason := classify(t, err)
				if want := "forbidden: " + verb + " " + res; reason != want || retryable {
					t.Errorf("without %s on %s: reason %q (retryable %v), want %q, permanent; error: %v", verb, res, reason, retryable, want, err)
				}
				if msg := err.Error(); !strings.Contains(msg, "rbac.yaml") || !strings.Contains(msg, verb+" "+res) {
					t.Errorf("without %s on %s, the error does not say what to grant: %v", verb, res, err)
				}
				setRole(t, e, role, "", "")
				s.until(t, res, verb, func(err error) bool { return err == nil })
			})
		}
	}
}

// applyRBAC creates the objects of rbacFile in the env's namespace (the
// file says "agents") and returns the Role.
func applyRBAC(t *testing.T, e env) *rbacv1.Role {
	t.Helper()
	raw, err := os.ReadFile(rbacFile)
	if err != nil {
		t.Fatal(err)
	}
	admin := e.cp.Admin(t)
	var role *rbacv1.Role
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", rbacFile, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			o.Namespace = e.ns
			_, err = admin.CoreV1().ServiceAccounts(e.ns).Create(ctx(t), o, metav1.CreateOptions{})
		case *rbacv1.Role:
			o.Namespace = e.ns
			role, err = admin.RbacV1().Roles(e.ns).Create(ctx(t), o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = e.ns
			for i := range o.Subjects {
				if o.Subjects[i].Kind == rbacv1.ServiceAccountKind {
					o.Subjects[i].Namespace = e.ns
				}
			}
			_, err = admin.RbacV1().RoleBindings(e.ns).Create(ctx(t), o, metav1.CreateOptions{})
		default:
			t.Fatalf("%s holds a %T; the test applies only ServiceAccount, Role and RoleBinding", rbacFile, obj)
		}
		if err != nil {
			t.Fatalf("apply %s: %v", rbacFile, err)
		}
	}
	if role == nil {
		t.Fatalf("%s holds no Role", rbacFile)
	}
	return role
}

// grants lists the Role's verbs by resource ("jobs.batch", "pods").
func grants(role *rbacv1.Role) map[string][]string {
	out := map[string][]string{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				name := res
				if g != "" {
					name += "." + g
				}
				out[name] = append(out[name], r.Verbs...)
			}
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

// setRole writes the Role as in the file, less verb on res (nothing less
// when verb is empty).
func setRole(t *testing.T, e env, written *rbacv1.Role, res, verb string) {
	t.Helper()
	roles := e.cp.Admin(t).RbacV1().Roles(e.ns)
	cur, err := roles.Get(ctx(t), written.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Rules = nil
	for _, r := range written.Rules {
		r = *r.DeepCopy()
		if verb != "" && grantsOn(r, res) {
			r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == verb })
		}
		if len(r.Verbs) > 0 { // a rule without verbs is invalid
			cur.Rules = append(cur.Rules, r)
		}
	}
	if _, err := roles.Update(ctx(t), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update Role: %v", err)
	}
}

func grantsOn(r rbacv1.PolicyRule, res string) bool {
	name, group, _ := strings.Cut(res, ".")
	return slices.Contains(r.Resources, name) && slices.Contains(r.APIGroups, group)
}

// scenarios run the provider operation that needs one verb on one
// resource, as the ServiceAccount; what they need beforehand the admin
// sets up.
type scenarios struct {
	e         env
	sa, admin *kubernetes.Provider
	n         atomic.Int64
}

// use runs the scenario for verb on res once, with fresh names.
func (s *scenarios) use(t *testing.T, res, verb string) error {
	t.Helper()
	pool := fmt.Sprintf("rbac%d", s.n.Add(1))
	spec := baseSpec()
	spec.Name, spec.Pool, spec.Request = ci.Requests.JobName(pool, 1), pool, 1
	withSecret := spec
	withSecret.Secrets = map[string]string{"AZP_TOKEN": "t", "EXTRA_SECRET": "x"}
	adminCreate := func() {
		t.Helper()
		if _, err := s.admin.Create(ctx(t), spec); err != nil {
			t.Fatalf("admin Create: %v", err)
		}
	}
	switch res + " " + verb {
	case "jobs.batch create":
		_, err := s.sa.Create(ctx(t), spec)
		return err
	case "jobs.batch get":
		adminCreate()
		_, err := s.sa.Create(ctx(t), spec) // exists: read back
		return err
	case "jobs.batch list", "pods list":
		adminCreate()
		ins, err := s.sa.List(ctx(t), pool)
		if err == nil && len(ins) != 1 {
			t.Errorf("List(%s) = %v, want the one instance", pool, ins)
		}
		return err
	case "jobs.batch patch", "secrets create":
		_, err := s.sa.Create(ctx(t), withSecret) // suspended Job, Secret, resume
		return err
	case "jobs.batch delete":
		adminCreate()
		return s.sa.Delete(ctx(t), spec.Name)
	case "secrets update":
		// A Secret left behind under the instance's name is taken over.
		left := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: spec.Name}, StringData: map[string]string{"EXTRA_SECRET": "old"}}
		if _, err := s.e.cp.Admin(t).CoreV1().Secrets(s.e.ns).Create(ctx(t), left, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create leftover Secret: %v", err)
		}
		_, err := s.sa.Create(ctx(t), withSecret)
		return err
	}
	t.Fatalf("no scenario uses %s on %s", verb, res)
	return nil
}

// until runs the scenario until done(err) holds (a Role change takes a
// moment to reach the authorizer), and returns that error.
func (s *scenarios) until(t *testing.T, res, verb string, done func(error) bool) error {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := s.use(t, res, verb)
		if done(err) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: the Role change did not take effect within a minute (last error: %v)", verb, res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }
