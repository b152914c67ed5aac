// Package migrations holds Herald's schema as numbered SQL files embedded in
// the binary, and applies them with goose under a PostgreSQL advisory lock so
// that several instances starting together migrate once.
package migrations
