package main

import (
	"strings"
	"testing"
)

func TestEventStoreSelection(t *testing.T) {
	for value, esdb := range map[string]bool{
		"postgres":                        false,
		"esdb://127.0.0.1:2113?tls=false": true,
		"kurrentdb://db:2113":             true,
		"esdb+discover://cluster:2113":    true,
	} {
		c := config{EventStore: value, LogLevel: "info", LogFormat: "text"}
		if err := c.validate(); err != nil {
			t.Fatalf("%s refused: %v", value, err)
		}
		if c.usesESDB() != esdb {
			t.Fatalf("%s: usesESDB %v", value, c.usesESDB())
		}
	}
	c := config{EventStore: "mysql://x", LogLevel: "info", LogFormat: "text"}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "HERALD_EVENT_STORE") {
		t.Fatalf("unknown event store: %v", err)
	}
}

func TestServeNamesWhatIsMissing(t *testing.T) {
	c := config{EventStore: "postgres", LogLevel: "info", LogFormat: "text", KafkaBrokers: "k:9092"}
	err := c.validateServe()
	if err == nil || !strings.Contains(err.Error(), "HERALD_JWKS_URL") || strings.Contains(err.Error(), "HERALD_KAFKA_BROKERS") {
		t.Fatalf("got %v", err)
	}
}
