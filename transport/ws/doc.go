// Package ws is Herald's WebSocket transport (melody): it authenticates a
// subscriber before the upgrade, joins it to its recipient room, and pushes
// the live deltas of package live to the sessions of that room.
package ws
