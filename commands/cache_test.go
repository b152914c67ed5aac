package commands

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent users of a fold share its catch-up reads, and each still
// goes on only after a read that began after it asked: the fold then holds
// everything written before that.
func TestSharedReadServesEachCallerAReadBegunAfterIt(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		reads    sharedRead
		seen     int64        // what the fold holds, guarded by mu
		written  atomic.Int64 // what the "stream" holds
		readsRun atomic.Int64
	)
	read := func() error {
		readsRun.Add(1)
		snapshot := written.Load() // the read sees what was written before it began
		time.Sleep(500 * time.Microsecond)
		mu.Lock()
		seen = max(seen, snapshot)
		mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // a writer that never stops while the callers run
		for ctx.Err() == nil {
			written.Add(1)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	const callers = 64
	start := make(chan struct{})
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			before := written.Load()
			if err := reads.await(ctx, read); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen < before {
				errs <- errors.New("a caller went on with a fold older than its call")
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := readsRun.Load(); n >= callers {
		t.Fatalf("%d reads for %d concurrent callers: none was shared", n, callers)
	}
	t.Logf("%d reads for %d callers", readsRun.Load(), callers)
}

// A failed read is the error of the caller that ran it; a caller waiting
// on it runs a read of its own. A waiter whose context ends returns.
func TestSharedReadFailuresAndCancellation(t *testing.T) {
	t.Parallel()
	var reads sharedRead
	failing := errors.New("store down")
	inRead := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	read := func() error {
		if calls.Add(1) == 1 {
			close(inRead)
			<-release
			return failing
		}
		return nil
	}
	first := make(chan error, 1)
	go func() { first <- reads.await(context.Background(), read) }()
	<-inRead
	second := make(chan error, 1)
	go func() { second <- reads.await(context.Background(), read) }()
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() { cancelled <- reads.await(ctx, read) }()
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled waiter: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-first; !errors.Is(err, failing) {
		t.Fatalf("the caller whose read failed: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the waiter, after the failed read: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d reads, want the failed one and the waiter's own", n)
	}
}
