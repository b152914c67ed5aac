// Package queries reads Herald's read model. Each query is a small struct
// with its SQL; none of them writes, and none reads the event store.
package queries
