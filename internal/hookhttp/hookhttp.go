// Package hookhttp is what every CI system's webhook handler does alike:
// take POST only, answer a hook with a short plain-text body while counting
// and logging it, read a bounded body, and fall back to the wall clock and a
// discarding logger.
package hookhttp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Reply counts the hook (observe, when set, with event and outcome: fixed
// labels, never the raw request), logs it at debug level and answers status
// with msg as a plain-text body.
func Reply(w http.ResponseWriter, log *slog.Logger, observe func(event, outcome string), status int, event, outcome, msg string) {
	if observe != nil {
		observe(event, outcome)
	}
	log.Debug("webhook", "status", status, "outcome", outcome)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// Post reports whether r is a POST, the only method a webhook takes. When
// it is not, it has answered 405 with Allow (counted under event).
func Post(w http.ResponseWriter, r *http.Request, log *slog.Logger, observe func(event, outcome string), event string) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	Reply(w, log, observe, http.StatusMethodNotAllowed, event, "method_not_allowed", "only POST is accepted")
	return false
}

// ReadBody reads r's body up to limit bytes. When it cannot, it has
// answered (413 too_large over the limit, else 400 bad_request, counted
// under event) and returns false.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64, log *slog.Logger, observe func(event, outcome string), event string) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		return body, true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		Reply(w, log, observe, http.StatusRequestEntityTooLarge, event, "too_large", fmt.Sprintf("body exceeds %d bytes", tooLarge.Limit))
	} else {
		Reply(w, log, observe, http.StatusBadRequest, event, "bad_request", "reading the body failed")
	}
	return nil, false
}

// Now returns now(), or the wall clock's time when now is nil.
func Now(now func() time.Time) time.Time {
	if now != nil {
		return now()
	}
	return time.Now()
}

// Logger returns log, or a logger that discards when log is nil.
func Logger(log *slog.Logger) *slog.Logger {
	if log != nil {
		return log
	}
	return slog.New(slog.DiscardHandler)
}
