package domain_test

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/domain"
)

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

func queuedDelivery() *domain.Delivery {
	d := domain.NewDelivery()
	d.Apply(domain.DeliveryScheduled{ID: "d1", Tenant: "org-1", Channel: domain.ChannelSMS}, 0)
	return d
}

// apply folds events into d at the next versions.
func apply(d *domain.Delivery, evs ...domain.Event) {
	for _, e := range evs {
		d.Apply(e, d.Version+1)
	}
}

var unavailable = &domain.ProviderError{Provider: "sms", Code: "sms.http_503", Message: "Service Unavailable"}

// Seed 003: the first attempt, then after 1 s, 2 s and 4 s; the fourth
// failure fails the delivery.
func TestTransientFailuresAreRetriedAfterOneTwoFourSeconds(t *testing.T) {
	t.Parallel()
	d := queuedDelivery()
	now := t0
	for attempt, wantDelay := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 0} {
		started, err := d.StartAttempt("sms", now)
		if err != nil || started.Attempt != attempt+1 {
			t.Fatalf("attempt %d: %+v, %v", attempt+1, started, err)
		}
		apply(d, started)
		evs := d.FinishAttempt("sms", "", unavailable, 150*time.Millisecond, now)
		apply(d, evs...)
		attempted := evs[0].(domain.DeliveryAttempted)
		if attempted.Outcome != domain.AttemptFailed || attempted.ErrorCode != "sms.http_503" || attempted.DurationMs != 150 {
			t.Fatalf("attempt %d recorded %+v", attempt+1, attempted)
		}
		if wantDelay == 0 {
			failed, ok := evs[len(evs)-1].(domain.DeliveryFailed)
			if !ok || failed.Reason != domain.FailedExhausted || failed.Attempts != domain.MaxAttempts || d.Status != domain.StatusFailed {
				t.Fatalf("after the last attempt: %+v, status %s", evs, d.Status)
			}
			break
		}
		if len(evs) != 1 || attempted.RetryAt == nil || !attempted.RetryAt.Equal(now.Add(wantDelay)) {
			t.Fatalf("attempt %d: retry at %v, want %v", attempt+1, attempted.RetryAt, now.Add(wantDelay))
		}
		// Not due before its time.
		if _, err := d.StartAttempt("sms", now.Add(wantDelay-time.Millisecond)); err == nil {
			t.Fatalf("attempt %d started before it was due", attempt+2)
		}
		now = now.Add(wantDelay)
	}
	if _, err := d.StartAttempt("sms", now.Add(time.Hour)); err == nil {
		t.Fatal("a failed delivery started again")
	}
}

func TestPermanentRefusalFailsAtOnce(t *testing.T) {
	t.Parallel()
	d := queuedDelivery()
	started, _ := d.StartAttempt("smtp", t0)
	apply(d, started)
	evs := d.FinishAttempt("smtp", "", &domain.ProviderError{Provider: "smtp", Code: "smtp.550", Permanent: true, Message: "mailbox unavailable"}, time.Millisecond, t0)
	failed, ok := evs[len(evs)-1].(domain.DeliveryFailed)
	if len(evs) != 2 || !ok || failed.Reason != domain.FailedRefused || failed.ErrorCode != "smtp.550" || failed.Attempts != 1 {
		t.Fatalf("events %+v", evs)
	}
}

func TestRetryAfterLongerThanTheDelayWins(t *testing.T) {
	t.Parallel()
	d := queuedDelivery()
	started, _ := d.StartAttempt("sms", t0)
	apply(d, started)
	evs := d.FinishAttempt("sms", "", &domain.ProviderError{Provider: "sms", Code: "sms.20429", RetryAfter: 30 * time.Second}, 0, t0)
	if at := evs[0].(domain.DeliveryAttempted).RetryAt; at == nil || !at.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("retry at %v", at)
	}
}

func TestSuccessSettlesTheDelivery(t *testing.T) {
	t.Parallel()
	d := queuedDelivery()
	started, _ := d.StartAttempt("sms", t0)
	apply(d, started)
	evs := d.FinishAttempt("sms", "SM1", nil, 80*time.Millisecond, t0)
	apply(d, evs...)
	ok, _ := evs[1].(domain.DeliverySucceeded)
	if evs[0].(domain.DeliveryAttempted).Outcome != domain.AttemptSent || ok.ProviderMessageID != "SM1" || ok.Attempts != 1 || d.Status != domain.StatusSent {
		t.Fatalf("events %+v, status %s", evs, d.Status)
	}
	if _, err := d.StartAttempt("sms", t0.Add(time.Hour)); err == nil {
		t.Fatal("a sent delivery started again")
	}
}

// An attempt started and never finished (a crash) counts: the next start
// takes the next number, and once every attempt was started the delivery
// can only fail.
func TestUnfinishedAttemptsCount(t *testing.T) {
	t.Parallel()
	d := queuedDelivery()
	for i := 1; i <= domain.MaxAttempts; i++ {
		started, err := d.StartAttempt("smtp", t0)
		if err != nil || started.Attempt != i {
			t.Fatalf("start %d: %+v, %v", i, started, err)
		}
		apply(d, started)
	}
	if _, err := d.StartAttempt("smtp", t0); err == nil {
		t.Fatal("started a fifth attempt")
	}
	if f := d.ExhaustAttempts(t0); f.Reason != domain.FailedExhausted || f.Attempts != domain.MaxAttempts {
		t.Fatalf("exhausted %+v", f)
	}
	suppressed := domain.NewDelivery()
	suppressed.Apply(domain.DeliverySuppressed{ID: "d2", Reason: domain.SuppressedNoAddress}, 0)
	if _, err := suppressed.StartAttempt("smtp", t0); err == nil {
		t.Fatal("a suppressed delivery started")
	}
}

// An administrator's retry of a failed delivery starts a new round of
// attempts, numbered on; only a failed delivery can be retried.
func TestRetryStartsANewRound(t *testing.T) {
	t.Parallel()
	d := queuedDelivery()
	if _, err := d.Retry(t0); domain.ErrorCode(err) != domain.CodeDeliveryNotFailed {
		t.Fatalf("retry of a queued delivery: %v", err)
	}
	started, _ := d.StartAttempt("sms", t0)
	apply(d, started)
	apply(d, d.FinishAttempt("sms", "", &domain.ProviderError{Code: "sms.21211", Permanent: true}, 0, t0)...)
	retried, err := d.Retry(t0.Add(time.Minute))
	if err != nil || retried.Channel != domain.ChannelSMS {
		t.Fatalf("retry: %+v, %v", retried, err)
	}
	apply(d, retried)
	now := t0.Add(time.Minute)
	for round := 1; round <= domain.MaxAttempts; round++ {
		started, err := d.StartAttempt("sms", now)
		if err != nil || started.Attempt != 1+round {
			t.Fatalf("attempt %d of the new round: %+v, %v", round, started, err)
		}
		apply(d, started)
		evs := d.FinishAttempt("sms", "", unavailable, 0, now)
		apply(d, evs...)
		if at := evs[0].(domain.DeliveryAttempted).RetryAt; at != nil {
			now = *at
		}
	}
	if d.Status != domain.StatusFailed || d.Started != 1+domain.MaxAttempts {
		t.Fatalf("after the new round: %s, %d attempts", d.Status, d.Started)
	}
}
