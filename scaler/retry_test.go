package scaler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/providers"
)

// TestRetryPolicies: a create is tried again only when the provider refused
// it (throttled); a delete on any retryable failure; a permanent failure
// never; and no more than Options.Retries times. The failures carry a
// 1 ns Retry-After, which the backoff honours, so nothing waits.
func TestRetryPolicies(t *testing.T) {
	fail := func(reason string, retryable bool) error {
		return &providers.Error{Op: "op", Name: "linux-r1", Reason: reason, Retryable: retryable, RetryAfter: time.Nanosecond, Err: errors.New(reason)}
	}
	for _, tc := range []struct {
		name      string
		again     func(error) bool
		err       error
		wantCalls int
	}{
		{"create throttled is retried", refused, fail("throttled", true), 3},
		{"create timed out is not: it may have happened", refused, fail("timeout", true), 1},
		{"create in conflict is not", refused, fail("conflict", true), 1},
		{"create refused for good is not", refused, fail("image", false), 1},
		{"delete throttled is retried", retryable, fail("throttled", true), 3},
		{"delete timed out is retried", retryable, fail("timeout", true), 3},
		{"delete refused for good is not", retryable, fail("auth", false), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Retries: 2})
			calls := 0
			err := s.retry(t.Context(), tc.again, func(context.Context) error {
				calls++
				return tc.err
			})
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v, want the last failure", err)
			}
			if calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", calls, tc.wantCalls)
			}
		})
	}
}
