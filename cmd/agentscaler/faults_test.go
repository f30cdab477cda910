package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/scaler"
)

// The fault matrix: the whole loop (the Azure DevOps emulator, serve, the
// memory provider, and single-use agents played by burstAgents) with one
// fault at a time injected, then several together. Each row is a world of
// its own, so a fault's effects never leak into the next row. After the
// fault stops, the invariants: no job ever had two agents, every job gets
// its agent, nothing of ours is left once the queue is empty, and the
// placeholder agent survives.

const (
	// faultInterval is serve's timer: the safety net that serves what the
	// hooks did not.
	faultInterval = time.Second
	// faultCallTimeout is reconcile.call_timeout: slow answers outlast it.
	faultCallTimeout = time.Second
	// faultFor is how long each fault lasts; the jobs are queued as it begins.
	faultFor = time.Second
	// faultJobs is how many jobs each row queues.
	faultJobs = 4
	// faultHang bounds each wait, only so that a hang fails instead of
	// blocking; no assertion depends on it.
	faultHang = 30 * time.Second
)

// ourAgent matches the agent names of our instances and warm slots.
var ourAgent = regexp.MustCompile(`^linux-[rw][0-9]+$`)

// restFront is the emulator's REST surface as the autoscaler reaches it,
// with the service's misbehaviours switched on and off. Only the
// autoscaler's own calls (User-Agent agentscaler/<version>) are affected;
// the test's agents talk to a healthy service.
type restFront struct {
	emu  *adoemu.Emulator
	hits atomic.Int64 // answers the faults changed

	mu         sync.Mutex
	status     int           // answer the autoscaler's reads with this error
	retryAfter time.Duration // ... and this Retry-After
	delay      time.Duration // answer its reads this late
	truncate   bool          // cut the JSON of its reads' answers in half
	expired    bool          // its token has expired: every call is 401
	hideAfter  int64         // the job request list leaves out requests above this id; -1: none
}

func (f *restFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	status, retryAfter, delay, truncate, expired, hideAfter := f.status, f.retryAfter, f.delay, f.truncate, f.expired, f.hideAfter
	f.mu.Unlock()
	if !strings.HasPrefix(r.UserAgent(), "agentscaler/") {
		f.emu.ServeHTTP(w, r)
		return
	}
	if expired || (r.Method == http.MethodGet && (status != 0 || delay > 0 || truncate ||
		(hideAfter >= 0 && readEndpoint(r.URL.Path) == adoemu.EndpointJobRequests))) {
		f.hits.Add(1)
	}
	if expired {
		// The emulator answers a token it does not know as the service
		// answers an expired one.
		r.SetBasicAuth("", "expired-"+testPAT[:4])
	}
	if r.Method != http.MethodGet {
		f.emu.ServeHTTP(w, r)
		return
	}
	endpoint := readEndpoint(r.URL.Path)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if status != 0 {
		// The emulator writes the service's error body and Retry-After.
		f.emu.FailNext(endpoint, status, retryAfter)
	}
	if !truncate && (hideAfter < 0 || endpoint != adoemu.EndpointJobRequests) {
		f.emu.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	f.emu.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK && endpoint == adoemu.EndpointJobRequests && hideAfter >= 0 {
		body = hideRequests(body, hideAfter)
	}
	if truncate && rec.Code == http.StatusOK {
		body = body[:len(body)/2]
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// readEndpoint names the autoscaler's reads as the emulator does.
func readEndpoint(path string) string {
	p := strings.ToLower(strings.TrimRight(path, "/"))
	switch {
	case strings.HasSuffix(p, "/jobrequests"):
		return adoemu.EndpointJobRequests
	case strings.HasSuffix(p, "/agents"):
		return adoemu.EndpointAgents
	case strings.HasSuffix(p, "/distributedtask/pools"):
		return adoemu.EndpointPools
	case strings.HasSuffix(p, "/resourceusage"):
		return adoemu.EndpointResourceUsage
	}
	return adoemu.EndpointUnknown
}

// hideRequests leaves requests above id out of a job request list, as a
// list read just after a job was queued can (the hook is sent first).
func hideRequests(body []byte, id int64) []byte {
	var list struct {
		Count int               `json:"count"`
		Value []json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return body
	}
	kept := list.Value[:0]
	for _, raw := range list.Value {
		var rq struct {
			RequestID int64 `json:"requestId"`
		}
		if json.Unmarshal(raw, &rq) == nil && rq.RequestID > id {
			continue
		}
		kept = append(kept, raw)
	}
	list.Count, list.Value = len(kept), kept
	out, err := json.Marshal(list)
	if err != nil {
		return body
	}
	return out
}

func (f *restFront) set(change func(f *restFront)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// hookFront stands between the emulator's service hook deliveries and
// serve: it passes them on, loses them, or holds them to pass on later, in
// order or reversed. A lost or held hook is answered 200, so the service
// believes it delivered.
type hookFront struct {
	hits   atomic.Int64 // hooks lost or held
	client *http.Client // to serve
	mu     sync.Mutex
	target string // serve's webhook URL
	mode   string // "", "drop" or "hold"
	held   []heldHook
}

type heldHook struct {
	body   []byte
	header http.Header
}

func (h *hookFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	mode, target := h.mode, h.target
	if mode == "hold" {
		h.held = append(h.held, heldHook{body: body, header: r.Header.Clone()})
	}
	h.mu.Unlock()
	if mode != "" {
		h.hits.Add(1)
		w.WriteHeader(http.StatusOK)
		return
	}
	status, err := h.post(r.Context(), target, heldHook{body: body, header: r.Header})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.WriteHeader(status)
}

func (h *hookFront) post(ctx context.Context, target string, hk heldHook) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(hk.body))
	if err != nil {
		return 0, err
	}
	for _, k := range []string{"Authorization", "Content-Type"} {
		req.Header.Set(k, hk.header.Get(k))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (h *hookFront) setMode(mode string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode = mode
}

func (h *hookFront) setTarget(url string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.target = url
}

// release passes the held hooks on, in the order they came or reversed,
// and goes back to passing hooks through.
func (h *hookFront) release(t *testing.T, reversed bool) {
	h.mu.Lock()
	held, target := h.held, h.target
	h.held, h.mode = nil, ""
	h.mu.Unlock()
	if reversed {
		slices.Reverse(held)
	}
	for _, hk := range held {
		status, err := h.post(context.Background(), target, hk)
		if err != nil || status != http.StatusOK {
			t.Errorf("late hook: status %d, %v", status, err)
		}
	}
}

// faultProvider stands in for a container backend (a Docker engine, Azure
// Container Instances, the Kubernetes API) that misbehaves the ways they
// do: creates refused (throttled, retryable; quota, permanent), creates
// that happen but whose answer never comes before the caller's deadline,
// creates that happen but answer an error (a connection reset after the
// backend acted), deletes refused, and lists that lag behind (an eventually
// consistent list). Behind the faults is the memory provider, whose
// instances the test's agents run. It records every instance made, by its
// identity (name and creation time), for counting duplicates.
type faultProvider struct {
	mem  *memory.Provider
	hits atomic.Int64 // calls the faults changed

	mu          sync.Mutex
	createErr   error // returned instead of creating
	createLies  error // returned after creating
	createHangs bool  // create, then answer only after the caller gave up
	deleteErr   error // returned instead of deleting
	listLag     time.Duration
	lists       []listed                      // what List saw, for a lagging list
	made        map[string]providers.Instance // by identity
}

type listed struct {
	at        time.Time
	instances []providers.Instance
}

var _ providers.Provider = (*faultProvider)(nil)

func newFaultProvider() *faultProvider {
	return &faultProvider{mem: memory.New(memory.Options{}), made: map[string]providers.Instance{}}
}

func identity(in providers.Instance) string {
	return in.Name + "@" + in.Created.Format(time.RFC3339Nano)
}

func (p *faultProvider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	p.mu.Lock()
	createErr, lies, hangs := p.createErr, p.createLies, p.createHangs
	p.mu.Unlock()
	if createErr != nil || lies != nil || hangs {
		p.hits.Add(1)
	}
	if createErr != nil {
		return providers.Instance{}, createErr
	}
	in, err := p.mem.Create(ctx, spec)
	if err != nil {
		return in, err
	}
	p.mu.Lock()
	p.made[identity(in)] = in
	p.mu.Unlock()
	switch {
	case hangs:
		<-ctx.Done()
		return providers.Instance{}, fmt.Errorf("create %s: %w", spec.Name, ctx.Err())
	case lies != nil:
		return providers.Instance{}, lies
	}
	return in, nil
}

func (p *faultProvider) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	now, err := p.mem.List(ctx, pool)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lists = append(p.lists, listed{at: time.Now(), instances: now})
	if p.listLag <= 0 {
		return now, nil
	}
	p.hits.Add(1)
	// The newest list at least listLag old: what a lagging backend shows.
	stale := []providers.Instance{}
	for _, l := range p.lists {
		if time.Since(l.at) >= p.listLag {
			stale = l.instances
		}
	}
	return slices.Clone(stale), nil
}

func (p *faultProvider) Delete(ctx context.Context, name string) error {
	p.mu.Lock()
	deleteErr := p.deleteErr
	p.mu.Unlock()
	if deleteErr != nil {
		p.hits.Add(1)
		return deleteErr
	}
	return p.mem.Delete(ctx, name)
}

func (p *faultProvider) set(change func(p *faultProvider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	change(p)
}

// madeCount counts the instances made.
func (p *faultProvider) madeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.made)
}

// faultWorld is one row's loop.
type faultWorld struct {
	t     *testing.T // the row's
	keep  *testing.T // the matrix's: the world lives until it ends (see TestFaultMatrix)
	emu   *adoemu.Emulator
	rest  *restFront
	hooks *hookFront
	prov  *faultProvider
	cfg   *config.Config
	logs  *syncbuf.Buffer
	apps  []*app
	stops []func() error
	jobs  []int64
	hits  atomic.Int64 // faults that fired outside the fronts and the provider
}

// breach reports a broken invariant.
func (w *faultWorld) breach(format string, args ...any) {
	w.t.Helper()
	w.t.Errorf(format, args...)
}

// faultHits is how often the row's faults changed an outcome: a fault that
// never fired tested nothing.
func (w *faultWorld) faultHits() int64 {
	return w.rest.hits.Load() + w.hooks.hits.Load() + w.prov.hits.Load() + w.hits.Load()
}

func newFaultWorld(t, keep *testing.T, faults []fault) *faultWorld {
	opts := adoemu.Options{AutoAssign: true, ParallelJobs: 100, RateLimit: 1 << 30, Logger: slog.New(slog.DiscardHandler)}
	for _, f := range faults {
		if f.emulator != nil {
			f.emulator(&opts)
		}
	}
	emu := startEmulator(keep, opts)
	w := &faultWorld{t: t, keep: keep, emu: emu, rest: &restFront{emu: emu, hideAfter: -1}, hooks: &hookFront{client: &http.Client{Transport: &http.Transport{}}},
		prov: newFaultProvider(), logs: &syncbuf.Buffer{}}
	// The emulator behind the REST front: its links, the account baseUrl
	// of its hooks and OrgURL all name the front.
	front := httptest.NewServer(w.rest)
	keep.Cleanup(front.Close)
	emu.SetServerURL(front.URL)
	hooks := httptest.NewServer(w.hooks)
	keep.Cleanup(hooks.Close)

	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	body := fmt.Sprintf(`azuredevops: {url: %s, token_env: AZP_TOKEN}
webhook:
  basic_auth: {username: azdo, password_env: HOOK_PASSWORD}
reconcile: {interval: %s, call_timeout: %s}
pools:
  - name: linux
    azure_pool: Default
    provider: memory
    max_agents: 10
    capabilities: {Agent.OS: Linux, docker: ""}
`, emu.OrgURL(), faultInterval, faultCallTimeout)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	w.cfg = cfg
	w.startApp()
	emu.Subscribe(adoemu.Subscription{URL: hooks.URL, Username: "azdo", Password: testPassword})
	stopAgents := simulate(keep, emu, w.prov.mem)
	keep.Cleanup(func() { stopAgents() })
	stopReaper := w.reapAgents()
	keep.Cleanup(stopReaper)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's logs:\n%s", w.logs.String())
		}
	})
	keep.Cleanup(func() {
		for i := range w.stops {
			w.stopApp(i)
		}
		if strings.Contains(w.logs.String(), testPAT) || strings.Contains(w.logs.String(), testPassword) {
			keep.Error("a secret appears in the logs")
		}
	})
	return w
}

// reapAgents plays the service noticing that an agent's process is gone:
// burstAgents' agents only go offline after their job, but an instance
// deleted before its agent took one kills the agent, which the service then
// shows offline, and the scaler unregisters it.
func (w *faultWorld) reapAgents() (stop func()) {
	return every(10*time.Millisecond, func() bool {
		for _, a := range w.emu.Agents("Default") {
			if _, running := w.prov.mem.Get(a.Name); a.Online && a.AssignedRequest == 0 && !running && ourAgent.MatchString(a.Name) {
				_ = w.emu.SetAgentStatus("Default", a.Name, false) // it may have unregistered meanwhile
			}
		}
		return true
	})
}

// startApp starts one more serve over the world's emulator and provider and
// points the hooks at it.
func (w *faultWorld) startApp() {
	log := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("app", len(w.apps))
	a, err := newApp(w.keep.Context(), w.cfg, log, testEnv, deps{providers: map[string]providers.Provider{"memory": w.prov}})
	if err != nil {
		w.t.Fatal(err)
	}
	addr, stop := benchServe(w.keep, func(ctx context.Context, onListen func(string)) error {
		return a.serve(ctx, "127.0.0.1:0", onListen)
	})
	w.apps, w.stops = append(w.apps, a), append(w.stops, stop)
	w.hooks.setTarget("http://" + addr + "/api/webhook/azuredevops")
}

// stopApp stops one serve, as a host stops an instance: its context ends.
// The hooks' connections to it are closed first: serve's shutdown waits up
// to 5 s for a connection a client opened and never used (net/http treats
// a new connection as idle only after that), which a host does not keep.
func (w *faultWorld) stopApp(i int) {
	w.hooks.client.CloseIdleConnections()
	if err := w.stops[i](); err != nil {
		w.keep.Errorf("serve: %v", err)
	}
}

func (w *faultWorld) queue(n int) {
	for range n {
		w.jobs = append(w.jobs, w.emu.QueueJob("Default", adoemu.Job{Name: fmt.Sprintf("job-%d", len(w.jobs)), Demands: []string{"docker"}}))
	}
}

// served reports whether every job queued has been given to an agent.
func (w *faultWorld) served() bool {
	assigned := map[int64]bool{}
	for _, r := range w.emu.Requests("Default") {
		assigned[r.ID] = !r.AssignTime.IsZero()
	}
	for _, id := range w.jobs {
		if !assigned[id] {
			return false
		}
	}
	return true
}

// leftovers lists what of ours is still there: instances, and registered
// agents named like ours.
func (w *faultWorld) leftovers() []string {
	var left []string
	for _, in := range w.prov.mem.All() {
		left = append(left, "instance "+in.Name)
	}
	for _, a := range w.emu.Agents("Default") {
		if ourAgent.MatchString(a.Name) {
			left = append(left, "agent "+a.Name)
		}
	}
	return left
}

// passes sums agentscaler_reconciles_total over the world's apps.
func (w *faultWorld) passes() int {
	n := 0
	for _, a := range w.apps {
		rec := httptest.NewRecorder()
		a.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/metrics", nil))
		for line := range strings.SplitSeq(rec.Body.String(), "\n") {
			if !strings.HasPrefix(line, "agentscaler_reconciles_total{") {
				continue
			}
			f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err == nil {
				n += int(f)
			}
		}
	}
	return n
}

func (w *faultWorld) waitFor(what string, cond func() bool) bool {
	w.t.Helper()
	deadline := time.Now().Add(faultHang)
	for !cond() {
		if time.Now().After(deadline) {
			w.breach("timed out after %s waiting for %s", faultHang, what)
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// fault is one misbehaviour: on switches it on as the jobs are queued, off
// switches it off once faultFor has passed.
type fault struct {
	name    string
	on, off func(w *faultWorld)
	during  func(w *faultWorld) // when set, run right after the jobs are queued
	// emulator, when set, sets up the emulator for a fault it has from the
	// start to the end.
	emulator func(*adoemu.Options)
	// firesAtOff says the fault does its work when switched off.
	firesAtOff bool
}

func restFault(name string, change func(f *restFront)) fault {
	return fault{
		name: name,
		on:   func(w *faultWorld) { w.rest.set(change) },
		off: func(w *faultWorld) {
			w.rest.set(func(f *restFront) {
				f.status, f.retryAfter, f.delay, f.truncate, f.expired, f.hideAfter = 0, 0, 0, false, false, -1
			})
		},
	}
}

func providerFault(name string, change func(p *faultProvider)) fault {
	return fault{
		name: name,
		on:   func(w *faultWorld) { w.prov.set(change) },
		off: func(w *faultWorld) {
			w.prov.set(func(p *faultProvider) {
				p.createErr, p.createLies, p.createHangs, p.deleteErr, p.listLag = nil, nil, false, nil, 0
			})
		},
	}
}

func hookFault(name, mode string, reversed bool) fault {
	return fault{
		name: name,
		on:   func(w *faultWorld) { w.hooks.setMode(mode) },
		off: func(w *faultWorld) {
			w.hooks.release(w.t, reversed) // a dropped hook was never held: nothing to release
		},
	}
}

var (
	faultREST5xx = restFault("Azure DevOps 503", func(f *restFront) { f.status = http.StatusServiceUnavailable })
	faultREST429 = restFault("Azure DevOps 429 Retry-After 1s", func(f *restFront) {
		f.status, f.retryAfter = http.StatusTooManyRequests, time.Second
	})
	faultRESTSlow     = restFault("Azure DevOps slower than call_timeout", func(f *restFront) { f.delay = faultCallTimeout + 500*time.Millisecond })
	faultRESTTruncate = restFault("Azure DevOps truncated JSON", func(f *restFront) { f.truncate = true })
	faultRESTExpired  = restFault("Azure DevOps token expired (401)", func(f *restFront) { f.expired = true })

	faultCreateRetryable = providerFault("create fails, retryable", func(p *faultProvider) {
		p.createErr = &providers.Error{Op: memory.OpCreate, Retryable: true, Reason: "throttled", RetryAfter: 200 * time.Millisecond,
			Err: fmt.Errorf("429 Too Many Requests: the subscription's container group creation rate was exceeded")}
	})
	faultCreatePermanent = providerFault("create fails, permanent", func(p *faultProvider) {
		p.createErr = &providers.Error{Op: memory.OpCreate, Reason: "quota",
			Err: fmt.Errorf("409 ContainerGroupQuotaReached: resource quota exceeded for container groups")}
	})
	faultCreateHangs = providerFault("create times out (but happens)", func(p *faultProvider) { p.createHangs = true })
	faultCreateLies  = providerFault("create succeeds, reports failure", func(p *faultProvider) {
		p.createLies = &providers.Error{Op: memory.OpCreate, Retryable: true, Reason: "unavailable",
			Err: fmt.Errorf("read: connection reset by peer")}
	})
	faultDeleteFails = providerFault("delete fails", func(p *faultProvider) {
		p.deleteErr = &providers.Error{Op: memory.OpDelete, Retryable: true, Reason: "unavailable",
			Err: fmt.Errorf("503 Service Unavailable")}
	})
	faultListLags = providerFault("list lags 1s", func(p *faultProvider) { p.listLag = time.Second })

	faultHooksLost       = hookFault("hooks lost", "drop", false)
	faultHooksLate       = hookFault("hooks late", "hold", false)
	faultHooksOutOfOrder = hookFault("hooks out of order", "hold", true)
	faultHooksRepeated   = fault{
		name:       "hooks repeated",
		firesAtOff: true,
		on:         func(*faultWorld) {},
		off: func(w *faultWorld) {
			// Every event so far once more, byte for byte, as the service
			// does when it missed an answer.
			seen := map[string]bool{}
			for _, d := range w.emu.Deliveries() {
				if !seen[d.EventID] {
					seen[d.EventID] = true
					if err := w.emu.Redeliver(d.EventID); err != nil {
						w.t.Error(err)
					}
					w.hits.Add(1)
				}
			}
		},
	}
	// A serve stopped mid-burst (its context cancelled while the hooks'
	// reconciles run), jobs queued while none runs (their hooks fail and
	// are retried), and another serve started over the same Azure DevOps
	// and provider, as when a Functions instance is recycled. In a row of
	// several faults it comes first, so that the others' hooks, when let
	// go, reach the new serve.
	faultRestart = fault{
		name: "serve stopped mid-burst, another started",
		on:   func(*faultWorld) {},
		during: func(w *faultWorld) {
			time.Sleep(5 * time.Millisecond)
			w.stopApp(0)
			w.hits.Add(1)
			w.queue(2)
		},
		off: func(w *faultWorld) { w.startApp() },
	}
	// The job request list answers at most 2 requests at a time (the
	// service's cap is 200), so the 4 jobs are seen only page by page.
	faultJobRequestsCap = fault{
		name:     "Azure DevOps job request cap (2 per answer)",
		on:       func(w *faultWorld) { w.hits.Add(1) },
		off:      func(*faultWorld) {},
		emulator: func(o *adoemu.Options) { o.JobRequestsCap = 2 },
	}
	// A second serve beside the first over the same Azure DevOps and
	// provider, as a scaled-out Functions app runs: the hooks go to the
	// second, both run their timers.
	faultSecondServe = fault{
		name: "a second serve beside the first",
		on: func(w *faultWorld) {
			w.startApp()
			w.hits.Add(1)
		},
		off: func(*faultWorld) {},
	}
	// Early: the hook arrives before the job request list shows the job.
	faultHooksEarly = fault{
		name: "hooks early (before the list shows the job)",
		on: func(w *faultWorld) {
			var last int64
			for _, r := range w.emu.Requests("Default") {
				last = max(last, r.ID)
			}
			w.rest.set(func(f *restFront) { f.hideAfter = last })
		},
		off: func(w *faultWorld) { w.rest.set(func(f *restFront) { f.hideAfter = -1 }) },
	}
)

// matrixRow is what one row measured.
type matrixRow struct {
	name       string
	passes     int
	duplicates int
	converge   time.Duration // from the fault's end until every job had its agent; < 0: all had one before it ended
	clean      time.Duration // from the fault's end until nothing of ours was left
	hits       int64         // outcomes the faults changed
	note       string
}

// runFaults runs one row: the faults on, jobs queued, the faults off after
// lasting, then the invariants.
func runFaults(t, keep *testing.T, lasting time.Duration, faults ...fault) matrixRow {
	w := newFaultWorld(t, keep, faults)
	var names []string
	for _, f := range faults {
		names = append(names, f.name)
	}
	row := matrixRow{name: strings.Join(names, " + ")}
	// The placeholder is registered by the first pass; wait for it, so the
	// row starts from a settled pool.
	w.waitFor("the placeholder agent", w.placeholder)
	for _, f := range faults {
		f.on(w)
	}
	w.queue(faultJobs)
	queued := time.Now()
	for _, f := range faults {
		if f.during != nil {
			f.during(w)
		}
	}
	time.Sleep(time.Until(queued.Add(lasting)))
	// A fault stays on until it has bitten at least once (a delete fails
	// only once a job is done): a fault that never fired tests nothing.
	if !slices.ContainsFunc(faults, func(f fault) bool { return f.firesAtOff }) {
		w.waitFor("the fault to fire", func() bool { return w.faultHits() > 0 })
	}
	stopped := time.Now()
	for _, f := range faults {
		f.off(w)
	}
	if w.waitFor("every job to have its agent", w.served) {
		// From the emulator's assign times, not the polling.
		var last time.Time
		for _, r := range w.emu.Requests("Default") {
			last = maxTime(last, r.AssignTime)
		}
		row.converge = last.Sub(stopped)
	}
	w.checkInvariants(&row)
	row.clean = time.Since(stopped)
	row.hits = w.faultHits()
	if row.hits == 0 {
		t.Error("the fault never fired")
	}
	return row
}

func (w *faultWorld) placeholder() bool {
	for _, a := range w.emu.Agents("Default") {
		if a.Name == "linux-placeholder" {
			return true
		}
	}
	return false
}

// checkInvariants waits for the queue to empty and the pool to be clean,
// then counts duplicates.
func (w *faultWorld) checkInvariants(row *matrixRow) {
	w.t.Helper()
	w.waitFor("nothing of ours left", func() bool { return len(w.leftovers()) == 0 })
	if left := w.leftovers(); len(left) > 0 {
		w.breach("left behind: %v", left)
	}
	if !w.placeholder() {
		w.breach("the placeholder agent is gone")
	}
	// No job had two agents: no more instances made (each known by its name
	// and creation time) than jobs, and each request run by one agent. Two
	// instances may carry one request's name, one after the other: the first
	// took another job, and the request got the second once it was gone.
	made := w.prov.madeCount()
	row.duplicates = max(0, made-len(w.jobs))
	if row.duplicates > 0 {
		w.breach("%d instances made for %d jobs", made, len(w.jobs))
	}
	for _, r := range w.emu.Requests("Default") {
		switch {
		case r.AssignTime.IsZero():
			w.breach("request %d never had an agent", r.ID)
		case !ourAgent.MatchString(r.Agent):
			w.breach("request %d ran on %q, not an agent of ours", r.ID, r.Agent)
		}
	}
	row.passes = w.passes()
}

// TestFaultMatrix runs the loop with each fault, then with several at once,
// and prints the matrix.
func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault matrix runs the loop for about 50 s")
	}
	rows := []struct {
		faults  []fault
		lasting time.Duration // default faultFor
		skip    string
	}{
		{faults: []fault{faultREST5xx}},
		// An outage long enough for the failure backoff to grow past
		// the timer interval.
		{faults: []fault{faultREST5xx}, lasting: 3 * time.Second},
		{faults: []fault{faultREST429}},
		{faults: []fault{faultRESTSlow}},
		{faults: []fault{faultRESTTruncate}},
		{faults: []fault{faultRESTExpired}},
		{faults: []fault{faultJobRequestsCap}},
		{faults: []fault{faultCreateRetryable}},
		{faults: []fault{faultCreatePermanent}},
		{faults: []fault{faultCreateHangs}},
		{faults: []fault{faultCreateLies}},
		{faults: []fault{faultDeleteFails}},
		{faults: []fault{faultListLags}},
		{faults: []fault{faultHooksLost}},
		{faults: []fault{faultHooksRepeated}},
		{faults: []fault{faultHooksOutOfOrder}},
		{faults: []fault{faultHooksEarly}},
		{faults: []fault{faultHooksLate}},
		{faults: []fault{faultRestart}},
		{faults: []fault{faultSecondServe}},
		// A create that timed out but happened is not retried in its pass:
		// a retry landing after the other serve removed the instance that
		// ran the job would start a second one.
		{faults: []fault{faultSecondServe, faultCreateHangs}, lasting: 2 * time.Second},
		{faults: []fault{faultREST5xx, faultCreateLies, faultListLags, faultHooksRepeated}},
		{faults: []fault{faultRESTSlow, faultDeleteFails, faultCreateHangs, faultHooksOutOfOrder}},
		{faults: []fault{faultRESTExpired, faultCreateRetryable, faultHooksEarly, faultHooksLost}},
		{faults: []fault{faultRestart, faultRESTTruncate, faultCreatePermanent, faultListLags, faultHooksLate}},
	}
	// Every row's world (its serves, emulator and agents) lives until the
	// matrix ends, and the serves are stopped once no "completed" hook's
	// second look is pending, so that the last rows' passes are all counted.
	keep := t
	var table []matrixRow
	for _, r := range rows {
		var names []string
		for _, f := range r.faults {
			names = append(names, f.name)
		}
		name := strings.Join(names, " + ")
		lasting := faultFor
		if r.lasting > 0 {
			lasting = r.lasting
			name += fmt.Sprintf(" for %s", lasting)
		}
		if r.skip != "" {
			table = append(table, matrixRow{name: name, note: "skipped: " + r.skip})
			continue
		}
		t.Run(name, func(t *testing.T) {
			row := runFaults(t, keep, lasting, r.faults...)
			row.name = name
			switch {
			case row.note != "":
			case t.Failed():
				row.note = "FAILED"
			case row.converge > faultInterval:
				// Reported, not failed: a loaded machine may delay the
				// pass; the failure backoff can too, by design.
				row.note = "(later than one timer interval)"
			}
			table = append(table, row)
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-6s %6s %10s %9s %7s  %s\n", "passes", "fired", "duplicates", "converge", "clean", "fault")
	for _, r := range table {
		if strings.HasPrefix(r.note, "skipped") {
			fmt.Fprintf(&b, "%-6s %6s %10s %9s %7s  %s (%s)\n", "-", "-", "-", "-", "-", r.name, r.note)
			continue
		}
		converge := fmt.Sprintf("%.2fs", r.converge.Seconds())
		if r.converge < 0 {
			converge = "during" // every job had its agent before the fault ended
		}
		fmt.Fprintf(&b, "%6d %6d %10d %9s %6.2fs  %s %s\n", r.passes, r.hits, r.duplicates, converge, r.clean.Seconds(), r.name, r.note)
	}
	time.Sleep(scaler.DefaultRecheck + 100*time.Millisecond)
	t.Logf("fault matrix: timer %s, call_timeout %s, %d jobs per row queued as the faults begin, faults on for %s unless the row says;\n"+
		"passes: reconciles in the row; fired: outcomes the faults changed; converge: from the faults' end until every job had\n"+
		"its agent; clean: from the faults' end until no instance or agent of ours was left%s",
		faultInterval, faultCallTimeout, faultJobs, faultFor, b.String())
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
