package azuredevops_test

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// These tests list job requests from the emulator, which answers both forms
// of the list as the service does (the cap of 200, the $top pages with
// their continuation token).

const emuPAT = "pat-for-jobrequest-tests"

// pagesSeen records ObserveJobRequestPages calls.
type pagesSeen struct {
	mu    sync.Mutex
	calls []string // "poolID pages truncated"
}

func (p *pagesSeen) observe(poolID, pages int, truncated bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprint(poolID, pages, truncated))
}

func (p *pagesSeen) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprint(p.calls)
}

type emuFixture struct {
	emu   *adoemu.Emulator
	pool  int
	c     *azuredevops.Client
	pages *pagesSeen
	logs  *syncbuf.Buffer
}

// newEmuFixture serves an emulator on loopback with the pool "linux" and an
// agent a0 for finishing jobs, and a client for it.
func newEmuFixture(t *testing.T, opts azuredevops.Options) emuFixture {
	t.Helper()
	emu := adoemu.New(adoemu.Options{PAT: emuPAT})
	srv := httptest.NewServer(emu)
	emu.SetServerURL(srv.URL)
	t.Cleanup(func() { srv.Close(); emu.Close() })
	f := emuFixture{emu: emu, pool: emu.AddPool("linux"), pages: &pagesSeen{}, logs: &syncbuf.Buffer{}}
	emu.RegisterAgent("linux", adoemu.AgentInfo{Name: "a0", Online: true})
	opts.HTTPClient = srv.Client()
	opts.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	opts.ObserveJobRequestPages = f.pages.observe
	c, err := azuredevops.NewClient(emu.OrgURL(), azuredevops.PAT(emuPAT), opts)
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	return f
}

// history runs n jobs to completion on a0.
func (f emuFixture) history(t *testing.T, n int) {
	t.Helper()
	for range n {
		id := f.emu.QueueJob("linux", adoemu.Job{Name: "old"})
		if err := f.emu.Assign(id, "a0"); err != nil {
			t.Fatal(err)
		}
		if err := f.emu.Finish(id, "succeeded"); err != nil {
			t.Fatal(err)
		}
	}
}

// queue queues n waiting jobs and returns their request ids.
func (f emuFixture) queue(n int) map[int64]bool {
	ids := make(map[int64]bool, n)
	for range n {
		ids[f.emu.QueueJob("linux", adoemu.Job{Name: "burst", Demands: []string{"docker"}})] = true
	}
	return ids
}

// list calls JobRequests and returns the waiting ones by id, failing on a
// duplicate.
func (f emuFixture) list(t *testing.T) (waiting map[int64]bool, all []azuredevops.JobRequest) {
	t.Helper()
	all, err := f.c.JobRequests(t.Context(), f.pool)
	if err != nil {
		t.Fatal(err)
	}
	waiting = map[int64]bool{}
	seen := map[int64]bool{}
	for i, r := range all {
		if seen[r.RequestID] {
			t.Errorf("request %d listed twice", r.RequestID)
		}
		seen[r.RequestID] = true
		if r.Result != nil {
			t.Errorf("finished request %d listed", r.RequestID)
		}
		if i > 0 && r.QueueTime.Before(all[i-1].QueueTime) {
			t.Errorf("request %d out of order: not oldest first", r.RequestID)
		}
		if r.Waiting() {
			waiting[r.RequestID] = true
		}
	}
	return waiting, all
}

func TestJobRequestsSeesEveryWaitingJob(t *testing.T) {
	f := newEmuFixture(t, azuredevops.Options{})
	f.history(t, 300)
	running := f.emu.QueueJob("linux", adoemu.Job{Name: "long"})
	if err := f.emu.Assign(running, "a0"); err != nil {
		t.Fatal(err)
	}
	want := f.queue(455)

	waiting, all := f.list(t)
	if len(waiting) != 455 || len(all) != 456 {
		t.Fatalf("%d waiting of %d listed, want all 455 waiting and the running one", len(waiting), len(all))
	}
	for id := range want {
		if !waiting[id] {
			t.Fatalf("waiting request %d missing", id)
		}
	}
	calls := f.emu.Calls()[adoemu.EndpointJobRequests]
	var pages int
	var truncated bool
	if _, err := fmt.Sscanf(f.pages.String(), fmt.Sprintf("[%d %%d %%t]", f.pool), &pages, &truncated); err != nil {
		t.Fatalf("observed %s: %v", f.pages, err)
	}
	if truncated || pages != calls-1 || pages > 5 {
		t.Errorf("observed %s with %d calls: want one unfinished-only call and at most 5 pages, not truncated", f.pages, calls)
	}
	t.Logf("455 waiting, 1 running, 300 finished: %d jobrequests calls (%d pages of 200)", calls, pages)
	if strings.Contains(f.logs.String(), "level=WARN") {
		t.Errorf("unexpected warning: %s", f.logs)
	}
}

func TestJobRequestsPageBoundCuts(t *testing.T) {
	f := newEmuFixture(t, azuredevops.Options{JobRequestsPageSize: 50, JobRequestsMaxPages: 5})
	f.queue(455)
	waiting, _ := f.list(t)
	// The pages start from the oldest request again: five pages of 50 see
	// the 250 oldest, 50 more than the unfinished-only answer's 200.
	if len(waiting) != 250 {
		t.Errorf("%d waiting, want 250", len(waiting))
	}
	if got := f.emu.Calls()[adoemu.EndpointJobRequests]; got != 6 {
		t.Errorf("%d jobrequests calls, want 6", got)
	}
	if want := fmt.Sprintf("[%d 5 true]", f.pool); f.pages.String() != want {
		t.Errorf("observed %s, want %s", f.pages, want)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, `error="stopped at the bound of 5 pages"`) {
		t.Errorf("no warning naming the bound: %s", logs)
	}
}

// TestJobRequestsStopsAtPageAddingNothing: once the waiting requests are
// all seen, the pages that follow walk the finished history only; the first
// of them ends the list, long before the history or the bound would.
func TestJobRequestsStopsAtPageAddingNothing(t *testing.T) {
	f := newEmuFixture(t, azuredevops.Options{JobRequestsPageSize: 50})
	f.history(t, 1000)
	want := f.queue(200)
	waiting, _ := f.list(t)
	if len(waiting) != len(want) {
		t.Errorf("%d waiting, want %d", len(waiting), len(want))
	}
	// Pages mix 25 waiting and 25 finished requests: 8 pages see the 200,
	// the 9th adds nothing. The history alone would take 20 more pages.
	if want := fmt.Sprintf("[%d 9 false]", f.pool); f.pages.String() != want {
		t.Errorf("observed %s, want %s", f.pages, want)
	}
	if got := f.emu.Calls()[adoemu.EndpointJobRequests]; got != 10 {
		t.Errorf("%d jobrequests calls, want 10", got)
	}
}

// TestJobRequestsRetriedJobOnce: a job queued again (a retry, same run and
// job id) is listed once, as its newest request, in both forms of the list.
func TestJobRequestsRetriedJobOnce(t *testing.T) {
	for _, extra := range []int{0, 250} {
		t.Run(fmt.Sprint(extra, " more waiting"), func(t *testing.T) {
			f := newEmuFixture(t, azuredevops.Options{})
			first := f.emu.QueueJob("linux", adoemu.Job{Name: "flaky"})
			f.queue(extra)
			retry := f.emu.QueueJob("linux", adoemu.Job{Name: "flaky", RetryOf: first})
			waiting, _ := f.list(t)
			if waiting[first] || !waiting[retry] || len(waiting) != extra+1 {
				t.Errorf("first %d listed %v, retry %d listed %v, %d waiting; want the retry only, %d waiting",
					first, waiting[first], retry, waiting[retry], len(waiting), extra+1)
			}
		})
	}
}
