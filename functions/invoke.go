package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
)

// The Azure Functions custom-handler protocol for non-HTTP triggers: the
// host posts {"Data": {<binding name>: ...}, "Metadata": {...}} to
// /<function name> and reads {"Outputs", "Logs", "ReturnValue"} back. Logs
// land in the invocation's logs (Application Insights); a non-2xx status
// makes the host record the invocation as failed.

// invocationRequest is the host's request payload.
type invocationRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata invocationMetadata         `json:"Metadata"`
}

type invocationMetadata struct {
	Sys struct {
		MethodName string `json:"MethodName"`
		UtcNow     string `json:"UtcNow"`
	} `json:"sys"`
}

// timerInfo is the part of the timer trigger's binding data (TimerInfo in
// the host: Schedule, ScheduleStatus, IsPastDue) that changes what we report.
type timerInfo struct {
	IsPastDue bool `json:"IsPastDue"`
}

// invocationResponse is the payload the host expects back. Outputs must be
// an object even when the function has no output bindings.
type invocationResponse struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// timerBinding is the timer trigger's binding name in reconcile/function.json.
const timerBinding = "timer"

// maxInvocationBody bounds what /reconcile reads; the host's timer payload is
// a few hundred bytes.
const maxInvocationBody = 1 << 20

// reconcileHandler serves the timer invocation: every pool is reconciled
// within the deadline, each pool reports one log line, and any failed pool
// turns the answer into a 500 so the host counts the invocation as failed.
type reconcileHandler struct {
	r       Reconciler
	timeout time.Duration
	log     *slog.Logger
}

func (h *reconcileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !fromLoopback(r) {
		http.NotFound(w, r)
		return
	}
	req, timer, err := decodeInvocation(http.MaxBytesReader(w, r.Body, maxInvocationBody))
	if err != nil {
		writeInvocation(w, http.StatusBadRequest, []string{fmt.Sprintf("bad invocation payload: %v", err)})
		return
	}
	h.log.Info("timer invocation", "function", req.Metadata.Sys.MethodName,
		"invocation_time", req.Metadata.Sys.UtcNow, "past_due", timer.IsPastDue)

	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	results := runAll(ctx, h.r)

	var logs []string
	if timer.IsPastDue {
		logs = append(logs, "timer is past due")
	}
	status := http.StatusOK
	for _, res := range results {
		if res.err != nil {
			status = http.StatusInternalServerError
			h.log.Warn("reconcile failed", "pool", res.pool, "error", res.err)
			logs = append(logs, fmt.Sprintf("pool %s: failed: %v", res.pool, res.err))
			continue
		}
		logs = append(logs, fmt.Sprintf("pool %s: ok", res.pool))
	}
	if len(results) == 0 {
		logs = append(logs, "no pools configured")
	}
	writeInvocation(w, status, logs)
}

// fromLoopback reports whether the peer is on this machine, as the Functions
// host is: it posts the invocation to 127.0.0.1.
func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// decodeInvocation reads the host's payload. An empty body is accepted as a
// plain "run now"; the timer binding, when present, may arrive as an object
// or as a JSON string holding one, depending on the host version.
func decodeInvocation(body io.Reader) (invocationRequest, timerInfo, error) {
	var req invocationRequest
	var timer timerInfo
	if err := json.NewDecoder(body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return req, timer, fmt.Errorf("decode invocation: %w", err)
	}
	raw, ok := req.Data[timerBinding]
	if !ok || string(raw) == "null" {
		return req, timer, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	if err := json.Unmarshal(raw, &timer); err != nil {
		return req, timer, fmt.Errorf("decode %q binding: %w", timerBinding, err)
	}
	return req, timer, nil
}

func writeInvocation(w http.ResponseWriter, status int, logs []string) {
	if logs == nil {
		logs = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// Only a failed write to the client can fail here, and it has gone.
	_ = json.NewEncoder(w).Encode(invocationResponse{Outputs: map[string]any{}, Logs: logs})
}

// poolResult is one pool's outcome of a pass.
type poolResult struct {
	pool string
	err  error
}

// runAll runs every pool and names each outcome after its pool.
func runAll(ctx context.Context, r Reconciler) []poolResult {
	pools := r.Pools()
	errs := r.RunAll(ctx)
	out := make([]poolResult, len(errs))
	for i, err := range errs {
		out[i] = poolResult{pool: fmt.Sprintf("#%d", i), err: err}
		if i < len(pools) {
			out[i].pool = pools[i]
		}
	}
	return out
}
