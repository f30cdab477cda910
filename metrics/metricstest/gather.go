package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// ByLabel gathers g and returns the values of the counter or gauge family
// name, over the series whose labels include match, keyed by the value of
// their label by: what a scrape would show, read in process.
func ByLabel(t testing.TB, g prometheus.Gatherer, name string, match map[string]string, by string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if labels[k] != v {
					continue series
				}
			}
			v := s.GetCounter().GetValue()
			if s.GetGauge() != nil {
				v = s.GetGauge().GetValue()
			}
			out[labels[by]] = v
		}
	}
	return out
}
