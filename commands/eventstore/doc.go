// Package eventstore is the port to Herald's source of truth: an append-only
// store of streams of events with a global, gap-safe order. Adapters live in
// sub-packages: postgres (the default), esdb (EventStoreDB and KurrentDB) and
// memory (for tests that do not test SQL). They keep the same promises
// because each runs the conformance suite of package storetest.
package eventstore
