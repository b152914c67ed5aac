package main

import (
	"encoding/json"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, ms(i))
	}
	cases := []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{ms(7)}, 99, ms(7)},
		{hundred, 50, ms(50)},
		{hundred, 99, ms(99)},
		{hundred, 100, ms(100)},
		{[]time.Duration{ms(1), ms(2), ms(3)}, 50, ms(2)},
		{[]time.Duration{ms(1), ms(2), ms(3)}, 99, ms(3)},
	}
	for _, c := range cases {
		if got := percentile(c.sorted, c.p); got != c.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(c.sorted), c.p, got, c.want)
		}
	}
}

func TestPlanShape(t *testing.T) {
	const explained = `[{"Plan": {"Node Type": "Limit", "Plans": [
		{"Node Type": "Incremental Sort", "Plans": [
			{"Node Type": "Index Scan", "Index Name": "inbox_notifications_page", "Relation Name": "inbox_notifications"}]}]}}]`
	var plan []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(explained), &plan); err != nil {
		t.Fatal(err)
	}
	want := "Limit → Incremental Sort → Index Scan using inbox_notifications_page on inbox_notifications"
	if got := plan[0].Plan.shape(); got != want {
		t.Errorf("shape = %q, want %q", got, want)
	}
	join := planNode{NodeType: "Nested Loop", Plans: []planNode{{NodeType: "Seq Scan", Relation: "a"}, {NodeType: "Seq Scan", Relation: "b"}}}
	if got, want := join.shape(), "Nested Loop → (Seq Scan on a; Seq Scan on b)"; got != want {
		t.Errorf("shape = %q, want %q", got, want)
	}
}

func TestPageQueryForUser(t *testing.T) {
	q := pageQuery{sql: "SELECT", args: []any{"org", "user-0", 21}, userArg: 1}
	got := q.forUser("user-9")
	if got[1] != "user-9" || q.args[1] != "user-0" || got[0] != "org" || got[2] != 21 {
		t.Errorf("forUser = %v (query args now %v)", got, q.args)
	}
}
