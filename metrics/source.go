package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sourceMetrics are the CI systems' rate-limit budgets, by source (github;
// Azure DevOps keeps its azuredevops_* names). Registered on first use, so
// a process serving no such system exports none.
type sourceMetrics struct {
	once      sync.Once
	remaining *prometheus.GaugeVec
	limit     *prometheus.GaugeVec
	reset     *prometheus.GaugeVec
}

func (m *Metrics) sourceVecs() *sourceMetrics {
	s := &m.source
	s.once.Do(func() {
		s.remaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_ratelimit_remaining",
			Help: "Requests left in the CI system's rate-limit window (x-ratelimit-remaining), by source.",
		}, []string{"source"})
		s.limit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_ratelimit_limit",
			Help: "Requests allowed per rate-limit window (x-ratelimit-limit), by source.",
		}, []string{"source"})
		s.reset = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_ratelimit_reset_timestamp_seconds",
			Help: "When the rate-limit window resets (x-ratelimit-reset), Unix seconds, by source.",
		}, []string{"source"})
		m.reg.MustRegister(s.remaining, s.limit, s.reset)
	})
	return s
}

// SourceRateLimit sets a CI system's rate-limit budget as its last answer
// reported it.
func (m *Metrics) SourceRateLimit(source string, remaining, limit int, reset time.Time) {
	if m == nil {
		return
	}
	s := m.sourceVecs()
	s.remaining.WithLabelValues(source).Set(float64(remaining))
	s.limit.WithLabelValues(source).Set(float64(limit))
	s.reset.WithLabelValues(source).Set(float64(reset.Unix()))
}
