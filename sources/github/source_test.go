package github

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestTakes(t *testing.T) {
	for _, c := range []struct {
		pool, job []string
		want      bool
	}{
		{nil, []string{"self-hosted"}, true},
		{nil, []string{"self-hosted", "linux", "x64"}, true},
		{nil, []string{"Self-Hosted", "LINUX"}, true},
		{nil, []string{"ubuntu-latest"}, false},
		{nil, nil, false},
		{[]string{"gpu"}, []string{"self-hosted", "gpu"}, true},
		{[]string{"gpu"}, []string{"gpu", "large"}, false},
		{[]string{"windows", "Big"}, []string{"self-hosted", "windows", "x64", "big"}, true},
		{[]string{"windows"}, []string{"linux"}, false},
		{[]string{"arm64"}, []string{"linux", "ARM64"}, true},
		{[]string{"arm64"}, []string{"x64"}, false},
	} {
		if got := Takes(Offered(c.pool), c.job); got != c.want {
			t.Errorf("pool %v job %v: %v, want %v", c.pool, c.job, got, c.want)
		}
	}
}

// fakeAPI is GitHub in memory.
type fakeAPI struct {
	mu      sync.Mutex
	jobs    map[int64]Job
	runners []Runner
	calls   map[string]int
}

func (f *fakeAPI) count(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
}

func (f *fakeAPI) Job(_ context.Context, repo string, id int64) (Job, error) {
	f.count("job")
	j, ok := f.jobs[id]
	if !ok {
		return Job{}, fmt.Errorf("job %d: %w", id, ErrNotFound)
	}
	return j, nil
}

func (f *fakeAPI) QueuedJobs(_ context.Context, repo string, _ int) ([]Job, error) {
	f.count("queued")
	var out []Job
	for _, j := range f.jobs {
		if j.Repo == repo && j.Status == "queued" {
			out = append(out, j)
		}
	}
	return out, nil
}

func (f *fakeAPI) Runners(context.Context) ([]Runner, error) { return f.runners, nil }
func (f *fakeAPI) RemoveRunner(context.Context, int64) error { return nil }
func (f *fakeAPI) JITConfig(_ context.Context, name string, _ []string) (string, error) {
	return "cfg-" + name, nil
}

func TestSourceAdapter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	q := func(id int64, labels ...string) Job {
		return Job{ID: id, RunID: 1, Repo: "acme/app", Status: "queued", Labels: labels, Created: now.Add(time.Duration(id) * time.Second)}
	}
	api := &fakeAPI{jobs: map[int64]Job{}}
	clock := now.Add(time.Minute)
	jobs := NewJobs(api, JobsOptions{Repos: []string{"acme/app"}, Now: func() time.Time { return clock }})
	cpu := NewSource(api, jobs, "cpu", nil)
	gpu := NewSource(api, jobs, "gpu", []string{"gpu"})

	// Hooks: 1 and 2 for cpu (the first pool offering every label), 3 for
	// gpu, 4 for nobody. 5's hook is lost; the resync finds it.
	for _, j := range []Job{q(1, "self-hosted"), q(2, "self-hosted", "linux"), q(3, "self-hosted", "gpu"), q(4, "windows"), q(5, "gpu")} {
		api.jobs[j.ID] = j
	}
	for _, id := range []int64{1, 2, 3, 4} {
		jobs.Queued(api.jobs[id])
	}
	// 2 started before the pass looked: the check drops it.
	api.jobs[2] = Job{ID: 2, Repo: "acme/app", Status: "in_progress", RunnerName: "cpu-j1"}

	ids := func(s *Source) []int64 {
		got, err := s.Jobs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, j := range got {
			if !j.Waiting || !j.Servable || j.Ref != fmt.Sprint(j.ID) {
				t.Errorf("job %+v", j)
			}
			out = append(out, j.ID)
		}
		return out
	}
	if got := ids(cpu); !slices.Equal(got, []int64{1}) {
		t.Errorf("cpu jobs %v, want [1]", got)
	}
	if got := ids(gpu); !slices.Equal(got, []int64{3, 5}) {
		t.Errorf("gpu jobs %v, want [3 5]", got)
	}
	if id, ok := jobs.Holds("cpu-j1"); !ok || id != 2 {
		t.Errorf("cpu-j1 holds %d, %v; want 2 (the check said so)", id, ok)
	}
	// Within CheckTTL a second pass asks GitHub nothing.
	before := api.calls["job"]
	ids(gpu)
	if api.calls["job"] != before {
		t.Errorf("a second pass within CheckTTL made %d job calls", api.calls["job"]-before)
	}
	if api.calls["queued"] != 1 {
		t.Errorf("resyncs %d, want 1 within the interval", api.calls["queued"])
	}
	// Gone from GitHub: forgotten.
	delete(api.jobs, 3)
	clock = clock.Add(time.Hour)
	if got := ids(gpu); !slices.Equal(got, []int64{5}) {
		t.Errorf("gpu jobs %v after 3 vanished, want [5]", got)
	}

	api.runners = []Runner{
		{ID: 10, Name: "cpu-j1", Online: true, Busy: true, Labels: Offered(nil)},
		{ID: 11, Name: "cpu-w1", Online: false, Labels: Offered(nil)},
		{ID: 12, Name: "static-1", Online: true, Labels: Offered([]string{"gpu"})},
		{ID: 13, Name: "gpu-j9", Online: true, Busy: true, Labels: Offered([]string{"gpu"})},
		{ID: 14, Name: "cpu-j1x", Online: true, Labels: []string{"other"}},
	}
	agents, err := cpu.Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range agents {
		names = append(names, a.Name)
	}
	// static-1 offers all of cpu's labels (and gpu), so it may take cpu's jobs.
	if want := []string{"cpu-j1", "cpu-w1", "static-1", "gpu-j9"}; !slices.Equal(names, want) {
		t.Errorf("cpu agents %v, want %v", names, want)
	}
	if agents[0].Job == nil || agents[0].Job.ID != 2 {
		t.Errorf("cpu-j1 holds %+v, want job 2", agents[0].Job)
	}
	if agents[3].Job == nil || agents[3].Job.ID != -1 {
		t.Errorf("gpu-j9 holds %+v, want unknown (-1)", agents[3].Job)
	}
	if n, _ := cpu.Free(context.Background()); n != -1 {
		t.Errorf("Free = %d", n)
	}
}

func TestJobsBounded(t *testing.T) {
	jobs := NewJobs(&fakeAPI{}, JobsOptions{MaxJobs: 3})
	jobs.AddPool("p", nil)
	for id := int64(1); id <= 10; id++ {
		jobs.Queued(Job{ID: id, Labels: []string{"self-hosted"}, Created: time.Unix(id, 0)})
	}
	if jobs.Len() != 3 {
		t.Fatalf("held %d, want 3", jobs.Len())
	}
}

// TestOfflineRunnersShowAfterGrace: a runner of ours registered a moment ago
// by another reconciler, offline until its container starts, is not shown
// (the plan would unregister it as a leftover) until Grace has passed;
// online runners and others' show at once.
func TestOfflineRunnersShowAfterGrace(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	api := &fakeAPI{runners: []Runner{
		{ID: 1, Name: "cpu-j1"},
		{ID: 2, Name: "cpu-j2", Online: true},
		{ID: 3, Name: "static", Labels: Offered(nil)},
	}}
	src := NewSource(api, NewJobs(api, JobsOptions{}), "cpu", nil)
	src.Grace, src.Now = 30*time.Second, func() time.Time { return now }
	names := func() []string {
		agents, err := src.Agents(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range agents {
			out = append(out, a.Name)
		}
		return out
	}
	if got := names(); !slices.Equal(got, []string{"cpu-j2", "static"}) {
		t.Fatalf("first look: %v, want the offline runner of ours hidden", got)
	}
	now = now.Add(29 * time.Second)
	if got := names(); len(got) != 2 {
		t.Fatalf("within the grace: %v", got)
	}
	now = now.Add(time.Second)
	if got := names(); !slices.Equal(got, []string{"cpu-j1", "cpu-j2", "static"}) {
		t.Fatalf("after the grace: %v, want the offline runner shown", got)
	}
}
