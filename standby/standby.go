// Package standby computes a pool's warm-agent target from its standby
// schedule: cron expressions in a time zone, each setting min_idle from the
// moment it fires, as Managed DevOps Pools' standby agent schedules and
// terraform-aws-github-runner's idle_config do. The target at time t is the
// min_idle of the entry that fired last at or before t, looking back up to
// a week; when none fired in that week, the pool's own min_idle.
//
// Expressions are the five crontab fields (minute, hour, day of month,
// month, day of week) or a descriptor (@hourly, @daily, @weekly, @monthly,
// @yearly), parsed by github.com/robfig/cron/v3. The time zone is a key of
// its own, so @every (a period from an arbitrary start, not a time of day)
// and TZ= prefixes are refused.
package standby

import (
	"errors"
	"fmt"
	"strings"
	"time"

	// The zone database is compiled in: an image FROM scratch has none.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// Lookback is how far back Target looks for the entry that fired last.
const Lookback = 7 * 24 * time.Hour

// Entry is one line of a schedule: from each time Cron fires, keep MinIdle
// warm agents.
type Entry struct {
	Cron    string
	MinIdle int
}

// Schedule is a compiled standby schedule. Its zero value has no entries.
type Schedule struct {
	entries []compiled
}

type compiled struct {
	spec    *cron.SpecSchedule
	minIdle int
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Location reads a time zone by its IANA name (Europe/Berlin, UTC). The
// empty name is UTC; Local is refused, as it depends on the host.
func Location(name string) (*time.Location, error) {
	switch name {
	case "":
		return time.UTC, nil
	case "Local":
		return nil, errors.New("the zone Local depends on the host's settings; name the zone, such as Europe/Berlin or UTC")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone name such as Europe/Berlin, America/New_York or UTC", name)
	}
	return loc, nil
}

// Parse reads one cron expression, to fire in loc. It refuses expressions
// that never fire (0 0 30 2 *).
func Parse(expr string, loc *time.Location) (*cron.SpecSchedule, error) {
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return nil, errors.New(`empty; write five fields (minute hour day-of-month month day-of-week) such as "0 8 * * 1-5"`)
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, errors.New("a time zone inside the expression is not accepted; set the pool's timezone key instead")
	case strings.HasPrefix(expr, "@every"):
		return nil, errors.New(`@every counts from an arbitrary start, not a time of day; write the times, such as "0 */2 * * *"`)
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%v; write five fields (minute hour day-of-month month day-of-week) such as \"0 8 * * 1-5\"", err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("%q is not a time-of-day schedule", expr)
	}
	spec.Location = loc
	// Next searches five years ahead and gives up with the zero time.
	if spec.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
		return nil, errors.New("never fires (no such date); check the day of month and month fields")
	}
	return spec, nil
}

// Compile builds a schedule from entries in the zone named timezone. Its
// error names the first entry that does not parse, by index.
func Compile(entries []Entry, timezone string) (*Schedule, error) {
	loc, err := Location(timezone)
	if err != nil {
		return nil, err
	}
	s := &Schedule{}
	for i, e := range entries {
		spec, err := Parse(e.Cron, loc)
		if err != nil {
			return nil, fmt.Errorf("entry %d (%q): %w", i, e.Cron, err)
		}
		s.entries = append(s.entries, compiled{spec, e.MinIdle})
	}
	return s, nil
}

// Target returns the min_idle of the entry that fired last at or before t,
// within Lookback, and true; or false when none fired in that time. When
// entries fire at the same instant, the later one in the list wins.
func (s *Schedule) Target(t time.Time) (int, bool) {
	var at time.Time
	target, found := 0, false
	for _, e := range s.entries {
		last, ok := lastFiring(e.spec, t)
		if ok && (!found || !last.Before(at)) {
			at, target, found = last, e.minIdle, true
		}
	}
	return target, found
}

// lastFiring returns when spec fired last at or before t, within Lookback.
// cron schedules only tell the next firing, so it looks forward from ever
// earlier starts, doubling the window from a minute, and walks the firings
// of the first window holding one: a few steps for a schedule that fires
// daily or hourly.
func lastFiring(spec *cron.SpecSchedule, t time.Time) (time.Time, bool) {
	for w := time.Minute; ; w *= 2 {
		w = min(w, Lookback)
		var last time.Time
		// Next is strictly after its argument: from a second before the
		// window, a firing at its first instant counts.
		for n := spec.Next(t.Add(-w - time.Second)); !n.IsZero() && !n.After(t); n = spec.Next(n) {
			last = n
		}
		if !last.IsZero() {
			return last, true
		}
		if w == Lookback {
			return time.Time{}, false
		}
	}
}
