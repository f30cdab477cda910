package retry

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

var (
	errBusy   = errors.New("busy")   // retryable, no hint
	errSlow   = errors.New("slow")   // retryable, the server asks for 7s
	errBroken = errors.New("broken") // not retryable
)

func classify(err error) (bool, time.Duration) {
	switch {
	case errors.Is(err, errBusy):
		return true, 0
	case errors.Is(err, errSlow):
		return true, 7 * time.Second
	}
	return false, 0
}

// fullJitter and noJitter pin the random half of a step to its ends.
func fullJitter(n time.Duration) time.Duration { return n }
func noJitter(time.Duration) time.Duration     { return 0 }

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDo(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name      string
		policy    Policy
		deadline  time.Duration // from epoch on the injected clock; 0 for none
		failures  []error       // what op returns, attempt by attempt; nil after the list
		wantCalls int
		wantWaits []time.Duration
		wantErr   error
	}{
		{
			name:      "success at once waits nothing",
			policy:    Policy{Retries: 3},
			wantCalls: 1,
		},
		{
			name:      "retryable failures are tried again until one succeeds",
			policy:    Policy{Retries: 3, Base: s, Jitter: fullJitter},
			failures:  []error{errBusy, errBusy},
			wantCalls: 3,
			wantWaits: []time.Duration{s, 2 * s},
		},
		{
			name:      "attempts are bounded by Retries; the last failure is returned",
			policy:    Policy{Retries: 2, Base: s, Jitter: fullJitter},
			failures:  []error{errBusy, errBusy, errBusy, errBusy},
			wantCalls: 3,
			wantWaits: []time.Duration{s, 2 * s},
			wantErr:   errBusy,
		},
		{
			name:      "no retries tries once",
			policy:    Policy{},
			failures:  []error{errBusy},
			wantCalls: 1,
			wantErr:   errBusy,
		},
		{
			name:      "a failure the policy does not retry is returned at once",
			policy:    Policy{Retries: 3},
			failures:  []error{errBroken},
			wantCalls: 1,
			wantErr:   errBroken,
		},
		{
			name:      "wrapped failures are classified too",
			policy:    Policy{Retries: 3, Base: s, Jitter: fullJitter},
			failures:  []error{fmt.Errorf("create linux-r1: %w", errBusy)},
			wantCalls: 2,
			wantWaits: []time.Duration{s},
		},
		{
			name:      "the server's Retry-After is waited as given, beyond the cap and instead of the step",
			policy:    Policy{Retries: 3, Base: s, Max: 2 * s, Jitter: fullJitter},
			failures:  []error{errSlow, errBusy},
			wantCalls: 3,
			wantWaits: []time.Duration{7 * s, 2 * s},
		},
		{
			name:      "steps double up to the cap",
			policy:    Policy{Retries: 5, Base: s, Max: 4 * s, Jitter: fullJitter},
			failures:  []error{errBusy, errBusy, errBusy, errBusy, errBusy},
			wantCalls: 6,
			wantWaits: []time.Duration{s, 2 * s, 4 * s, 4 * s, 4 * s},
		},
		{
			name:      "the first half of each step is always waited",
			policy:    Policy{Retries: 3, Base: s, Max: 4 * s, Jitter: noJitter},
			failures:  []error{errBusy, errBusy, errBusy},
			wantCalls: 4,
			wantWaits: []time.Duration{s / 2, s, 2 * s},
		},
		{
			name:      "defaults: 500ms doubling",
			policy:    Policy{Retries: 2, Jitter: fullJitter},
			failures:  []error{errBusy, errBusy},
			wantCalls: 3,
			wantWaits: []time.Duration{DefaultBase, 2 * DefaultBase},
		},
		{
			name:      "a wait that outlasts the deadline is not started",
			policy:    Policy{Retries: 3, Base: s, Jitter: fullJitter},
			deadline:  5 * s,
			failures:  []error{errSlow},
			wantCalls: 1,
			wantErr:   errSlow,
		},
		{
			name:      "a wait within the deadline is",
			policy:    Policy{Retries: 3, Base: s, Jitter: fullJitter},
			deadline:  8 * s,
			failures:  []error{errSlow},
			wantCalls: 2,
			wantWaits: []time.Duration{7 * s},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, epoch.Add(tc.deadline))
				defer cancel()
			}
			var waits []time.Duration
			p := tc.policy
			p.Retryable = classify
			p.Now = func() time.Time { return epoch }
			p.Sleep = func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}
			var told []time.Duration
			p.OnRetry = func(attempt int, wait time.Duration, err error) {
				if attempt != len(told)+1 || !errors.Is(err, tc.failures[attempt-1]) {
					t.Errorf("OnRetry(%d, %s, %v): not the attempt that failed", attempt, wait, err)
				}
				told = append(told, wait)
			}
			calls := 0
			err := Do(ctx, p, func(context.Context) error {
				calls++
				if calls <= len(tc.failures) {
					return tc.failures[calls-1]
				}
				return nil
			})
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", calls, tc.wantCalls)
			}
			if !reflect.DeepEqual(waits, tc.wantWaits) {
				t.Errorf("waits %v, want %v", waits, tc.wantWaits)
			}
			if !reflect.DeepEqual(told, waits) {
				t.Errorf("OnRetry told of waits %v, %v waited", told, waits)
			}
		})
	}
}

// TestDoCanceledWhileWaiting: a context that ends during a wait ends Do
// without another attempt, and the error says both why it stopped and what
// failed last.
func TestDoCanceledWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	err := Do(ctx, Policy{
		Retries:   3,
		Retryable: classify,
		Sleep: func(ctx context.Context, _ time.Duration) error {
			cancel() // the caller gives up while the retry waits
			return ctx.Err()
		},
	}, func(context.Context) error {
		calls++
		return errBusy
	})
	if calls != 1 {
		t.Errorf("%d calls, want 1: no attempt after the context ended", calls)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errBusy) {
		t.Errorf("error %v, want one wrapping both context.Canceled and the last failure", err)
	}
}

// TestSleep: the default sleep returns at once, with the reason, for a
// context that is already done, however long the wait; and waits out a
// zero wait.
func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a canceled context: %v, want context.Canceled", err)
	}
	if err := Sleep(t.Context(), 0); err != nil {
		t.Errorf("Sleep(0): %v", err)
	}
}

// TestWaitJitterBounds: with the default random source, every wait lies in
// the second half of its step.
func TestWaitJitterBounds(t *testing.T) {
	p := Policy{Base: time.Second, Max: 8 * time.Second}
	for attempt := 1; attempt <= 6; attempt++ {
		step := min(time.Second<<(attempt-1), 8*time.Second)
		for range 200 {
			if w := p.Wait(attempt, 0); w < step/2 || w > step {
				t.Fatalf("attempt %d: wait %s outside [%s, %s]", attempt, w, step/2, step)
			}
		}
	}
}
