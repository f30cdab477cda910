package scaler

import (
	"context"
	"errors"
	"time"

	"github.com/agentscaler/agentscaler/ci"
)

// flight is a pool's in-flight reconcile and the one trailing run queued
// behind it. Every trigger is answered by a run that starts after it, and a
// burst of triggers while a run is in flight costs one more run, not one each.
type flight struct {
	running bool
	started bool          // cur has begun observing: a trigger now needs next
	cur     *run          // in flight, or held back
	next    *run          // queued behind it; nil if none
	urgent  bool          // the run to come answers a waiting job: no minimum gap
	wake    chan struct{} // closed when an urgent trigger joins a held run
	ended   time.Time     // when the last run ended, for the pace
	fails   int           // reconciles failed in a row
	lastErr string        // the last failure, logged once while it repeats
}

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
func (s *Scaler) hold(trailing bool, fails int) time.Duration {
	var d time.Duration
	if trailing {
		d = s.opt.MinGap
	}
	if s.opt.Pace != nil {
		d = max(d, s.opt.Pace())
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

// JobWaiting is the event of a job queued, with its job id when the source
// knows it. Every pool is reconciled: a pool whose last observation did not
// list the job at once, one that did only after the minimum gap, since the
// event tells it nothing new (in a flood of service hooks, most arrive after
// a pass already saw their job).
func (s *Scaler) JobWaiting(jobID string) {
	for _, p := range s.order {
		s.mu.Lock()
		known := jobID != "" && s.seen[p][jobID]
		s.mu.Unlock()
		s.start(p, !known)
	}
}

// JobCompleted is the event of a job that ended: every pool is tidied up
// after the minimum gap, and looked at again recheck later, when the
// single-use agent that ran it has exited (its container runs on for a
// moment after it unregisters).
func (s *Scaler) JobCompleted(recheck time.Duration) {
	s.tidyAll()
	s.lookAgain(recheck)
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

// tidyAll asks for a reconcile of every pool without waiting, to clean up
// after a job that ended: it may wait out the minimum gap.
func (s *Scaler) tidyAll() {
	for _, p := range s.order {
		s.start(p, false)
	}
}

// lookAgain asks for one more reconcile of every pool after d, once
// however often it is called in the meantime.
func (s *Scaler) lookAgain(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.soon {
		return
	}
	s.soon = true
	s.soonTimer = time.AfterFunc(d, func() {
		s.mu.Lock()
		s.soon = false
		s.mu.Unlock()
		s.tidyAll()
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
		s.log.Debug("reconcile failed again", "pool", pool, "failed_in_a_row", f.fails, "next_in", s.hold(false, f.fails), "error", err)
	default:
		f.fails++
		f.lastErr = err.Error()
		s.log.Warn("reconcile failed", "pool", pool, "failed_in_a_row", f.fails, "next_in", s.hold(false, f.fails), "error", err)
	}
}

// Wait blocks until no reconcile is in flight, for shutdown and tests.
func (s *Scaler) Wait() { s.wg.Wait() }

// Stop ends holding runs back (pace, failure backoff) and waits until no
// reconcile is in flight: for shutdown.
// Triggers after Stop start nothing: their runs report ErrStopped.
func (s *Scaler) Stop() {
	s.mu.Lock()
	s.stop.Do(func() { close(s.quit) })
	if s.soonTimer != nil {
		s.soonTimer.Stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
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
			close(f.wake)
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
	f.running, f.urgent, f.wake = true, urgent, make(chan struct{})
	f.cur = &run{done: make(chan struct{})}
	s.wg.Add(1)
	go s.fly(pool, f)
	return f.cur
}

// fly runs reconciles until no trailing run is queued. Each run waits out
// the hold first, measured from the end of the run before; triggers in the
// meantime join it. Once Stop is called, nothing is held back.
func (s *Scaler) fly(pool string, f *flight) {
	defer s.wg.Done()
	for trailing := false; ; trailing = true {
		s.wait(f, trailing)
		s.mu.Lock()
		f.started, f.urgent = true, false
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.opt.RunTimeout+time.Second)
		res, err := s.Reconcile(ctx, pool)
		cancel()
		s.mu.Lock()
		s.logOutcome(pool, f, err)
		f.cur.err = err
		close(f.cur.done)
		f.ended, f.started = time.Now(), false
		if f.next == nil && createsToRetry(res) && f.fails <= followUps && !s.stopped() {
			// A create that may not have happened is planned again by a
			// pass of its own, after the failure backoff, not by the timer.
			f.next = &run{done: make(chan struct{})}
		}
		if f.next == nil {
			f.running = false
			s.mu.Unlock()
			return
		}
		f.cur, f.next = f.next, nil
		if !f.urgent {
			f.wake = make(chan struct{})
		}
		s.mu.Unlock()
	}
}

// wait holds a run back until its hold has passed since the last run
// ended, Stop is called, or an urgent trigger lifts the minimum gap (the
// pace and the failure backoff still apply then).
func (s *Scaler) wait(f *flight, trailing bool) {
	for {
		s.mu.Lock()
		ended, fails, urgent, wake := f.ended, f.fails, f.urgent, f.wake
		s.mu.Unlock()
		if urgent {
			wake = nil // already lifted: wait on the rest
		}
		wait := time.Until(ended.Add(s.hold(trailing && !urgent, fails)))
		if wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			return
		case <-s.quit:
			t.Stop()
			return
		case <-wake:
			t.Stop()
		}
	}
}
