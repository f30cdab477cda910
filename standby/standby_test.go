package standby

import (
	"strings"
	"testing"
	"time"
)

func mustCompile(t *testing.T, tz string, entries ...Entry) *Schedule {
	t.Helper()
	s, err := Compile(entries, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A working-day schedule: three warm agents from 08:00 to 19:00 on weekdays
// in Berlin, none otherwise.
var workingDay = []Entry{{"0 8 * * 1-5", 3}, {"0 19 * * 1-5", 0}}

func TestTargetWorkingDay(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	s := mustCompile(t, "Europe/Berlin", workingDay...)
	at := func(day, hour, minute int) time.Time {
		return time.Date(2026, time.March, day, hour, minute, 0, 0, berlin)
	}
	tests := []struct {
		name string
		t    time.Time
		want int
	}{
		{"Monday before eight: Friday evening's entry", at(2, 7, 59), 0},
		{"Monday at eight exactly: the entry has fired", at(2, 8, 0), 3},
		{"Monday noon", at(2, 12, 0), 3},
		{"Monday a second before seven in the evening", at(2, 18, 59).Add(59 * time.Second), 3},
		{"Monday evening", at(2, 19, 0), 0},
		{"Saturday noon: Friday evening's entry", at(7, 12, 0), 0},
		{"Sunday night", at(8, 23, 0), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := s.Target(tc.t)
			if !ok || got != tc.want {
				t.Errorf("Target(%s) = %d, %v; want %d, true", tc.t, got, ok, tc.want)
			}
			// The same instant seen from another zone gives the same target.
			if got2, _ := s.Target(tc.t.UTC()); got2 != got {
				t.Errorf("Target in UTC = %d, in Berlin %d", got2, got)
			}
		})
	}
}

// TestTargetTimeZone: 08:00 in New York is 13:00 UTC (in winter), and the
// zone's daylight saving time moves it to 12:00 UTC.
func TestTargetTimeZone(t *testing.T) {
	s := mustCompile(t, "America/New_York", workingDay...)
	winter := time.Date(2026, time.January, 5, 12, 59, 0, 0, time.UTC) // a Monday
	if got, _ := s.Target(winter); got != 0 {
		t.Errorf("07:59 in New York in winter: %d, want 0", got)
	}
	if got, _ := s.Target(winter.Add(time.Minute)); got != 3 {
		t.Errorf("08:00 in New York in winter: %d, want 3", got)
	}
	summer := time.Date(2026, time.July, 6, 12, 0, 0, 0, time.UTC) // a Monday, EDT
	if got, _ := s.Target(summer); got != 3 {
		t.Errorf("08:00 in New York in summer: %d, want 3", got)
	}
	if got, _ := s.Target(summer.Add(-time.Second)); got != 0 {
		t.Errorf("a second before 08:00 in New York in summer: %d, want 0", got)
	}
}

// TestTargetLookback: an entry that fired more than a week ago no longer
// applies, and one that fires every minute is found at once.
func TestTargetLookback(t *testing.T) {
	monthly := mustCompile(t, "UTC", Entry{"0 0 1 * *", 5})
	if got, ok := monthly.Target(time.Date(2026, time.May, 7, 23, 59, 0, 0, time.UTC)); !ok || got != 5 {
		t.Errorf("six days after the 1st: %d, %v; want 5, true", got, ok)
	}
	if got, ok := monthly.Target(time.Date(2026, time.May, 8, 0, 1, 0, 0, time.UTC)); ok {
		t.Errorf("over a week after the 1st: %d, %v; want no target", got, ok)
	}
	busy := mustCompile(t, "UTC", Entry{"* * * * *", 1}, Entry{"0 8 * * *", 4})
	if got, _ := busy.Target(time.Date(2026, time.May, 8, 8, 0, 30, 0, time.UTC)); got != 4 {
		t.Errorf("both fired at 08:00: the later entry wins, got %d", got)
	}
	if got, _ := busy.Target(time.Date(2026, time.May, 8, 8, 1, 0, 0, time.UTC)); got != 1 {
		t.Errorf("at 08:01 the every-minute entry fired last, got %d", got)
	}
	var empty Schedule
	if _, ok := empty.Target(time.Now()); ok {
		t.Error("an empty schedule has a target")
	}
}

func TestParseRefuses(t *testing.T) {
	for expr, want := range map[string]string{
		"":                       "empty",
		"0 8 * *":                "expected exactly 5 fields",
		"61 8 * * *":             "above maximum",
		"0 8 * * mon-fry":        "failed to parse",
		"@every 1h":              "@every",
		"TZ=UTC 0 8 * * *":       "timezone key",
		"CRON_TZ=UTC 0 8 * * *":  "timezone key",
		"TZ=UTC":                 "timezone key",
		"0 0 30 2 *":             "never fires",
		"@reboot":                "unrecognized descriptor",
		"0 8 * * 1-5 extra-word": "expected exactly 5 fields",
	} {
		_, err := Parse(expr, time.UTC)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", expr, err, want)
		}
	}
	for _, expr := range []string{"0 8 * * 1-5", "30 7 * * MON-FRI", "@daily", "@weekly", "*/15 6-20 * * *", " 0 8 * * * "} {
		if _, err := Parse(expr, time.UTC); err != nil {
			t.Errorf("Parse(%q): %v", expr, err)
		}
	}
}

func TestLocation(t *testing.T) {
	if loc, err := Location(""); err != nil || loc != time.UTC {
		t.Errorf(`Location("") = %v, %v; want UTC`, loc, err)
	}
	for _, bad := range []string{"Local", "Europe/Berlinn", "CEST", "../etc/passwd"} {
		if _, err := Location(bad); err == nil {
			t.Errorf("Location(%q) accepted", bad)
		}
	}
	if _, err := Location("Asia/Kolkata"); err != nil {
		t.Error(err)
	}
}

// FuzzParse: no expression makes the parser panic, and one it accepts fires.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 8 * * 1-5", "@daily", "TZ=", "*/0 * * * *", "0-99/3 * * * *", "@every 0s", "? ? ? ? ?", "0 0 L * *"} {
		f.Add(s)
	}
	t0 := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		spec, err := Parse(expr, time.UTC)
		if err != nil {
			return
		}
		if spec.Next(t0).IsZero() {
			t.Errorf("%q accepted but does not fire", expr)
		}
	})
}
