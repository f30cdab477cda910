package providers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// foreign is an error of another package that describes itself, as Azure
// DevOps' errors do.
type foreign struct{}

func (foreign) Error() string { return "HTTP 429" }
func (foreign) Classification() (bool, time.Duration, string) {
	return true, 2 * time.Second, "throttled"
}

func TestClassify(t *testing.T) {
	quota := &Error{Op: "create", Name: "linux-r1", Reason: "quota", Err: errors.New("quota exceeded")}
	for _, tc := range []struct {
		name      string
		err       error
		retryable bool
		after     time.Duration
		reason    string
	}{
		{"nil", nil, false, 0, ""},
		{"a provider error", quota, false, 0, "quota"},
		{"a provider error, wrapped", fmt.Errorf("pool linux: %w", quota), false, 0, "quota"},
		{"an error that describes itself", foreign{}, true, 2 * time.Second, "throttled"},
		{"an error that describes itself, wrapped", fmt.Errorf("pool linux: unregister: %w", foreign{}), true, 2 * time.Second, "throttled"},
		{"the outermost description wins", &Error{Reason: "conflict", Retryable: true, Err: foreign{}}, true, 0, "conflict"},
		{"a deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), true, 0, "timeout"},
		{"a cancellation", fmt.Errorf("list: %w", context.Canceled), false, 0, "canceled"},
		{"anything else", errors.New("boom"), true, 0, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retryable, after, reason := Classify(tc.err)
			if retryable != tc.retryable || after != tc.after || reason != tc.reason {
				t.Errorf("Classify(%v) = %v/%s/%q; want %v/%s/%q", tc.err, retryable, after, reason, tc.retryable, tc.after, tc.reason)
			}
		})
	}
}
