// Command benchfmt is `make bench`: it builds the test binaries once, runs
// each benchmark with an iteration count that keeps the whole run under
// five minutes on a small machine, and prints one line per figure (`name
// value unit`), the ratios between them, and the binary's size. Raw go
// test output goes to stderr. It exits non-zero when a benchmark fails or
// an invariant breaks (a duplicate agent in a burst).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/agentscaler/agentscaler/tools/benchfmt"
)

// run is one benchmark selection in one package.
type run struct {
	pkg, bench, benchtime string
}

var runs = []run{
	{"./cmd/agentscaler", "^BenchmarkServeHooks$", "20x"}, // 20 batches of 100 jobs: 4,000 hooks
	{"./cmd/agentscaler", "^BenchmarkBurst$", "1x"},
	{"./cmd/agentscaler", "^BenchmarkColdStart$", "10x"},
}

var ratios = []benchfmt.Ratio{
	{Name: "ServeHooks", Unit: "hooks/s/core", Num: ref("ServeHooks", "hooks/s"), Den: ref("machine", "cores")},
	{Name: "Burst/memory", Unit: "ado-calls/job", Num: ref("Burst/memory", "ado-calls"), Den: ref("Burst/memory", "jobs")},
	{Name: "Burst/memory", Unit: "creates/job", Num: ref("Burst/memory", "creates"), Den: ref("Burst/memory", "jobs")},
	{Name: "Burst/memory", Unit: "create-calls/job", Num: ref("Burst/memory", "create-calls"), Den: ref("Burst/memory", "jobs")},
	{Name: "Burst/memory", Unit: "hooks/ado-call", Num: ref("Burst/memory", "hooks"), Den: ref("Burst/memory", "ado-calls")},
	{Name: "Burst/memory-5000", Unit: "ado-calls/job", Num: ref("Burst/memory-5000", "ado-calls"), Den: ref("Burst/memory-5000", "jobs")},
	{Name: "Burst/memory-5000", Unit: "creates/job", Num: ref("Burst/memory-5000", "creates"), Den: ref("Burst/memory-5000", "jobs")},
	{Name: "Burst/docker", Unit: "ado-calls/job", Num: ref("Burst/docker", "ado-calls"), Den: ref("Burst/docker", "jobs")},
	{Name: "Burst/docker", Unit: "creates/job", Num: ref("Burst/docker", "creates"), Den: ref("Burst/docker", "jobs")},
	{Name: "Burst/docker", Unit: "create-calls/job", Num: ref("Burst/docker", "create-calls"), Den: ref("Burst/docker", "jobs")},
}

var rules = []benchfmt.Rule{
	{Ref: ref("Burst/memory", "duplicates"), Want: 0},
	{Ref: ref("Burst/memory-5000", "duplicates"), Want: 0},
	{Ref: ref("Burst/docker", "duplicates"), Want: 0},
}

func ref(name, unit string) benchfmt.Ref { return benchfmt.Ref{Name: name, Unit: unit} }

func main() {
	binary := flag.String("binary", "bin/agentscaler", "the built binary whose size to report")
	timeout := flag.Duration("timeout", 10*time.Minute, "deadline for the whole run")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := bench(ctx, *binary, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchfmt:", err)
		os.Exit(1)
	}
}

func bench(ctx context.Context, binary string, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "benchfmt")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	built := map[string]string{}
	var raw bytes.Buffer
	var failed error
	for _, r := range runs {
		bin, ok := built[r.pkg]
		if !ok {
			bin = filepath.Join(dir, filepath.Base(r.pkg)+".test")
			if err := command(ctx, "", stderr, "go", "test", "-c", "-o", bin, r.pkg); err != nil {
				return fmt.Errorf("build the tests of %s: %w", r.pkg, err)
			}
			built[r.pkg] = bin
		}
		// A test binary runs in its package's directory, as go test runs it.
		err := command(ctx, r.pkg, io.MultiWriter(stderr, &raw), bin,
			"-test.run", "^$", "-test.bench", r.bench, "-test.benchtime", r.benchtime, "-test.timeout", "8m")
		if err != nil && failed == nil {
			failed = fmt.Errorf("benchmarks %s of %s: %w", r.bench, r.pkg, err)
		}
	}
	figs, err := benchfmt.Parse(&raw)
	if err != nil {
		return err
	}
	figs = append(figs, benchfmt.Figure{Name: "machine", Value: float64(runtime.NumCPU()), Unit: "cores"})
	if info, err := os.Stat(binary); err == nil {
		figs = append(figs, benchfmt.Figure{Name: "binary", Value: float64(info.Size()) / (1 << 20), Unit: "MiB"})
	} else {
		fmt.Fprintf(stderr, "benchfmt: no binary size: %v (build it first: make build)\n", err)
	}
	figs = append(figs, benchfmt.Ratios(figs, ratios)...)
	if err := benchfmt.Write(stdout, figs); err != nil {
		return err
	}
	if broken := benchfmt.Check(figs, rules); len(broken) > 0 {
		for _, b := range broken {
			fmt.Fprintln(stderr, "benchfmt: invariant broken:", b)
		}
		return fmt.Errorf("%d invariants broken", len(broken))
	}
	return failed
}

// command runs name with args in dir, its output to out.
func command(ctx context.Context, dir string, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}
