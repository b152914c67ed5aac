package auth

import (
	"slices"
	"time"
)

// Principal is the authenticated caller behind a verified access token.
type Principal struct {
	// Subject is the token's "sub": the caller's stable identity at the IdP.
	Subject string
	// Tenant is the organizer the caller acts for, read from the configured
	// tenant claim.
	Tenant string
	// Username is the token's "preferred_username", the name people know
	// the caller by (a login, or seed 004's phone number). It labels what
	// the caller did and authorises nothing; empty when the claim is absent
	// or unusable (not a string, longer than MaxUsernameBytes, or holding
	// NUL).
	Username string
	// Permissions is sorted and free of duplicates.
	Permissions []string
	// Workspaces are the workspaces the caller belongs to, read from the
	// configured workspaces claim (seed 003): sorted, free of duplicates,
	// at most MaxWorkspaces, each a WorkspaceID. The caller's WebSocket
	// sessions join the room of each, and may join no other workspace's.
	Workspaces []string
	// ExpiresAt is the token's "exp"; long-lived connections (WebSocket) use
	// it to drop callers whose token has run out.
	ExpiresAt time.Time
}

// Has reports whether the principal holds permission.
func (p Principal) Has(permission string) bool {
	// A linear scan, not a binary search: a Principal may be built by hand
	// (tests of other packages, future sources) with unsorted permissions.
	return slices.Contains(p.Permissions, permission)
}
