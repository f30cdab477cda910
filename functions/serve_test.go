package functions

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

// signalWriter closes ch on the first log line containing msg.
type signalWriter struct {
	msg string
	ch  chan struct{}
}

func (w signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.msg) {
		close(w.ch)
	}
	return len(p), nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

// startServe runs Serve in the background and returns the bound address and
// a function that stops it and returns Serve's error.
func startServe(t *testing.T, o ServeOptions) (addr string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	o.OnListen = func(a string) { listening <- a }
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, o) }()
	select {
	case addr = <-listening:
	case err := <-done:
		cancel()
		t.Fatalf("Serve returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("Serve did not start listening")
	}
	var once sync.Once
	var serveErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return addr, stop
}

func TestServeUnderFunctionsHost(t *testing.T) {
	port := freePort(t)
	r := &fakeReconciler{pools: []string{"linux"}, ran: make(chan struct{}, 16)}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	addr, stop := startServe(t, ServeOptions{
		Handler:    NewHandler(Options{Reconciler: r, Logger: log}),
		Addr:       "127.0.0.1:0", // ignored under the host
		Getenv:     func(k string) string { return map[string]string{PortEnv: port}[k] },
		Interval:   time.Millisecond,
		Reconciler: r,
		Logger:     log,
	})
	if want := net.JoinHostPort("127.0.0.1", port); addr != want {
		t.Fatalf("bound %s, want %s", addr, want)
	}

	resp, err := http.Get("http://" + addr + "/api/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz = %d %q", resp.StatusCode, body)
	}

	// The host drives the timer through /reconcile.
	resp, err = http.Post("http://"+addr+"/reconcile", "application/json", strings.NewReader(timerInvocation))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/reconcile = %d", resp.StatusCode)
	}

	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if n := r.Calls(); n != 1 {
		t.Errorf("RunAll ran %d times, want only the host's one: no built-in timer under the host", n)
	}
	out := logs.String()
	if !strings.Contains(out, "msg=listening addr="+addr+" functions_host=true timer=false") {
		t.Errorf("listen log missing or wrong: %s", out)
	}
}

func TestServeRunsTimerWithoutHost(t *testing.T) {
	r := &fakeReconciler{pools: []string{"linux"}, ran: make(chan struct{}, 16)}
	addr, stop := startServe(t, ServeOptions{
		Handler:    NewHandler(Options{Reconciler: r}),
		Addr:       "127.0.0.1:0",
		Getenv:     func(string) string { return "" },
		Interval:   5 * time.Millisecond,
		Reconciler: r,
	})
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Errorf("bound %s, want the configured loopback address", addr)
	}
	deadline := time.After(30 * time.Second)
	for i := 0; i < 2; i++ {
		select {
		case <-r.ran:
		case <-deadline:
			t.Fatalf("RunAll ran %d times, want at least 2", r.Calls())
		}
	}
	r.mu.Lock()
	hasDeadline := !r.deadline.IsZero()
	r.mu.Unlock()
	if !hasDeadline {
		t.Error("timer pass ran without a deadline")
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = w.Write([]byte("done"))
	})
	shuttingDown := make(chan struct{})
	addr, stop := startServe(t, ServeOptions{
		Handler: slow,
		Getenv:  func(k string) string { return map[string]string{PortEnv: "0"}[k] },
		Logger:  slog.New(slog.NewTextHandler(signalWriter{"shutting down", shuttingDown}, nil)),
	})

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-entered

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	<-shuttingDown // release the handler only once the drain has begun
	close(release)

	res := <-got
	if res.err != nil || res.status != http.StatusOK || res.body != "done" {
		t.Errorf("in-flight request during shutdown: %+v", res)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServeRejectsBadOptions(t *testing.T) {
	noEnv := func(string) string { return "" }
	h := NewHandler(Options{})
	r := &fakeReconciler{}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := map[string]struct {
		o    ServeOptions
		want string
	}{
		"no handler":    {ServeOptions{Addr: "127.0.0.1:0", Getenv: noEnv, Interval: time.Minute, Reconciler: r}, "no handler"},
		"no reconciler": {ServeOptions{Handler: h, Addr: "127.0.0.1:0", Getenv: noEnv, Interval: time.Minute}, "needs a reconciler"},
		"no interval":   {ServeOptions{Handler: h, Addr: "127.0.0.1:0", Getenv: noEnv, Reconciler: r}, "interval must be positive"},
		"port in use":   {ServeOptions{Handler: h, Addr: busy.Addr().String(), Getenv: noEnv, Interval: time.Minute, Reconciler: r}, "listen on " + busy.Addr().String()},
		"bad host port": {ServeOptions{Handler: h, Getenv: func(string) string { return "notaport" }}, "listen on 127.0.0.1:notaport"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := Serve(ctx, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Serve = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// slowReconciler stands in for a scaler whose pass outlives the timer
// interval: Run returns the waiting context's error, as the scaler's does,
// while the reconcile itself goes on.
type slowReconciler struct{}

func (slowReconciler) Pools() []string { return []string{"slow", "broken"} }
func (slowReconciler) RunAll(ctx context.Context) []error {
	<-ctx.Done()
	return []error{ctx.Err(), errors.New("pool broken: list instances: engine down")}
}

// TestTimerPassOutlivingTheInterval: a pass still running when the interval
// is up is said to carry on, at info level, never as a failure; a reconcile
// that failed is logged by the scaler, not a second time by the timer.
func TestTimerPassOutlivingTheInterval(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	runOnce(t.Context(), slowReconciler{}, time.Millisecond, log)
	out := logs.String()
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "still running after one interval") || !strings.Contains(out, "pool=slow") {
		t.Errorf("want one info line saying the slow pool's pass carries on; got:\n%s", out)
	}
	if strings.Contains(out, "WARN") || strings.Contains(out, "failed") || strings.Contains(out, "broken") {
		t.Errorf("the timer reported a failure:\n%s", out)
	}
}
