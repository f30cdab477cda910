// Package ghemu emulates the part of GitHub Actions the autoscaler and a
// just-in-time runner touch: signed workflow_job webhooks (retried until
// answered 2xx, optionally each delivered twice or lost), the REST calls of
// sources/github with GitHub's payload shapes (jobs, queued runs, runners,
// generate-jitconfig, rate-limit headers), and a small runner protocol that
// stands in for the Actions service a real runner talks to: a runner started
// with its encoded JIT config takes one job whose labels it carries, runs it,
// completes it and is removed, as a JIT runner is.
package ghemu

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures an Emulator.
type Options struct {
	Org    string // the organization owning the runners
	Secret []byte // signs webhooks
	// URL is the emulator's base URL as runners reach it; it goes into
	// each JIT config.
	URL string
	// Twice delivers every webhook twice, under one delivery id.
	Twice bool
	// Lose, when set, drops the hook of a job's action when it says so.
	// It is called with the emulator's lock held.
	Lose func(job JobState, action string) bool
	// RunTime is how long a runner holds a job.
	RunTime time.Duration
}

// JobState is a job as the emulator keeps it.
type JobState struct {
	ID, RunID  int64
	Repo       string
	Labels     []string
	Status     string // queued, in_progress, completed
	RunnerName string
	RunnerID   int64
	Created    time.Time
	Started    time.Time
	Runs       int // how many runners took it: exactly one is right
}

type runner struct {
	ID     int64
	Name   string
	Labels []string
	Group  int64
	Token  string
	Online bool
	Busy   bool
}

// Emulator is an in-memory GitHub. Safe for concurrent use.
type Emulator struct {
	opt   Options
	mu    sync.Mutex
	next  int64
	jobs  map[int64]*JobState
	run   map[int64][]int64 // run id -> job ids
	rs    map[int64]*runner
	hooks []string
	calls map[string]int
	wg    sync.WaitGroup
	sent  int
}

// New returns an Emulator.
func New(opt Options) *Emulator {
	return &Emulator{opt: opt, next: 1000, jobs: map[int64]*JobState{}, run: map[int64][]int64{}, rs: map[int64]*runner{}, calls: map[string]int{}}
}

// SetURL sets the base URL runners reach the emulator at.
func (e *Emulator) SetURL(u string) { e.mu.Lock(); e.opt.URL = u; e.mu.Unlock() }

// Subscribe adds a webhook URL.
func (e *Emulator) Subscribe(url string) { e.mu.Lock(); e.hooks = append(e.hooks, url); e.mu.Unlock() }

// Queue queues a run of one job asking for labels in repo and sends its
// queued hook; it returns the job's id.
func (e *Emulator) Queue(repo string, labels ...string) int64 {
	e.mu.Lock()
	e.next += 2
	runID, id := e.next-1, e.next
	j := &JobState{ID: id, RunID: runID, Repo: repo, Labels: labels, Status: "queued", Created: time.Now().UTC()}
	e.jobs[id], e.run[runID] = j, []int64{id}
	e.mu.Unlock()
	e.send(j, "queued")
	return id
}

// Job returns a job's state.
func (e *Emulator) Job(id int64) (JobState, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	j, ok := e.jobs[id]
	if !ok {
		return JobState{}, false
	}
	return *j, true
}

// Runners returns the registered runners' names.
func (e *Emulator) Runners() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, r := range e.rs {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

// RunnerState is a registered runner as the emulator keeps it.
type RunnerState struct {
	ID     int64
	Name   string
	Online bool // it has asked for a job
	Busy   bool
}

// RunnerStates returns the registered runners, by name.
func (e *Emulator) RunnerStates() []RunnerState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []RunnerState
	for _, r := range e.rs {
		out = append(out, RunnerState{ID: r.ID, Name: r.Name, Online: r.Online, Busy: r.Busy})
	}
	slices.SortFunc(out, func(a, b RunnerState) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Calls returns the REST calls served, by operation.
func (e *Emulator) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.calls {
		out[k] = v
	}
	return out
}

// Wait waits for the webhooks in flight.
func (e *Emulator) Wait() { e.wg.Wait() }

// hookJob is workflow_job in a webhook and in GET job: GitHub's shape.
func (e *Emulator) hookJob(j *JobState) map[string]any {
	m := map[string]any{
		"id": j.ID, "run_id": j.RunID, "run_attempt": 1, "status": j.Status, "labels": j.Labels,
		"name": "build", "workflow_name": "ci", "head_branch": "main",
		"created_at": j.Created.Format(time.RFC3339), "conclusion": nil,
		"runner_id": nil, "runner_name": nil, "runner_group_id": nil, "runner_group_name": nil,
		"url": fmt.Sprintf("%s/repos/%s/actions/jobs/%d", e.opt.URL, j.Repo, j.ID),
	}
	if j.RunnerName != "" {
		m["runner_id"], m["runner_name"], m["runner_group_id"], m["runner_group_name"] = j.RunnerID, j.RunnerName, 1, "Default"
		m["started_at"] = j.Started.Format(time.RFC3339)
	}
	if j.Status == "completed" {
		m["conclusion"] = "success"
	}
	return m
}

// send posts a signed workflow_job hook to every subscriber, retrying
// until a 2xx (at most 8 tries), twice when Twice is set. Call without mu.
func (e *Emulator) send(j *JobState, action string) {
	e.mu.Lock()
	if e.opt.Lose != nil && e.opt.Lose(*j, action) {
		e.mu.Unlock()
		return
	}
	owner, _, _ := strings.Cut(j.Repo, "/")
	body, _ := json.Marshal(map[string]any{
		"action": action, "workflow_job": e.hookJob(j),
		"repository":   map[string]any{"full_name": j.Repo, "name": strings.TrimPrefix(j.Repo, owner+"/"), "owner": map[string]any{"login": owner}},
		"organization": map[string]any{"login": e.opt.Org},
		"sender":       map[string]any{"login": "octocat"},
	})
	hooks := slices.Clone(e.hooks)
	e.mu.Unlock()
	delivery := randHex(16)
	copies := 1
	if e.opt.Twice {
		copies = 2
	}
	for _, url := range hooks {
		for range copies {
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.deliver(url, delivery, body)
			}()
		}
	}
}

func (e *Emulator) deliver(url, delivery string, body []byte) {
	m := hmac.New(sha256.New, e.opt.Secret)
	m.Write(body)
	sig := "sha256=" + hex.EncodeToString(m.Sum(nil))
	for try := range 8 {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "workflow_job")
		req.Header.Set("X-GitHub-Delivery", delivery)
		req.Header.Set("X-Hub-Signature-256", sig)
		req.Header.Set("User-Agent", "GitHub-Hookshot/emulator")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				e.mu.Lock()
				e.sent++
				e.mu.Unlock()
				return
			}
		}
		time.Sleep(time.Duration(50<<try) * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// JITConfig is what the emulator's encoded_jit_config holds: where the
// runner reaches it and the runner's credential.
type JITConfig struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	Name  string `json:"name"`
}

// DecodeJITConfig reads an encoded_jit_config the emulator made.
func DecodeJITConfig(s string) (JITConfig, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return JITConfig{}, fmt.Errorf("jit config: %w", err)
	}
	var c JITConfig
	if err := json.Unmarshal(b, &c); err != nil || c.URL == "" || c.Token == "" {
		return JITConfig{}, fmt.Errorf("jit config: not the emulator's")
	}
	return c, nil
}

func atoi(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
