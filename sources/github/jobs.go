package github

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	gh "github.com/google/go-github/v88/github"

	"github.com/agentscaler/agentscaler/ci"
)

// Job is a workflow job as the autoscaler reads it.
type Job struct {
	ID, RunID  int64
	Repo       string // owner/name
	Status     string // queued, in_progress, completed, waiting
	Labels     []string
	RunnerName string // empty while queued
	Created    time.Time
}

func jobOf(repo string, w *gh.WorkflowJob) Job {
	j := Job{ID: w.GetID(), RunID: w.GetRunID(), Repo: repo, Status: w.GetStatus(), Labels: w.Labels, RunnerName: w.GetRunnerName()}
	if w.CreatedAt != nil {
		j.Created = w.CreatedAt.Time
	}
	return j
}

// Defaults of JobsOptions.
const (
	DefaultMaxJobs  = 5000
	DefaultJobTTL   = 24 * time.Hour // GitHub cancels a job queued this long
	DefaultMaxRuns  = 20
	DefaultResync   = time.Minute
	DefaultCheckTTL = 2 * time.Second
)

// JobsOptions bounds Jobs.
type JobsOptions struct {
	// Repos are the repositories (owner/name) whose queued runs are listed
	// every Resync, for jobs whose hook was lost.
	Repos []string
	// MaxRuns bounds the queued runs listed per repository and resync.
	MaxRuns int
	// Resync is the least time between two listings; serve passes its timer
	// interval.
	Resync time.Duration
	// MaxJobs bounds the queued jobs held; the oldest go first.
	MaxJobs int
	// TTL drops a job queued longer ago.
	TTL time.Duration
	// CheckTTL is how long a GET of a job stays good for every pool's pass.
	CheckTTL time.Duration
	Now      func() time.Time
}

type entry struct {
	Job
	pool    string
	checked time.Time
}

// Jobs is what the system knows of its queued jobs, shared by its pools:
// jobs the hooks reported queued and not yet started (and those the resync
// found), the pool each goes to, and which runner took which job. Safe for
// concurrent use.
type Jobs struct {
	api  API
	opt  JobsOptions
	mu   sync.Mutex
	q    map[int64]*entry
	ran  map[string]int64 // runner name -> the job it took
	pool []poolLabels     // in configuration order
	last time.Time        // of the last resync
	sync sync.Mutex       // one resync at a time
}

type poolLabels struct {
	name    string
	offered []string
}

// NewJobs returns the job state of a system that asks api.
func NewJobs(api API, opt JobsOptions) *Jobs {
	if opt.MaxRuns <= 0 {
		opt.MaxRuns = DefaultMaxRuns
	}
	if opt.Resync <= 0 {
		opt.Resync = DefaultResync
	}
	if opt.MaxJobs <= 0 {
		opt.MaxJobs = DefaultMaxJobs
	}
	if opt.TTL <= 0 {
		opt.TTL = DefaultJobTTL
	}
	if opt.CheckTTL <= 0 {
		opt.CheckTTL = DefaultCheckTTL
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Jobs{api: api, opt: opt, q: map[int64]*entry{}, ran: map[string]int64{}}
}

// AddPool adds a pool whose runners carry labels; call in configuration
// order, before any job arrives.
func (s *Jobs) AddPool(name string, labels []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pool = append(s.pool, poolLabels{name, Offered(labels)})
}

// Route returns the pool a job asking for labels goes to: the first in
// configuration order whose runners offer every label, "" for none. One
// pool per job, so two pools never make two runners for it.
func (s *Jobs) Route(labels []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.route(labels)
}

func (s *Jobs) route(labels []string) string {
	for _, p := range s.pool {
		if Takes(p.offered, labels) {
			return p.name
		}
	}
	return ""
}

// Queued records a queued job and returns its pool, "" (and records
// nothing) when no pool serves it.
func (s *Jobs) Queued(j Job) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.add(j)
}

func (s *Jobs) add(j Job) string {
	pool := s.route(j.Labels)
	if pool == "" {
		return ""
	}
	if e, ok := s.q[j.ID]; ok {
		return e.pool
	}
	if _, ran := s.ranJob(j.ID); ran {
		return pool // a late redelivery of a job already started
	}
	if j.Created.IsZero() {
		j.Created = s.opt.Now()
	}
	j.Status = "queued"
	s.q[j.ID] = &entry{Job: j, pool: pool}
	for len(s.q) > s.opt.MaxJobs {
		oldest := int64(0)
		for id, e := range s.q {
			if oldest == 0 || e.Created.Before(s.q[oldest].Created) {
				oldest = id
			}
		}
		delete(s.q, oldest)
	}
	return pool
}

func (s *Jobs) ranJob(id int64) (string, bool) {
	for name, j := range s.ran {
		if j == id {
			return name, true
		}
	}
	return "", false
}

// Started records that runner took job id.
func (s *Jobs) Started(id int64, runner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.q, id)
	if runner != "" {
		s.ran[runner] = id
		for len(s.ran) > s.opt.MaxJobs { // bounded: drop any
			for name := range s.ran {
				delete(s.ran, name)
				break
			}
		}
	}
}

// Completed forgets job id and its runner.
func (s *Jobs) Completed(id int64, runner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.q, id)
	if runner != "" && s.ran[runner] == id {
		delete(s.ran, runner)
	}
}

// Holds returns the job runner took, as hooks or checks reported it.
func (s *Jobs) Holds(runner string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ran[runner]
	return id, ok
}

// Len is the number of queued jobs held.
func (s *Jobs) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q)
}

// For returns pool's queued jobs, each checked still queued within
// CheckTTL: a job found started, finished or gone is forgotten. The
// configured repositories' queued runs are listed first when Resync has
// passed.
func (s *Jobs) For(ctx context.Context, pool string) ([]ci.Job, error) {
	if err := s.resync(ctx); err != nil {
		return nil, err
	}
	now := s.opt.Now()
	s.mu.Lock()
	var check []Job
	for id, e := range s.q {
		if now.Sub(e.Created) > s.opt.TTL {
			delete(s.q, id)
			continue
		}
		if e.pool == pool && now.Sub(e.checked) >= s.opt.CheckTTL {
			check = append(check, e.Job)
		}
	}
	s.mu.Unlock()
	for _, j := range check {
		got, err := s.api.Job(ctx, j.Repo, j.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			s.Completed(j.ID, "")
		case err != nil:
			return nil, err
		case got.Status == "queued":
			s.mu.Lock()
			if e, ok := s.q[j.ID]; ok {
				e.checked = now
			}
			s.mu.Unlock()
		case got.Status == "completed":
			s.Completed(j.ID, got.RunnerName)
		default: // in_progress, or waiting on an environment's approval
			s.Started(j.ID, got.RunnerName)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ci.Job
	for _, e := range s.q {
		if e.pool != pool {
			continue
		}
		labels := e.Labels
		out = append(out, ci.Job{
			ID: e.ID, Ref: itoa(e.ID), Queued: e.Created, Waiting: true, Servable: true,
			Takes: func(caps map[string]string) bool { return Takes(capLabels(caps), labels) },
		})
	}
	slices.SortFunc(out, func(a, b ci.Job) int { return a.Queued.Compare(b.Queued) })
	return out, nil
}

// resync lists the configured repositories' queued jobs when Resync has
// passed since the last listing.
func (s *Jobs) resync(ctx context.Context) error {
	if len(s.opt.Repos) == 0 {
		return nil
	}
	s.sync.Lock()
	defer s.sync.Unlock()
	if now := s.opt.Now(); !s.last.IsZero() && now.Sub(s.last) < s.opt.Resync {
		return nil
	}
	var found []Job
	for _, repo := range s.opt.Repos {
		jobs, err := s.api.QueuedJobs(ctx, repo, s.opt.MaxRuns)
		if err != nil {
			return err
		}
		found = append(found, jobs...)
	}
	now := s.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = now
	for _, j := range found {
		if j.Status == "queued" {
			if e, ok := s.q[j.ID]; ok {
				e.checked = now
			} else if s.add(j) != "" {
				s.q[j.ID].checked = now
			}
		}
	}
	return nil
}

// capLabels turns an agent's caps (labels as keys) into Offered's form.
func capLabels(caps map[string]string) []string {
	out := make([]string, 0, len(caps))
	for k := range caps {
		out = append(out, k)
	}
	return out
}
