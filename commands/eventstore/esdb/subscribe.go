package esdb

import (
	"context"
	"errors"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/heraldhq/herald/commands/eventstore"
	"github.com/heraldhq/herald/domain"
)

const (
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = 5 * time.Second
)

// Subscribe implements eventstore.Store with a catch-up subscription to $all,
// filtered on the server to Herald's streams. It survives server restarts and
// dropped subscriptions: each time, it logs, waits (backing off) and
// subscribes again after the last event it handed to handle, never from a
// server checkpoint, so no event is skipped or delivered twice.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, handle func(context.Context, []eventstore.RecordedEvent) error) error {
	last, err := parsePosition(after)
	if err != nil {
		return err
	}
	retry := domain.Backoff{Min: resubscribeMin, Max: resubscribeMax}
	for {
		delivered, err := s.subscribeOnce(ctx, &last, handle)
		var failed handlerError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &failed):
			return failed.err
		}
		if delivered {
			retry.Reset()
		}
		delay := retry.Next()
		s.opts.Logger.WarnContext(ctx, "event store subscription dropped, subscribing again after the last delivered event",
			"error", err, "after", last.String(), "retry_in", delay)
		if !domain.Sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// handlerError carries the error of the subscriber's handler, which ends the
// subscription, apart from the subscription's own errors, which do not.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }
func (e handlerError) Unwrap() error { return e.err }

// received is what the receiving goroutine passes on: an event, or the error
// that ended the subscription, always its last value.
type received struct {
	event *esdbclient.RecordedEvent
	err   error
}

// subscribeOnce runs one subscription after *last until it drops, ctx ends or
// handle fails, advancing *last past every batch handle accepts. Whatever has
// arrived by the time a batch is handed over goes with it, up to BatchSize.
func (s *Store) subscribeOnce(ctx context.Context, last *cursor, handle func(context.Context, []eventstore.RecordedEvent) error) (delivered bool, err error) {
	subCtx, cancel := context.WithCancel(ctx)
	incoming := make(chan received, s.opts.BatchSize)
	done := make(chan struct{})
	from := *last
	go func() {
		defer close(done)
		s.receive(subCtx, from, incoming)
	}()
	defer func() {
		cancel()
		<-done
	}()

	for {
		var r received
		select {
		case <-ctx.Done():
			return delivered, ctx.Err()
		case r = <-incoming:
		}
		var batch []eventstore.RecordedEvent
		next := *last
		ended := s.take(r, &next, &batch)
	drain:
		for ended == nil && len(batch) < s.opts.BatchSize {
			select {
			case r = <-incoming:
				ended = s.take(r, &next, &batch)
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			if err := handle(ctx, batch); err != nil {
				return delivered, handlerError{err}
			}
			*last, delivered = next, true
		}
		if ended != nil {
			return delivered, ended
		}
	}
}

// take adds r's event to batch when it is one of Herald's and after next,
// and moves next to it; it returns the error r ends the subscription with.
func (s *Store) take(r received, next *cursor, batch *[]eventstore.RecordedEvent) error {
	if r.err != nil {
		return r.err
	}
	e := r.event
	if !isHerald(s.opts.StreamPrefixes, e.StreamID, e.EventType) {
		return nil
	}
	if next.set && comparePositions(e.Position, next.pos) <= 0 {
		return nil
	}
	rec, err := recorded(e)
	if err != nil {
		return err
	}
	*batch = append(*batch, rec)
	*next = cursor{pos: e.Position, set: true}
	return nil
}

// receive subscribes to $all after from and passes its events to out until
// the subscription drops or ctx ends. Checkpoints, caught-up and fell-behind
// notices carry nothing to deliver and are dropped.
func (s *Store) receive(ctx context.Context, from cursor, out chan<- received) {
	send := func(r received) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	sub, err := call(ctx, s, func(c *esdbclient.Client) (*esdbclient.Subscription, error) {
		return c.SubscribeToAll(ctx, esdbclient.SubscribeToAllOptions{
			From:   from.allPosition(),
			Filter: &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: s.opts.StreamPrefixes},
		})
	})
	if err != nil {
		send(received{err: fail(ctx, "subscribe to the log", err)})
		return
	}
	defer func() { _ = sub.Close() }() // Close always returns nil.
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			err := ev.SubscriptionDropped.Error
			if err == nil {
				err = errors.New("dropped without a reason")
			}
			send(received{err: fail(ctx, "subscription to the log", err)})
			return
		case ev.EventAppeared != nil && ev.EventAppeared.Event != nil:
			if !send(received{event: ev.EventAppeared.Event}) {
				return
			}
		}
	}
}
