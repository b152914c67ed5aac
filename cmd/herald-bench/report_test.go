package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The report fits reportWidth columns, whatever the figures, and says each
// measurement's result, baseline, ratio and goal.
func TestReportFitsItsWidth(t *testing.T) {
	twenty := float64(20_000)
	r := results{
		GoVersion: "go1.26.8", GOMAXPROCS: 2, PostgresVersion: "PostgreSQL 15.19 (Debian 15.19-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc",
		Append: []appendResult{{Appenders: 64, Store: 7867, PlainInsertConns: 16, PlainInsert: 6376, StoreVsPlain: 1.23,
			CeilingRows: 100, CeilingConns: 4, Ceiling: 35000, StoreVsCeiling: 0.22, Goal: &goal{Description: "≥ 20,000 events/s", Met: twenty < 7867}}},
		EndToEnd: &e2eResult{Partitions: 12, Ratio: 0.97,
			Herald:   e2eRun{Messages: 100_000, Completed: 100_000, PerSecond: 4522, Milestones: []milestone{{Percent: 90, Seconds: 20.1, PerSecond: 4600}}},
			Baseline: e2eRun{Messages: 100_000, Completed: 61_000, PerSecond: 4650, TimedOut: true, Seconds: 75},
			Goals:    []goal{{Description: "≥ 10,000 notifications/s"}, {Description: "≥ 1.0× baseline"}}},
		FanOut: &fanOutResult{Members: 10_000, Herald: []float64{0.99, 0.96, 1.22}, Baseline: []float64{0.05}, HeraldMedian: 0.99, BaselineMedian: 0.052, Ratio: 19, Goal: goal{Description: "< 2s for 10,000 notifications", Met: true}},
		Read: &readResult{Limit: 20, Clients: 64, Notifications: 1_000_000, Users: 10_000, Ratio: 1.13,
			Herald: readRun{PerSecond: 3182, P50Ms: 18, P99Ms: 64.6}, Baseline: readRun{PerSecond: 2814},
			Goal: goal{Description: "≥ 5,000 requests/s and p99 ≤ 20ms"},
			Note: "the 64 client goroutines run in this process, on the same 2 CPUs as the server and PostgreSQL",
			Plan: "Limit → Index Scan using inbox_notifications_page on inbox_notifications (a very long plan description that must wrap)"},
		WS: &wsResult{Connections: 10_000, Broadcasts: 10, RSSRatio: 1.61, RateRatio: 0.72,
			Herald: wsServerRun{ConnectSeconds: 3.4, RSSPerConnKiB: 43.5, DeliveriesPerSecond: 72687, P50Ms: 79.8, P99Ms: 152.7},
			Melody: wsServerRun{ConnectSeconds: 0.8, RSSPerConnKiB: 27.1, DeliveriesPerSecond: 104476, P50Ms: 55.3, P99Ms: 97},
			FanOut: wsFanOutRun{Messages: 20, Deliveries: 199_000, Missing: 1000, Seconds: 30.1, DeliveriesPerSecond: 6637, P50Ms: 18235, P99Ms: 29623},
			Goals:  []goal{{Description: "≤ 30 KiB RSS per connection"}, {Description: "fan-out p99 ≤ 3s", Met: true}}},
		WallSeconds: 112,
	}
	var b strings.Builder
	if err := printTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for i, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > reportWidth {
			t.Errorf("line %d is %d columns wide: %q", i+1, n, line)
		}
	}
	for _, want := range []string{"store append, 64 appenders", "7,867 events/s", "1.23×", "≥ 20,000 events/s: not met",
		"end to end, 100,000 messages, 12 partitions", "timed out", "fan-out", "19.00× the time", "read, GET", "3,182 requests/s", "must wrap",
		"WebSocket, 10,000 sessions", "43.5 KiB RSS per session", "broadcast deliveries/s 0.72×", "1,000 never arrived", "fan-out p99 ≤ 3s: met"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not say %q:\n%s", want, out)
		}
	}
}
