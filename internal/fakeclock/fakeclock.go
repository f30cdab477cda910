// Package fakeclock is a clock that moves only when told, for the simulator
// and for tests that check expiry, back-off and start latency without
// sleeping. Its timers fire while Advance moves the clock past them.
package fakeclock

import (
	"sort"
	"sync"
	"time"
)

// Clock is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
	seq    uint64
}

type timer struct {
	at  time.Time
	seq uint64 // timers due at one instant fire in the order they were set
	f   func()
}

// New returns a clock reading t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time; pass the method value as a Now func.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc calls f, on the goroutine that calls Advance, once the clock
// has moved d past now. The returned stop cancels it and reports whether it
// had not fired yet.
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), seq: c.seq, f: f}
	c.seq++
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				return true
			}
		}
		return false
	}
}

// Next returns when the earliest timer is due, if any is set.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.first(); t != nil {
		return t.at, true
	}
	return time.Time{}, false
}

// Advance moves the clock forward by d, firing the timers due on the way in
// order, each with the clock at its time.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		t := c.first()
		if t == nil || t.at.After(end) {
			break
		}
		c.timers = c.timers[1:]
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// first sorts the timers and returns the earliest, or nil. Called with c.mu held.
func (c *Clock) first() *timer {
	if len(c.timers) == 0 {
		return nil
	}
	sort.Slice(c.timers, func(i, j int) bool {
		if !c.timers[i].at.Equal(c.timers[j].at) {
			return c.timers[i].at.Before(c.timers[j].at)
		}
		return c.timers[i].seq < c.timers[j].seq
	})
	return c.timers[0]
}
