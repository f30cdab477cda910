package azuredevops

import (
	"net/http"
	"testing"
	"time"
)

func TestRateBudgetPace(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	headers := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name string
		h    http.Header
		at   time.Duration // after the answer
		want time.Duration
	}{
		{"no headers", headers(), 0, 0},
		{"plenty left", headers("X-RateLimit-Remaining", "150", "X-RateLimit-Limit", "200"), 0, 0},
		{"a quarter left", headers("X-RateLimit-Remaining", "50", "X-RateLimit-Limit", "200"), 0, 0},
		{"an eighth left", headers("X-RateLimit-Remaining", "25", "X-RateLimit-Limit", "200"), 0, maxPace / 2},
		{"nothing left", headers("X-RateLimit-Remaining", "0", "X-RateLimit-Limit", "200"), 0, maxPace},
		{"nothing left, said long ago", headers("X-RateLimit-Remaining", "0", "X-RateLimit-Limit", "200"), rateWindow, 0},
		{"remaining without its limit", headers("X-RateLimit-Remaining", "0"), 0, 0},
		{"delayed", headers("X-RateLimit-Delay", "1.25"), 0, maxPace},
		{"delayed long ago", headers("X-RateLimit-Delay", "1.25"), rateWindow, 0},
		{"hostile numbers", headers("X-RateLimit-Remaining", "-1", "X-RateLimit-Limit", "NaN", "X-RateLimit-Delay", "1e999"), 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b rateBudget
			b.observe(tc.h, t0)
			if got := b.pace(t0.Add(tc.at)); got != tc.want {
				t.Errorf("pace %s, want %s", got, tc.want)
			}
		})
	}
}
