// Package functions is the HTTP surface every host shares: one route table
// serves `agentscaler serve` on its own, the same server as an Azure
// Functions custom handler, and AWS Lambda invocations (lambda.go).
//
// Under the Functions host, host.json sets enableForwardingHttpRequest, so the
// host forwards HTTP-trigger requests unchanged (path, method, headers, body):
// POST /api/webhook/{source} and GET /api/metrics reach this handler exactly
// as they would without the host. The timer trigger cannot be forwarded; the
// host posts the custom-handler invocation JSON to /reconcile (the function's
// folder name) instead, and that route speaks that protocol.
//
// Routes:
//
//	POST /api/webhook/{source}  service hooks, by source ("azuredevops"); an unknown source is 404
//	GET  /api/metrics           Prometheus exposition
//	GET  /api/healthz           liveness: 200 "ok"
//	POST /reconcile             the Functions timer invocation: reconcile every pool, report per pool
//
// A route whose handler is not configured (nil Metrics, nil Reconciler) is
// not served, so it answers 404 rather than pretending.
//
// /reconcile is the Functions host's alone: it carries no credential, costs
// Azure DevOps calls and reports pool names and errors, so it is wired only
// under the host (see UnderHost) and answers only loopback peers, the host
// being the one peer there. Anyone else gets the same 404 as an unknown
// path, and nothing is logged beyond the debug request line.
//
// The webhook function is anonymous in function.json because the hook
// handler authenticates Azure DevOps itself; the metrics function takes a
// function key (Prometheus sends it with `params: {code: [...]}` or an
// x-functions-key header), which the host checks before forwarding.
package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/internal/logsafe"
)

// DefaultReconcileTimeout bounds one /reconcile invocation. The timer fires
// every minute; a pass that outlives its interval is reported as failed
// rather than left to overlap the next one.
const DefaultReconcileTimeout = 50 * time.Second

// Reconciler is what this package needs from the scaler: run every pool now
// and report per pool, in the order Pools names them.
type Reconciler interface {
	RunAll(ctx context.Context) []error
	Pools() []string
}

// Options configures NewHandler.
type Options struct {
	// Hooks are the service-hook handlers by source name ("azuredevops").
	// Each decides authentication, status and body for its source.
	Hooks map[string]http.Handler
	// Metrics serves the Prometheus exposition; nil leaves /api/metrics unserved.
	Metrics http.Handler
	// Reconciler runs the timer invocation; nil leaves /reconcile unserved.
	// Set it only under the Functions host: a standalone serve runs its
	// timer in-process and must not let callers trigger passes.
	Reconciler Reconciler
	// Logger receives request logs (debug) and recovered panics (error).
	Logger *slog.Logger
	// ReconcileTimeout bounds one /reconcile; 0 means DefaultReconcileTimeout.
	ReconcileTimeout time.Duration
}

// NewHandler returns the route table described in the package doc, wrapped
// so that every request is logged at debug level and a panic becomes a 500.
func NewHandler(o Options) http.Handler {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := o.ReconcileTimeout
	if timeout <= 0 {
		timeout = DefaultReconcileTimeout
	}

	mux := http.NewServeMux()
	mux.Handle("POST /api/webhook/{source}", webhook(o.Hooks))
	mux.HandleFunc("GET /api/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	if o.Metrics != nil {
		mux.Handle("GET /api/metrics", o.Metrics)
	}
	if o.Reconciler != nil {
		mux.Handle("POST /reconcile", &reconcileHandler{r: o.Reconciler, timeout: timeout, log: log})
	}
	return logRequests(log, recoverPanics(log, mux))
}

// webhook dispatches to the hook handler for {source}.
func webhook(hooks map[string]http.Handler) http.Handler {
	known := make([]string, 0, len(hooks))
	for name := range hooks {
		known = append(known, name)
	}
	slices.Sort(known)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		source := r.PathValue("source")
		h, ok := hooks[source]
		if !ok {
			http.Error(w, fmt.Sprintf("unknown webhook source %q; known sources: %s",
				logsafe.Clip(source), strings.Join(known, ", ")), http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs method, path (clipped: the caller chose it), status and
// duration at debug level. Never headers, bodies or the query string: they
// carry webhook credentials and Functions keys (?code=).
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			log.LogAttrs(r.Context(), slog.LevelDebug, "http request",
				slog.String("method", logsafe.Clip(r.Method)),
				slog.String("path", logsafe.Clip(r.URL.Path)),
				slog.Int("status", status),
				slog.Duration("duration", time.Since(start)))
		}()
		next.ServeHTTP(sw, r)
	})
}

// recoverPanics turns a handler panic into a 500 and an error log, so one bad
// request cannot take the process (and every pool's reconcile) down with it.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, _ := w.(*statusWriter)
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // net/http's own signal to drop the connection quietly
			}
			log.Error("handler panic", "method", logsafe.Clip(r.Method), "path", logsafe.Clip(r.URL.Path),
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw != nil && sw.status != 0 {
				// Headers are gone; the client sees a truncated response.
				return
			}
			http.Error(w, "internal error", http.StatusInternalServerError)
		}()
		next.ServeHTTP(w, r)
	})
}
