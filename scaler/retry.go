package scaler

import (
	"context"
	"time"

	"github.com/agentscaler/agentscaler/internal/retry"
	"github.com/agentscaler/agentscaler/providers"
)

// retryable reports whether a failure is worth trying again.
func retryable(err error) bool {
	ok, _, _ := providers.Classify(err)
	return ok
}

// refused reports whether the provider turned a create away before doing
// anything (throttled), so that trying it again cannot make a second
// instance. A create that timed out or failed otherwise may have happened:
// by the time a retry lands, that instance may have run its job and been
// removed by another reconciler, and the retry would make another for a job
// that is done. The next pass plans it again from a fresh look instead.
func refused(err error) bool {
	ok, _, reason := providers.Classify(err)
	return ok && reason == "throttled"
}

// retry runs f, trying failures again while again says so, up to
// Options.Retries times, with the backoff of package retry, which honours
// the server's Retry-After, within ctx.
func (s *Scaler) retry(ctx context.Context, again func(error) bool, f func(context.Context) error) error {
	return retry.Do(ctx, retry.Policy{
		Retries: s.opt.Retries,
		Retryable: func(err error) (bool, time.Duration) {
			if !again(err) {
				return false, 0
			}
			_, after, _ := providers.Classify(err)
			return true, after
		},
	}, f)
}
