package docker

import (
	"context"
	"errors"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/agentscaler/agentscaler/providers"
)

// failure is an error this package has already classified; fail turns it
// into a providers.Error once the operation and name are known.
type failure struct {
	reason    string
	retryable bool
	after     time.Duration
	err       error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func permanent(reason string, err error) error {
	return &failure{reason: reason, err: err}
}

func retryable(reason string, after time.Duration, err error) error {
	return &failure{reason: reason, retryable: true, after: after, err: err}
}

// fail wraps err in a providers.Error for op on name, classified, and
// without any of the secret values in its text.
func (p *Provider) fail(op, name string, err error, secrets map[string]string) error {
	e := classify(err)
	e.Op, e.Name = op, name
	e.Err = redact(err, secrets)
	return e
}

// classify sorts engine errors: what may pass (unreachable engine, 5xx,
// timeouts, conflicts that settle) is retryable; what will not change by
// itself (bad parameters, missing images, refused credentials) is not.
func classify(err error) *providers.Error {
	var f *failure
	if errors.As(err, &f) {
		return &providers.Error{Reason: f.reason, Retryable: f.retryable, RetryAfter: f.after}
	}
	e := &providers.Error{Retryable: true}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		e.Reason = "timeout"
	case errors.Is(err, context.Canceled):
		e.Reason, e.Retryable = "canceled", false
	case client.IsErrConnectionFailed(err):
		e.Reason = "unreachable"
	case cerrdefs.IsNotFound(err):
		e.Reason, e.Retryable = "not_found", false
	case cerrdefs.IsInvalidArgument(err):
		e.Reason, e.Retryable = "invalid_spec", false
	case cerrdefs.IsUnauthorized(err), cerrdefs.IsPermissionDenied(err):
		e.Reason, e.Retryable = "auth", false
	case cerrdefs.IsConflict(err):
		e.Reason = "conflict"
	case cerrdefs.IsResourceExhausted(err):
		e.Reason = "throttled"
	default:
		// 5xx, and transport errors the client does not mark.
		e.Reason = "engine"
	}
	return e
}

// isNoSuchImage reports the engine's answer to a create whose image it
// does not have (a 404 that could also be a missing network).
func isNoSuchImage(err error) bool {
	return cerrdefs.IsNotFound(err) && strings.Contains(strings.ToLower(err.Error()), "no such image")
}

// minRedacted is the shortest secret value replaced in error texts; shorter
// ones would turn every message into noise and protect nothing.
const minRedacted = 4

// redact returns err, or an error with the same text but every secret
// value replaced. The original is dropped, not wrapped, so no formatting of
// the chain can bring the value back.
func redact(err error, secrets map[string]string) error {
	msg := err.Error()
	clean := msg
	for _, v := range secrets {
		if len(v) >= minRedacted {
			clean = strings.ReplaceAll(clean, v, "[redacted]")
		}
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}
