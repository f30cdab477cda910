package kubetest

import (
	"testing"
	"time"
)

// BenchmarkStart starts and stops the control plane with the binaries
// already cached. start/op is the time until etcd, the API server and the
// controller manager all answer; the rest of ns/op is the stop.
func BenchmarkStart(b *testing.B) {
	if _, ok := Cached(); !ok {
		b.Skip("the kube binaries are not built; run go run ./tools/kubebins first")
	}
	var started time.Duration
	for b.Loop() {
		cp, err := start()
		if err != nil {
			b.Fatal(err)
		}
		started += cp.Started
		if err := cp.stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(started.Seconds()/float64(b.N), "s-start/op")
}
