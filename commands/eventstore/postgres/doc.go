// Package postgres is the PostgreSQL adapter of the event store, Herald's
// embedded default.
//
// # Gap-safe global order
//
// Positions come from an identity column, but identity values are taken in
// one order and committed in another: a reader that has passed position 10
// could later find a committed 9. So every row also records the id of the
// transaction that wrote it (tx, an xid8), and readers only take rows whose
// transaction is older than the oldest transaction still running
// (pg_snapshot_xmin of the reader's snapshot). Every such transaction has
// ended, so no row can appear below what a reader has seen. The log is
// ordered by (tx, position) and a Position is that pair. A reader that finds
// committed rows it may not take yet (their transaction is newer than a
// running one) polls again shortly instead of waiting for a notification.
//
// The cost of this design: one long write transaction anywhere in the cluster
// holds every reader back until it ends. Keep
// idle_in_transaction_session_timeout set on the server.
//
// # Waking readers
//
// After a commit, subscribers of the same Store wake at once, and those of
// other processes through a NOTIFY on channel herald_events. The NOTIFY is
// sent in a transaction of its own, one per burst of commits: a transaction
// that notifies holds a server-wide lock from its commit until the commit is
// flushed, so notifying inside append transactions would commit them one at
// a time. Subscribers also poll, so a lost notification or a dropped
// listening connection only delays them.
//
// Store is safe for concurrent use.
package postgres
