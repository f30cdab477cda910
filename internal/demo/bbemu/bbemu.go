// Package bbemu emulates the Bitbucket Cloud calls agentscaler's Bitbucket
// source makes, with their payload shapes: the runners of a workspace or a
// repository (api.bitbucket.org/internal/..., the endpoints Atlassian's
// runners-autoscaler uses), their state, and OAuth client credentials. It
// also hands steps to runners: a step queued with runs-on labels goes to
// an online, enabled, idle runner whose labels include them, as Bitbucket
// does, and fails when no online runner carries them (Bitbucket queues a
// step only while matching runners are busy). Bitbucket's runner protocol
// is private, so runners talk to the emulator through calls of its own
// (/emu/runner/...), which internal/demo/testagent's runner mode makes.
//
// Every call answers on loopback; nothing here talks to Bitbucket.
package bbemu

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configures an Emulator.
type Options struct {
	// ClientID and ClientSecret are the OAuth consumer the autoscaler
	// authenticates as; Token, when set, is a bearer token accepted as well.
	ClientID, ClientSecret string
	Token                  string
	// OfflineAfter is how long after its last poll a runner shows OFFLINE
	// (2 s when 0).
	OfflineAfter time.Duration
	// MaxRunners per workspace (100, Bitbucket's, when 0).
	MaxRunners int
}

// Emulator is an emulated Bitbucket Cloud, an http.Handler: serve it on a
// loopback listener (httptest.NewServer); its base URL stands for both
// https://api.bitbucket.org and https://bitbucket.org.
type Emulator struct {
	opts Options
	mux  *http.ServeMux

	mu       sync.Mutex
	now      func() time.Time
	tokens   map[string]string // access token → principal: "api" or a runner uuid
	runners  map[string]*runner
	steps    []*Step
	calls    map[string]int // by endpoint
	throttle struct {
		n     int
		after time.Duration
	}
}

type runner struct {
	Location
	UUID, Name   string
	Labels       []string
	Secret       string
	ClientID     string
	Created      time.Time
	Updated      time.Time
	Disabled     bool
	LastSeen     time.Time
	Step         *Step
	StepsRun     int
	stateChanged time.Time
}

// Location is where a runner lives: a workspace, or a repository of it.
type Location struct{ Workspace, Repository string }

// Step is a pipeline step that runs on a runner.
type Step struct {
	UUID     string
	Labels   []string // runs-on
	Runs     time.Duration
	Queued   time.Time
	Assigned time.Time // zero until a runner takes it
	Done     time.Time // zero until it ends
	// Failed says the step failed: no online runner carried its labels
	// when it was queued, or its runner went away while it ran.
	Failed bool
	Runner string // the name of the runner that took it
	// RunnerLabels are that runner's labels.
	RunnerLabels []string
}

// New returns an emulator.
func New(opts Options) *Emulator {
	if opts.OfflineAfter <= 0 {
		opts.OfflineAfter = 2 * time.Second
	}
	if opts.MaxRunners <= 0 {
		opts.MaxRunners = 100
	}
	e := &Emulator{opts: opts, now: time.Now, tokens: map[string]string{}, runners: map[string]*runner{}, calls: map[string]int{}}
	e.routes()
	return e
}

func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.mux.ServeHTTP(w, r) }

// Throttle makes the next n API calls answer 429 with Retry-After after.
func (e *Emulator) Throttle(n int, after time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.throttle.n, e.throttle.after = n, after
}

// Calls returns how many API calls each endpoint answered, by "METHOD
// path-pattern".
func (e *Emulator) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.calls {
		out[k] = v
	}
	return out
}

// QueueStep queues a step that runs on a runner carrying labels, for runs,
// and returns its uuid. As in Bitbucket, the step fails at once when no
// online runner (idle or busy) carries its labels: it waits only for a
// matching runner to become free.
func (e *Emulator) QueueStep(labels []string, runs time.Duration) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked()
	now := e.now()
	s := &Step{UUID: newUUID(), Labels: slices.Clone(labels), Runs: runs, Queued: now}
	online := false
	for _, r := range e.runners {
		if e.status(r) == "ONLINE" && subset(labels, r.Labels) {
			online = true
			break
		}
	}
	if !online {
		s.Failed, s.Done = true, now
	}
	e.steps = append(e.steps, s)
	return s.UUID
}

// Steps returns a copy of every step queued so far, in queue order.
func (e *Emulator) Steps() []Step {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Step, len(e.steps))
	for i, s := range e.steps {
		out[i] = *s
	}
	return out
}

// RunnerInfo is a runner as a test sees it.
type RunnerInfo struct {
	Location
	UUID, Name, Status string
	Labels             []string
	StepsRun           int
	Busy               bool
	// Secret is the runner's OAuth client secret, for tests that look for
	// it where it must not be.
	Secret string
}

// Runners returns every runner, in name order.
func (e *Emulator) Runners() []RunnerInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []RunnerInfo
	for _, r := range e.runners {
		out = append(out, RunnerInfo{Location: r.Location, UUID: r.UUID, Name: r.Name, Status: e.status(r), Labels: slices.Clone(r.Labels),
			StepsRun: r.StepsRun, Busy: r.Step != nil, Secret: r.Secret})
	}
	slices.SortFunc(out, func(a, b RunnerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AddRunner registers a runner no autoscaler made (a static one), online
// while it polls.
func (e *Emulator) AddRunner(loc Location, name string, labels []string) (uuid, clientID, secret string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.newRunnerLocked(loc, name, labels)
	return r.UUID, r.ClientID, r.Secret
}

func (e *Emulator) newRunnerLocked(loc Location, name string, labels []string) *runner {
	now := e.now()
	r := &runner{Location: loc, UUID: newUUID(), Name: name, Labels: slices.Clone(labels), ClientID: strings.Trim(newUUID(), "{}"),
		Secret: "bbsecret-" + strings.Trim(newUUID(), "{}"), Created: now, Updated: now, stateChanged: now}
	e.runners[r.UUID] = r
	return r
}

// status is the runner's state.status now.
func (e *Emulator) status(r *runner) string {
	switch {
	case r.Disabled:
		return "DISABLED"
	case r.LastSeen.IsZero():
		return "UNREGISTERED"
	case e.now().Sub(r.LastSeen) > e.opts.OfflineAfter:
		return "OFFLINE"
	}
	return "ONLINE"
}

// expire fails the steps of runners that stopped polling.
func (e *Emulator) expireLocked() {
	for _, r := range e.runners {
		if r.Step != nil && e.status(r) == "OFFLINE" {
			r.Step.Failed, r.Step.Done = true, e.now()
			r.Step, r.stateChanged = nil, e.now()
		}
	}
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return "{" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:] + "}"
}
