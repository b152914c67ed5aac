package domain

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a retry schedule whose waits double from Min up to Max: what
// every loop that retries a failing or not-yet-ready dependency (the event
// store, a subscription, a projection, a read waiting for its projection)
// waits between attempts. The zero value waits nothing; a Backoff is not safe
// for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the wait before the next attempt and doubles the one after,
// up to Max.
func (b *Backoff) Next() time.Duration {
	d := max(b.next, b.Min)
	b.next = min(d*2, b.Max)
	return d
}

// Reset starts the schedule again from Min, after an attempt that made
// progress.
func (b *Backoff) Reset() { b.next = 0 }

// Wait sleeps Next unless ctx ends first; it reports whether the whole wait
// passed.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Jittered returns d within ±25 %, so that instances failing together do
// not retry in step.
func Jittered(d time.Duration) time.Duration { return d*3/4 + rand.N(d/2+1) }

// Sleep waits d unless ctx ends first; it reports whether the whole wait
// passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
