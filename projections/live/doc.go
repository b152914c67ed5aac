// Package live turns committed read-model changes into the deltas pushed to
// WebSocket subscribers. The inbox projection publishes here only after its
// transaction committed, so a client is never told of a change it could not
// then read (persist, then push).
package live
