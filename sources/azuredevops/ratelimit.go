package azuredevops

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Azure DevOps tells a caller close to its rate limit how much of it is left
// (X-RateLimit-Remaining out of X-RateLimit-Limit, in TSTUs over a sliding
// five-minute window) and, once it delays requests, by how much
// (X-RateLimit-Delay). The client turns that into a pace between passes, so
// that a burst of service hooks slows down before the service delays it.
const (
	rateWindow = 5 * time.Minute  // how long what the service said holds
	paceFrom   = 0.25             // the fraction of the budget left below which passes slow down
	maxPace    = 10 * time.Second // the pace when nothing is left, or requests are delayed
)

// rateBudget is what Azure DevOps last said of this identity's budget.
type rateBudget struct {
	mu               sync.Mutex
	remaining, limit float64
	seen             time.Time // when remaining and limit were read
	delayed          time.Time // when a request was last delayed
}

// observe reads the rate-limit headers of an answer. Values that are not
// finite, non-negative numbers are ignored.
func (b *rateBudget) observe(h http.Header, now time.Time) {
	rem, okRem := headerNumber(h, "X-RateLimit-Remaining")
	lim, okLim := headerNumber(h, "X-RateLimit-Limit")
	delay, okDelay := headerNumber(h, "X-RateLimit-Delay")
	b.mu.Lock()
	defer b.mu.Unlock()
	if okRem && okLim && lim > 0 {
		b.remaining, b.limit, b.seen = min(rem, lim), lim, now
	}
	if okDelay && delay > 0 {
		b.delayed = now
	}
}

// pace is how long to hold between passes: nothing while more than a
// quarter of the budget is left, growing to maxPace as it runs out, and
// maxPace while the service delays requests.
func (b *rateBudget) pace(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.delayed.IsZero() && now.Sub(b.delayed) < rateWindow {
		return maxPace
	}
	if b.seen.IsZero() || now.Sub(b.seen) >= rateWindow {
		return 0
	}
	left := b.remaining / b.limit
	if left >= paceFrom {
		return 0
	}
	return time.Duration(float64(maxPace) * (1 - left/paceFrom))
}

func headerNumber(h http.Header, name string) (float64, bool) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" || len(v) > 32 {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}
