// Package ws is Herald's WebSocket transport (melody): it authenticates a
// subscriber before the upgrade, joins it to its recipient room and to the
// rooms of its token's workspaces, and pushes the live deltas of package
// live to the sessions of the recipient's room, and ephemeral pushes to
// those of the room, user, session or tenant they name.
package ws
