package sim

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Job is one job of a trace: when it is queued, from the start of the
// trace, how long it runs once an agent has it, and its demands as Azure
// DevOps writes them ("docker", "Agent.OS -equals Linux").
type Job struct {
	QueuedAt time.Duration
	Duration time.Duration
	Demands  []string
}

// traceHeader is the first line of every trace file.
var traceHeader = []string{"queued_at_s", "duration_s", "demands"}

// ReadTrace reads a CSV trace: the header queued_at_s,duration_s,demands,
// then one job a line, times in seconds (decimals allowed), demands
// separated by ';' and possibly empty. Errors name the line and the field.
// Jobs come back ordered by queue time; a trace need not be sorted.
func ReadTrace(r io.Reader) ([]Job, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked below, to name the fix
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	head, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("trace: empty; the first line must be the header " + strings.Join(traceHeader, ","))
	}
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	for i := range head {
		head[i] = strings.ToLower(strings.TrimSpace(head[i]))
	}
	if !slices.Equal(head, traceHeader) {
		line, _ := cr.FieldPos(0)
		return nil, fmt.Errorf("trace line %d: header is %q; want %s", line, strings.Join(head, ","), strings.Join(traceHeader, ","))
	}
	var jobs []Job
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(traceHeader) {
			return nil, fmt.Errorf("trace line %d: %d fields; want 3 (%s), quote demands that hold a comma", line, len(rec), strings.Join(traceHeader, ","))
		}
		var j Job
		if j.QueuedAt, err = seconds(rec[0]); err != nil {
			return nil, fmt.Errorf("trace line %d: queued_at_s: %w", line, err)
		}
		if j.Duration, err = seconds(rec[1]); err != nil {
			return nil, fmt.Errorf("trace line %d: duration_s: %w", line, err)
		}
		for d := range strings.SplitSeq(rec[2], ";") {
			if d = strings.TrimSpace(d); d != "" {
				j.Demands = append(j.Demands, d)
			}
		}
		jobs = append(jobs, j)
	}
	slices.SortStableFunc(jobs, func(a, b Job) int { return cmp.Compare(a.QueuedAt, b.QueuedAt) })
	return jobs, nil
}

// maxTraceSeconds keeps times within what a time.Duration holds, with room
// for the simulation to run past the last job.
const maxTraceSeconds = 100 * 365 * 24 * 3600

func seconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case s == "":
		return 0, errors.New("empty; write a number of seconds such as 12 or 12.5")
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return 0, fmt.Errorf("%q is not a number of seconds; write one such as 12 or 12.5", s)
	case f < 0:
		return 0, fmt.Errorf("%s is negative; seconds start at 0 at the beginning of the trace", s)
	case f > maxTraceSeconds:
		return 0, fmt.Errorf("%s is more than a century; write seconds, not milliseconds", s)
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}

// WriteTrace writes jobs as a CSV trace that ReadTrace reads back.
func WriteTrace(w io.Writer, jobs []Job) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(traceHeader); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	for _, j := range jobs {
		rec := []string{formatSeconds(j.QueuedAt), formatSeconds(j.Duration), strings.Join(j.Demands, ";")}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write trace: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
