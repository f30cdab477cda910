package scaler

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/agentscaler/agentscaler/ci"
)

// flight is a pool's in-flight reconcile and the one trailing run queued
// behind it. Every trigger is answered by a run that starts after it, and a
// burst of triggers while a run is in flight costs one more run, not one each.
// A run held back (minimum gap, pace, failure backoff) waits on a timer of
// the scaler's clock, not on a goroutine, so virtual time can drive it.
type flight struct {
	running  bool        // a run is held back or in progress
	started  bool        // cur has begun observing: a trigger now needs next
	cur      *run        // in progress, or held back
	next     *run        // queued behind it; nil if none
	urgent   bool        // the run to come answers a waiting job: no minimum gap
	trailing bool        // cur trails a run that was in progress when it was asked for
	stop     func() bool // cancels cur's hold timer; nil when none is set
	gen      int         // tells the hold timer in effect from stale ones
	ended    time.Time   // when the last run ended, for the holds
	fails    int         // reconciles failed in a row
	lastErr  string      // the last failure, logged once while it repeats
}

// Clock is the time the scaler runs on: the real one, or the simulator's
// virtual time.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed; stop cancels it and reports
	// whether it had not fired.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// Event timing: what the scaler waits for on its own.
const (
	// DefaultMinGap is the least time between a pass of one pool and the
	// one that trails it: a job queued while the pool is idle is served at
	// once, and during a flood of hooks passes follow each other at most
	// this often.
	DefaultMinGap = 500 * time.Millisecond
	// DefaultRecheck is how long after a job completes the pools are looked
	// at again: longer than a single-use agent takes to exit once it has
	// unregistered.
	DefaultRecheck = 2 * time.Second
)

// Failed reconciles back off from failureBackoffMin, doubling up to
// failureBackoffMax, so that a provider or Azure DevOps that is down costs a
// pass every few seconds, not one per service hook.
const (
	failureBackoffMin = 500 * time.Millisecond
	failureBackoffMax = 16 * time.Second
)

// followUps bounds the passes a pool runs on its own to retry creates that
// failed in a row; past it, hooks and the timer bring the next ones.
const followUps = 3

// createsToRetry reports whether a pass had creates fail in a way worth
// another try.
func createsToRetry(res Result) bool {
	for _, f := range res.Failed {
		if f.Action.Kind == Create && retryable(f.Err) {
			return true
		}
	}
	return false
}

// hold is how long after the last run the next may start: the minimum gap
// when it trails a run (triggers came in while that one ran), the source's
// pace, or longer while reconciles fail.
func (s *Scaler) hold(pool string, trailing bool, fails int) time.Duration {
	var d time.Duration
	if trailing {
		d = s.opt.MinGap
	}
	if p := s.pools[pool]; p != nil && p.Pace != nil {
		d = max(d, p.Pace())
	}
	if fails > 0 {
		most := failureBackoffMax
		if s.opt.MaxBackoff > 0 {
			most = min(most, s.opt.MaxBackoff)
		}
		d = max(d, min(failureBackoffMin<<min(fails-1, 10), most))
	}
	return d
}

type run struct {
	done chan struct{} // closed when the run ends
	err  error         // set before done is closed
}

// JobWaiting is the event of a job queued. The pools it concerns are
// reconciled: a pool whose last observation did not list the job at once,
// one that did only after the minimum gap, since the event tells it nothing
// new (in a flood of service hooks, most arrive after a pass already saw
// their job).
func (s *Scaler) JobWaiting(e ci.Event) {
	for _, p := range s.concerned(e) {
		s.mu.Lock()
		known := e.Ref != "" && s.seen[p][e.Ref]
		s.mu.Unlock()
		s.start(p, !known)
	}
}

// JobCompleted is the event of a job that ended: the pools it concerns are
// tidied up after the minimum gap, and looked at again Options.Recheck
// later, when the single-use agent that ran it has exited (its container
// runs on for a moment after it unregisters).
func (s *Scaler) JobCompleted(e ci.Event) {
	pools := s.concerned(e)
	if len(pools) == 0 {
		return // another system's event
	}
	s.tick(pools)
	s.lookAgain(s.opt.Recheck, pools)
}

// Tick is the timer's event: the pools named, or every pool, are
// reconciled, after the minimum gap if a pass of one is in progress.
func (s *Scaler) Tick(pools ...string) {
	if len(pools) == 0 {
		pools = s.order
	}
	s.tick(pools)
}

// tick reconciles exactly the pools given, after the minimum gap if a pass
// of one is in progress.
func (s *Scaler) tick(pools []string) {
	for _, p := range pools {
		s.start(p, false)
	}
}

// concerned returns the pools an event is about, in configuration order.
func (s *Scaler) concerned(e ci.Event) []string {
	var out []string
	for _, p := range s.order {
		if (e.System == "" || s.pools[p].System == e.System) && (len(e.Pools) == 0 || slices.Contains(e.Pools, p)) {
			out = append(out, p)
		}
	}
	return out
}

// noteJobs records the job refs a pool's observation listed.
func (s *Scaler) noteJobs(pool string, jobs []ci.Job) {
	ids := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		if j.Ref != "" {
			ids[j.Ref] = true
		}
	}
	s.mu.Lock()
	s.seen[pool] = ids
	s.mu.Unlock()
}

// lookAgain asks for one more reconcile of the pools after d, once however
// often it is called in the meantime: the pools asked for meanwhile join it.
func (s *Scaler) lookAgain(d time.Duration, pools []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pools {
		s.again[p] = true
	}
	if s.soon {
		return
	}
	s.soon = true
	s.soonStop = s.clock.AfterFunc(d, func() {
		s.mu.Lock()
		pools := slices.Collect(maps.Keys(s.again))
		clear(s.again)
		s.soon = false
		s.mu.Unlock()
		slices.SortFunc(pools, func(a, b string) int { return slices.Index(s.order, a) - slices.Index(s.order, b) })
		s.tick(pools)
	})
}

// Run asks for a reconcile of the pool and waits until a run that started
// after this call has finished, returning its error.
func (s *Scaler) Run(ctx context.Context, pool string) error {
	r := s.start(pool, false)
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RunAll runs every pool (each coalesced) and returns their errors, in pool order.
func (s *Scaler) RunAll(ctx context.Context) []error {
	errs := make([]error, len(s.order))
	done := make(chan struct{}, len(s.order))
	for i, p := range s.order {
		go func() {
			errs[i] = s.Run(ctx, p)
			done <- struct{}{}
		}()
	}
	for range s.order {
		<-done
	}
	return errs
}

// logOutcome logs a failed reconcile once while the same failure repeats,
// with the count, and says when the pool recovers. Called with s.mu held.
func (s *Scaler) logOutcome(pool string, f *flight, err error) {
	switch {
	case err == nil && f.fails > 0:
		s.log.Info("reconcile recovered", "pool", pool, "failed_in_a_row", f.fails)
		f.fails, f.lastErr = 0, ""
	case err == nil:
	case err.Error() == f.lastErr:
		f.fails++
		s.log.Debug("reconcile failed again", "pool", pool, "failed_in_a_row", f.fails, "next_in", s.hold(pool, false, f.fails), "error", err)
	default:
		f.fails++
		f.lastErr = err.Error()
		s.log.Warn("reconcile failed", "pool", pool, "failed_in_a_row", f.fails, "next_in", s.hold(pool, false, f.fails), "error", err)
	}
}

// Wait blocks until no reconcile is in progress or held back, for shutdown
// and tests. Held runs start on the clock, so with a virtual clock use
// Settle.
func (s *Scaler) Wait() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.busy > 0 || s.anyRunning() {
		s.idle.Wait()
	}
}

// Settle blocks until no reconcile is in progress; runs held back on the
// clock stay held. The simulator settles the scaler after every event before
// it moves virtual time on.
func (s *Scaler) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.busy > 0 {
		s.idle.Wait()
	}
}

func (s *Scaler) anyRunning() bool {
	for _, f := range s.flight {
		if f.running {
			return true
		}
	}
	return false
}

// Stop ends holding runs back (pace, failure backoff, minimum gap): the
// ones held start now; then it waits until no reconcile is in progress:
// for shutdown. Triggers after Stop start nothing: their runs report
// ErrStopped.
func (s *Scaler) Stop() {
	s.mu.Lock()
	s.stop.Do(func() { close(s.quit) })
	if s.soonStop != nil {
		s.soonStop()
	}
	for _, p := range s.order {
		if f := s.flight[p]; f != nil && f.stop != nil {
			s.schedule(p, f) // stopped: it starts now
		}
	}
	s.mu.Unlock()
	s.Wait()
}

// ErrStopped is the outcome of a run asked for after Stop.
var ErrStopped = errors.New("scaler: stopped")

// stopped reports whether Stop was called. Called with s.mu held.
func (s *Scaler) stopped() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// WaitIdle blocks until no reconcile is in flight or queued, or ctx ends.
// Unlike Wait it may race new triggers (as concurrent invocations of one
// Lambda process do): it waits for the runs it sees, then looks again.
func (s *Scaler) WaitIdle(ctx context.Context) error {
	for {
		var pending []chan struct{}
		s.mu.Lock()
		for _, f := range s.flight {
			switch {
			case f.next != nil:
				pending = append(pending, f.next.done) // ends after cur
			case f.running:
				pending = append(pending, f.cur.done)
			}
		}
		s.mu.Unlock()
		if len(pending) == 0 {
			return nil
		}
		for _, done := range pending {
			select {
			case <-done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// start returns a run that begins after now; an urgent trigger cuts the
// minimum gap short.
func (s *Scaler) start(pool string, urgent bool) *run {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped() {
		r := &run{done: make(chan struct{}), err: ErrStopped}
		close(r.done)
		return r
	}
	f := s.flight[pool]
	if f == nil {
		f = &flight{}
		s.flight[pool] = f
	}
	if f.running && !f.started { // held back: it starts after this trigger
		if urgent && !f.urgent {
			f.urgent = true
			s.schedule(pool, f) // without the minimum gap
		}
		return f.cur
	}
	if f.running {
		if f.next == nil {
			f.next = &run{done: make(chan struct{})}
		}
		f.urgent = f.urgent || urgent
		return f.next
	}
	f.running, f.urgent, f.trailing = true, urgent, false
	f.cur = &run{done: make(chan struct{})}
	s.schedule(pool, f)
	return f.cur
}

// schedule starts cur once its hold has passed since the last run ended:
// now, or from a timer of the clock. Once Stop is called nothing is held
// back. Called with s.mu held.
func (s *Scaler) schedule(pool string, f *flight) {
	if f.stop != nil {
		f.stop()
		f.stop = nil
	}
	f.gen++
	wait := f.ended.Add(s.hold(pool, f.trailing && !f.urgent, f.fails)).Sub(s.clock.Now())
	if wait <= 0 || s.stopped() {
		f.started, f.urgent = true, false
		s.busy++
		go s.fly(pool, f)
		return
	}
	gen := f.gen
	f.stop = s.clock.AfterFunc(wait, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if f.gen == gen {
			f.stop = nil
			s.schedule(pool, f) // the pace may have grown meanwhile
		}
	})
}

// fly runs cur, then hands the trailing run, if any, to schedule.
func (s *Scaler) fly(pool string, f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.RunTimeout+time.Second)
	res, err := s.Reconcile(ctx, pool)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.idle.Broadcast()
	s.busy--
	s.logOutcome(pool, f, err)
	f.cur.err = err
	close(f.cur.done)
	f.ended, f.started = s.clock.Now(), false
	if f.next == nil && createsToRetry(res) && f.fails <= followUps && !s.stopped() {
		// A create that may not have happened is planned again by a
		// pass of its own, after the failure backoff, not by the timer.
		f.next = &run{done: make(chan struct{})}
	}
	if f.next == nil {
		f.running = false
		return
	}
	f.cur, f.next, f.trailing = f.next, nil, true
	s.schedule(pool, f)
}
