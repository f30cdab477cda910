// Package retry runs an operation again while its failures are worth it:
// a bounded number of attempts, an exponential backoff with one jitter
// rule, the server's own hint (Retry-After) when it gave one, and the
// caller's context throughout. What is worth retrying is the caller's
// policy; how to wait is this package's.
package retry

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"time"
)

// Defaults of Policy.Base and Policy.Max.
const (
	DefaultBase = 500 * time.Millisecond
	DefaultMax  = 16 * time.Second
)

// Policy says which failures to try again, how often and how long to wait.
// The zero value tries once.
type Policy struct {
	// Retries is how many times a failure is tried again after the first
	// attempt; 0 or less tries once.
	Retries int
	// Base is the first backoff step (DefaultBase when 0); each later step
	// doubles, up to Max (DefaultMax when 0).
	Base, Max time.Duration
	// Retryable reports whether err is worth another attempt, and the least
	// wait the server asked for (0 when it gave none). Nil retries nothing.
	Retryable func(err error) (again bool, after time.Duration)
	// OnRetry, when set, is told of each retry before its wait: the attempt
	// that failed (1 for the first), the wait and the failure.
	OnRetry func(attempt int, wait time.Duration, err error)

	// Sleep waits d or until ctx is done, and then returns ctx.Err(); nil
	// uses a timer. Tests set it so that they never wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a uniformly random duration in [0, n]; nil uses
	// math/rand/v2.
	Jitter func(n time.Duration) time.Duration
	// Now reads the clock the context's deadline is compared with; nil
	// uses time.Now.
	Now func() time.Time
}

// Wait is how long to wait before the retry that follows failed attempt
// number attempt (1 for the first), given the server's hint after: the hint
// when it gave one (the server knows when it will take the call again),
// else the exponential step Base·2^(attempt-1), capped at Max, of which
// the first half is always waited and the second is random, so that
// callers failing together do not retry together.
func (p Policy) Wait(attempt int, after time.Duration) time.Duration {
	if after > 0 {
		return after
	}
	base, ceiling := p.Base, p.Max
	if base <= 0 {
		base = DefaultBase
	}
	if ceiling <= 0 {
		ceiling = DefaultMax
	}
	step := base
	for i := 1; i < attempt && step < ceiling; i++ {
		step *= 2
	}
	step = min(step, ceiling)
	jitter := p.Jitter
	if jitter == nil {
		jitter = func(n time.Duration) time.Duration { return mrand.N(n + 1) }
	}
	half := step / 2
	return step - half + jitter(half)
}

// Do runs op until it succeeds, its failure is not Retryable, Retries are
// spent, or the wait before the next attempt would outlast ctx's deadline,
// and returns op's last error. When ctx ends during a wait, the error wraps
// both op's last error and ctx.Err().
func Do(ctx context.Context, p Policy, op func(ctx context.Context) error) error {
	sleep, now := p.Sleep, p.Now
	if sleep == nil {
		sleep = Sleep
	}
	if now == nil {
		now = time.Now
	}
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if attempt > p.Retries || p.Retryable == nil {
			return err
		}
		again, after := p.Retryable(err)
		if !again {
			return err
		}
		wait := p.Wait(attempt, after)
		if dl, ok := ctx.Deadline(); ok && dl.Sub(now()) < wait {
			// The attempt after this wait could not finish in time.
			return err
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, wait, err)
		}
		if cerr := sleep(ctx, wait); cerr != nil {
			return fmt.Errorf("%w (gave up waiting to retry: %w)", err, cerr)
		}
	}
}

// Sleep waits d, or until ctx is done and then returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
