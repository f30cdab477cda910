package kubernetes_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

// TestErrorsFromTheAPIServer provokes each error class on the real API
// server and checks how it is classified.
func TestErrorsFromTheAPIServer(t *testing.T) {
	e := newEnv(t, nil)
	spec := baseSpec()
	spec.Name, spec.Pool, spec.Request = "err-r1", "err", 1

	t.Run("invalid_object", func(t *testing.T) {
		bad := spec
		bad.Image = "" // the API server requires an image
		_, err := e.provider(t, e.options()).Create(ctx(t), bad)
		wantClass(t, err, false, "invalid")
	})
	t.Run("unauthorized", func(t *testing.T) {
		opt := e.options()
		opt.Config = e.cp.TokenConfig("not-a-token-the-server-knows")
		_, err := e.provider(t, opt).List(ctx(t), spec.Pool)
		wantClass(t, err, false, "unauthorized")
		if !strings.Contains(err.Error(), "credentials") {
			t.Errorf("error does not point at the credentials: %v", err)
		}
	})
	t.Run("no_namespace", func(t *testing.T) {
		opt := e.options()
		opt.Namespace = "no-such-namespace"
		_, err := e.provider(t, opt).Create(ctx(t), spec)
		wantClass(t, err, false, "not_found")
		if !strings.Contains(err.Error(), "no-such-namespace") {
			t.Errorf("error does not name the namespace: %v", err)
		}
	})
	t.Run("forbidden_user", func(t *testing.T) {
		// A user RBAC grants nothing: the error says what to grant.
		opt := e.options()
		opt.Config = e.cp.Config("kubetest-user-1")
		_, err := e.provider(t, opt).List(ctx(t), spec.Pool)
		wantClass(t, err, false, "forbidden: list jobs.batch")
	})
	t.Run("name_taken_by_another_job", func(t *testing.T) {
		other := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "err-r2"},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "x", Image: "busybox"}},
			}}},
		}
		if _, err := e.cp.Admin(t).BatchV1().Jobs(e.ns).Create(ctx(t), other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		taken := spec
		taken.Name, taken.Request = "err-r2", 2
		_, err := e.provider(t, e.options()).Create(ctx(t), taken)
		wantClass(t, err, false, "conflict")
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		opt := e.options()
		opt.Config = &rest.Config{Host: "http://" + addr}
		_, err = e.provider(t, opt).List(ctx(t), spec.Pool)
		wantClass(t, err, true, "unreachable")
	})
}

// apiStatus writes a metav1.Status as the API server does for errors.
func apiStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":%q,"code":%d}`, msg, reason, code)
}

// TestErrorsFromAThrottlingServer stands in for an API server under load,
// which this machine cannot produce on demand: a loopback server answering
// as kube-apiserver's priority-and-fairness filter does (429, Retry-After,
// a plain-text body), or with the Status objects of a failing server and a
// full quota.
func TestErrorsFromAThrottlingServer(t *testing.T) {
	const emptyJobList = `{"kind":"JobList","apiVersion":"batch/v1","metadata":{"resourceVersion":"1"},"items":[]}`
	throttle := func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "Too many requests, please try again later.", http.StatusTooManyRequests)
	}
	newProvider := func(t *testing.T, h http.HandlerFunc) *kubernetes.Provider {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		p, err := kubernetes.New(kubernetes.Options{Config: &rest.Config{Host: srv.URL}, Namespace: "agents", TokenSecret: "azp-token"})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("throttled_then_served", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int32
		p := newProvider(t, func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) <= 2 {
				throttle(w)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, emptyJobList)
		})
		// The client waits out Retry-After and asks again.
		if _, err := p.List(ctx(t), "linux"); err != nil {
			t.Fatalf("List through two 429s: %v", err)
		}
		if n := calls.Load(); n != 3 {
			t.Errorf("the server saw %d requests, want 3 (two throttled, one served)", n)
		}
	})
	t.Run("throttled", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int32
		p := newProvider(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1); throttle(w) })
		_, err := p.List(ctx(t), "linux")
		if retryable, after, _ := wantClass(t, err, true, "throttled"); retryable && after != time.Second {
			t.Errorf("retry after %v, want the server's 1s", after)
		}
		if n := calls.Load(); n < 2 {
			t.Errorf("the server saw %d requests; the client gave up without waiting out Retry-After", n)
		}
	})
	t.Run("server_error", func(t *testing.T) {
		t.Parallel()
		p := newProvider(t, func(w http.ResponseWriter, r *http.Request) {
			apiStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "Internal error occurred: etcdserver: request timed out")
		})
		err := p.Delete(ctx(t), "linux-r1")
		wantClass(t, err, true, "server_error")
	})
	t.Run("quota", func(t *testing.T) {
		t.Parallel()
		p := newProvider(t, func(w http.ResponseWriter, r *http.Request) {
			apiStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
				`jobs.batch "linux-r1" is forbidden: exceeded quota: agents, requested: count/jobs.batch=1, used: count/jobs.batch=20, limited: count/jobs.batch=20`)
		})
		spec := baseSpec()
		spec.Name, spec.Pool, spec.Request = "linux-r1", "linux", 1
		_, err := p.Create(ctx(t), spec)
		wantClass(t, err, false, "quota")
	})
}

func wantClass(t *testing.T, err error, retryable bool, reason string) (bool, time.Duration, string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %s", reason)
	}
	r, after, why := classify(t, err)
	if r != retryable || why != reason {
		t.Errorf("error %v: retryable %v, reason %q; want %v, %q", err, r, why, retryable, reason)
	}
	return r, after, why
}
