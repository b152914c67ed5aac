// Package storetest is the conformance suite of the event store port: every
// adapter runs it, so every adapter keeps the same promises.
package storetest
