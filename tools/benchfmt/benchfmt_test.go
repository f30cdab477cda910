package benchfmt

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// A real `go test -bench` output: headers, a benchmark with custom metrics
// (ns/op left out), one with standard metrics only (kept), a sub-benchmark,
// and lines to skip.
const output = `goos: linux
goarch: amd64
pkg: github.com/agentscaler/agentscaler/cmd/agentscaler
cpu: AMD EPYC
BenchmarkServeHooks-2   	       5	  72811857 ns/op	      1000 hooks	      2637 hooks/s	         6.411 p50-ms	        59.45 p99-ms
BenchmarkBurst/docker-2         	       1	23374783348 ns/op	        23.00 ado-calls	       200.0 creates	         0 duplicates	       200.0 jobs
BenchmarkPlan-16    	   12345	     98765 ns/op	    1024 B/op	      12 allocs/op
--- FAIL: BenchmarkOther
    bench_test.go:1: BenchmarkNot a result line
PASS
ok  	github.com/agentscaler/agentscaler/cmd/agentscaler	39.320s
`

func TestParse(t *testing.T) {
	figs, err := Parse(strings.NewReader(output))
	if err != nil {
		t.Fatal(err)
	}
	want := []Figure{
		{"ServeHooks", 1000, "hooks"}, {"ServeHooks", 2637, "hooks/s"}, {"ServeHooks", 6.411, "p50-ms"}, {"ServeHooks", 59.45, "p99-ms"},
		{"Burst/docker", 23, "ado-calls"}, {"Burst/docker", 200, "creates"}, {"Burst/docker", 0, "duplicates"}, {"Burst/docker", 200, "jobs"},
		{"Plan", 98765, "ns/op"}, {"Plan", 1024, "B/op"}, {"Plan", 12, "allocs/op"},
	}
	if !slices.Equal(figs, want) {
		t.Errorf("figures:\n got  %v\n want %v", figs, want)
	}
}

func TestParseRefusesABrokenValue(t *testing.T) {
	_, err := Parse(strings.NewReader("BenchmarkX-2 1 abc hooks/s\n"))
	if err == nil || !strings.Contains(err.Error(), `"abc"`) || !strings.Contains(err.Error(), "hooks/s") {
		t.Errorf("error %v, want one naming the value and its unit", err)
	}
}

func TestRatiosAndWrite(t *testing.T) {
	figs, err := Parse(strings.NewReader(output))
	if err != nil {
		t.Fatal(err)
	}
	figs = append(figs, Figure{"machine", 2, "cores"})
	figs = append(figs, Ratios(figs, []Ratio{
		{"Burst/docker", "ado-calls/job", Ref{"Burst/docker", "ado-calls"}, Ref{"Burst/docker", "jobs"}},
		{"ServeHooks", "hooks/s/core", Ref{"ServeHooks", "hooks/s"}, Ref{"machine", "cores"}},
		{"missing", "x", Ref{"Nope", "x"}, Ref{"machine", "cores"}},               // numerator absent: left out
		{"zero", "x", Ref{"machine", "cores"}, Ref{"Burst/docker", "duplicates"}}, // zero denominator: left out
	})...)
	var buf bytes.Buffer
	if err := Write(&buf, figs[len(figs)-3:]); err != nil {
		t.Fatal(err)
	}
	want := "machine 2 cores\nBurst/docker 0.115 ado-calls/job\nServeHooks 1318 hooks/s/core\n"
	if buf.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestFormat(t *testing.T) {
	for v, want := range map[float64]string{
		1000: "1000", 0: "0", 6.411: "6.411", 0.0123456: "0.01235", 23374.78: "23370", 1e9: "1000000000", 2.5e-7: "0.00000025",
	} {
		if got := format(v); got != want {
			t.Errorf("format(%v) = %s, want %s", v, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	figs := []Figure{{"Burst/memory", 56, "duplicates"}, {"Burst/docker", 0, "duplicates"}}
	got := Check(figs, []Rule{
		{Ref{"Burst/memory", "duplicates"}, 0},
		{Ref{"Burst/docker", "duplicates"}, 0},
		{Ref{"Burst/absent", "duplicates"}, 0},
	})
	want := []string{"Burst/memory duplicates is 56, must be 0"}
	if !slices.Equal(got, want) {
		t.Errorf("Check: %q, want %q", got, want)
	}
}
