package scaler

import (
	"context"
	"time"
)

// flight is a pool's in-flight reconcile and the one trailing run queued
// behind it. Every trigger is answered by a run that starts after it, and a
// burst of triggers while a run is in flight costs one more run, not one each.
type flight struct {
	running bool
	started bool      // cur has begun observing: a trigger now needs next
	cur     *run      // in flight, or held back by the pace
	next    *run      // queued behind it; nil if none
	ended   time.Time // when the last run ended, for the pace
}

type run struct {
	done chan struct{} // closed when the run ends
	err  error         // set before done is closed
}

// Trigger asks for a reconcile of the pool without waiting for it.
func (s *Scaler) Trigger(pool string) { s.start(pool) }

// TriggerAll asks for a reconcile of every pool without waiting.
func (s *Scaler) TriggerAll() {
	for _, p := range s.order {
		s.start(p)
	}
}

// TriggerAllSoon asks for one more reconcile of every pool after d, once
// however often it is called in the meantime.
func (s *Scaler) TriggerAllSoon(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.soon {
		return
	}
	s.soon = true
	time.AfterFunc(d, func() {
		s.mu.Lock()
		s.soon = false
		s.mu.Unlock()
		s.TriggerAll()
	})
}

// Run asks for a reconcile of the pool and waits until a run that started
// after this call has finished, returning its error.
func (s *Scaler) Run(ctx context.Context, pool string) error {
	r := s.start(pool)
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

// Wait blocks until no reconcile is in flight, for shutdown and tests.
func (s *Scaler) Wait() { s.wg.Wait() }

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

// start returns a run that begins after now.
func (s *Scaler) start(pool string) *run {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flight[pool]
	if f == nil {
		f = &flight{}
		s.flight[pool] = f
	}
	if f.running && !f.started {
		return f.cur // held back: it starts after this trigger
	}
	if f.running {
		if f.next == nil {
			f.next = &run{done: make(chan struct{})}
		}
		return f.next
	}
	f.running = true
	f.cur = &run{done: make(chan struct{})}
	s.wg.Add(1)
	go s.fly(pool, f)
	return f.cur
}

// fly runs reconciles until no trailing run is queued. Each run waits out
// the pace first, measured from the end of the run before; triggers in the
// meantime join it.
func (s *Scaler) fly(pool string, f *flight) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		ended := f.ended
		s.mu.Unlock()
		if s.opt.Pace != nil {
			if wait := time.Until(ended.Add(s.opt.Pace())); wait > 0 {
				time.Sleep(wait)
			}
		}
		s.mu.Lock()
		f.started = true
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.opt.RunTimeout+time.Second)
		_, err := s.Reconcile(ctx, pool)
		cancel()
		if err != nil {
			s.log.Warn("reconcile failed", "pool", pool, "error", err)
		}
		s.mu.Lock()
		f.cur.err = err
		close(f.cur.done)
		f.ended, f.started = time.Now(), false
		if f.next == nil {
			f.running = false
			s.mu.Unlock()
			return
		}
		f.cur, f.next = f.next, nil
		s.mu.Unlock()
	}
}
