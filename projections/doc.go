// Package projections builds Herald's read model from the event log. A
// Runner follows the global log from a projection's checkpoint and applies
// each batch of events and the new checkpoint in one transaction, so the read
// model is always exactly the fold of the log up to its checkpoint, minus the
// events it parked (see parking.go).
package projections
