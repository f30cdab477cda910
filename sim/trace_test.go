package sim

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReadTrace(t *testing.T) {
	in := "queued_at_s,duration_s,demands\n" +
		"# a comment line\n" +
		"60,120,\n" +
		"0.5, 30 ,docker;Agent.OS -equals Linux\n" +
		"10,45,\"maven -gtVersion 3.8; java\"\n"
	jobs, err := ReadTrace(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Job{
		{QueuedAt: 500 * time.Millisecond, Duration: 30 * time.Second, Demands: []string{"docker", "Agent.OS -equals Linux"}},
		{QueuedAt: 10 * time.Second, Duration: 45 * time.Second, Demands: []string{"maven -gtVersion 3.8", "java"}},
		{QueuedAt: time.Minute, Duration: 2 * time.Minute},
	}
	if !reflect.DeepEqual(jobs, want) {
		t.Fatalf("ReadTrace =\n%+v\nwant (sorted by queue time)\n%+v", jobs, want)
	}
}

func TestReadTraceErrorsNameLineAndField(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{"empty", "queued_at_s,duration_s,demands"}},
		{"header", "queued,duration,demands\n1,2,\n", []string{"line 1", "header", "queued_at_s,duration_s,demands"}},
		{"queued", "queued_at_s,duration_s,demands\n1,2,\nabc,2,\n", []string{"line 3", "queued_at_s", `"abc"`}},
		{"duration negative", "queued_at_s,duration_s,demands\n1,2,\n3,4,\n5,-1,\n", []string{"line 4", "duration_s", "negative"}},
		{"duration empty", "queued_at_s,duration_s,demands\n1,,docker\n", []string{"line 2", "duration_s", "empty"}},
		{"fields", "queued_at_s,duration_s,demands\n1,2,docker,java\n", []string{"line 2", "4 fields", "quote"}},
		{"milliseconds", "queued_at_s,duration_s,demands\n1700000000000,2,\n", []string{"line 2", "queued_at_s", "milliseconds"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadTrace(strings.NewReader(c.in))
			if err == nil {
				t.Fatal("ReadTrace accepted a bad trace")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestWriteTraceRoundTrips(t *testing.T) {
	jobs := Generate(GenerateOptions{Seed: 3, Days: 2})
	var buf bytes.Buffer
	if err := WriteTrace(&buf, jobs); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "queued_at_s,duration_s,demands\n") {
		t.Fatalf("trace starts %q", buf.String()[:40])
	}
	back, err := ReadTrace(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, jobs) {
		t.Fatal("a written trace reads back different")
	}
}

func TestGenerateIsDeterministicForASeed(t *testing.T) {
	a := Generate(GenerateOptions{Seed: 42})
	b := Generate(GenerateOptions{Seed: 42})
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two traces")
	}
	if c := Generate(GenerateOptions{Seed: 43}); reflect.DeepEqual(a, c) {
		t.Fatal("two seeds gave the same trace")
	}
}

// TestGenerateShape checks the generated trace looks like a working week:
// most jobs in working hours, fan-out bursts, a long tail of run times,
// quiet weekends.
func TestGenerateShape(t *testing.T) {
	jobs := Generate(GenerateOptions{Seed: 1, Days: 7})
	perDay := make([]int, 7)
	working, burst, long := 0, 0, 0
	sameSecond := map[time.Duration]int{}
	for _, j := range jobs {
		day := int(j.QueuedAt / (24 * time.Hour))
		perDay[day]++
		if h := j.QueuedAt % (24 * time.Hour); h >= 8*time.Hour && h < 18*time.Hour {
			working++
		}
		if j.Duration >= 20*time.Minute {
			long++
		}
		sameSecond[j.QueuedAt]++
	}
	for _, n := range sameSecond {
		if n >= 8 {
			burst++
		}
	}
	weekday, weekend := perDay[0], perDay[5]+perDay[6]
	if weekday < 400 || weekday > 1200 {
		t.Errorf("a working day has %d jobs; want the default's few hundred", weekday)
	}
	if weekend*5 > weekday {
		t.Errorf("the weekend has %d jobs against %d on a working day; want it quiet", weekend, weekday)
	}
	if share := float64(working) / float64(len(jobs)); share < 0.7 {
		t.Errorf("%.0f%% of jobs queued between 08:00 and 18:00; want most", share*100)
	}
	if burst < 10 {
		t.Errorf("%d fan-outs of 8 or more jobs in a week; want bursts", burst)
	}
	if share := float64(long) / float64(len(jobs)); share < 0.02 || share > 0.1 {
		t.Errorf("%.1f%% of jobs run 20 minutes or more; want a long tail of about 5%%", share*100)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Policy
	}{
		{"webhook", Policy{Kind: Webhook, Interval: time.Minute}},
		{"webhook:5m", Policy{Kind: Webhook, Interval: 5 * time.Minute}},
		{"poll", Policy{Kind: Poll, Interval: 30 * time.Second}},
		{"poll:15s", Policy{Kind: Poll, Interval: 15 * time.Second}},
		{"static:12", Policy{Kind: Static, Agents: 12}},
	} {
		got, err := ParsePolicy(c.in, time.Minute)
		if err != nil || got != c.want {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "keda", "poll:0s", "poll:soon", "static", "static:0", "static:x"} {
		if _, err := ParsePolicy(bad, time.Minute); err == nil {
			t.Errorf("ParsePolicy(%q) accepted it", bad)
		}
	}
	if s := (Policy{Kind: Poll, Interval: 90 * time.Second}).String(); s != "poll:1m30s" {
		t.Errorf("String = %q", s)
	}
}

func TestParseLatency(t *testing.T) {
	for in, want := range map[string]Latency{
		"30s":     {30 * time.Second, 30 * time.Second},
		"20s-40s": {20 * time.Second, 40 * time.Second},
		"1s - 2m": {time.Second, 2 * time.Minute},
	} {
		if got, err := ParseLatency(in); err != nil || got != want {
			t.Errorf("ParseLatency(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "40s-20s", "-5s"} {
		if _, err := ParseLatency(bad); err == nil {
			t.Errorf("ParseLatency(%q) accepted it", bad)
		}
	}
}
