// Package benchfmt turns `go test -bench` output into the figures `make
// bench` prints: one line per figure, `name value unit`, then ratios
// between figures, and checks the invariants a figure must keep (no
// duplicate agents, say).
package benchfmt

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Figure is one measured value.
type Figure struct {
	Name  string // benchmark name without "Benchmark" and the -GOMAXPROCS suffix: "Burst/memory"
	Value float64
	Unit  string // as reported: "hooks/s", "p50-ms", "ns/op"
}

// standard are the metrics go test reports itself; a benchmark that reports
// its own metrics says what it measures with them, so these are left out.
var standard = map[string]bool{"ns/op": true, "B/op": true, "allocs/op": true, "MB/s": true}

// Parse reads `go test -bench` output and returns its figures in order.
// Lines other than benchmark results are skipped.
func Parse(r io.Reader) ([]Figure, error) {
	var out []Figure
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// BenchmarkX-2  <N>  <value> <unit> [<value> <unit>]...
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		var figs []Figure
		custom := false
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark %s: value %q of %s is not a number", name, f[i], f[i+1])
			}
			figs = append(figs, Figure{Name: name, Value: v, Unit: f[i+1]})
			custom = custom || !standard[f[i+1]]
		}
		for _, fig := range figs {
			if !custom || !standard[fig.Unit] {
				out = append(out, fig)
			}
		}
	}
	return out, sc.Err()
}

// Find returns the figure of that name and unit.
func Find(figs []Figure, name, unit string) (Figure, bool) {
	for _, f := range figs {
		if f.Name == name && f.Unit == unit {
			return f, true
		}
	}
	return Figure{}, false
}

// Ratio is a figure computed from two others: Num / Den.
type Ratio struct {
	Name, Unit string
	Num, Den   Ref
}

// Ref names a figure by benchmark name and unit.
type Ref struct{ Name, Unit string }

// Ratios computes the ratios whose figures are all present and whose
// denominator is not zero; the others are left out.
func Ratios(figs []Figure, ratios []Ratio) []Figure {
	var out []Figure
	for _, r := range ratios {
		n, ok1 := Find(figs, r.Num.Name, r.Num.Unit)
		d, ok2 := Find(figs, r.Den.Name, r.Den.Unit)
		if ok1 && ok2 && d.Value != 0 {
			out = append(out, Figure{Name: r.Name, Value: n.Value / d.Value, Unit: r.Unit})
		}
	}
	return out
}

// Rule is an invariant: the figure, when present, must equal Want.
type Rule struct {
	Ref
	Want float64
}

// Check returns one message per broken rule.
func Check(figs []Figure, rules []Rule) []string {
	var out []string
	for _, r := range rules {
		if f, ok := Find(figs, r.Name, r.Unit); ok && f.Value != r.Want {
			out = append(out, fmt.Sprintf("%s %s is %s, must be %s", r.Name, r.Unit, format(f.Value), format(r.Want)))
		}
	}
	return out
}

// Write prints one figure per line: name, value, unit.
func Write(w io.Writer, figs []Figure) error {
	for _, f := range figs {
		if _, err := fmt.Fprintf(w, "%s %s %s\n", f.Name, format(f.Value), f.Unit); err != nil {
			return err
		}
	}
	return nil
}

// format prints a value rounded to four significant digits, or whole when
// it is a whole number, never in exponent form.
func format(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 4, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
}
