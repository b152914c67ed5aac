// Package memory is an in-memory adapter of the event store, for tests of
// commands and HTTP handlers that do not test SQL, and for nothing else. It
// keeps every event in the process's memory until the Store is dropped: no
// persistence, no bound on size, no sharing between processes.
//
// It is a real adapter, not a stub: it passes the same conformance suite
// (package storetest) as the PostgreSQL and EventStoreDB adapters and keeps
// the PostgreSQL adapter's rules, so that a handler tested on it behaves the
// same in production:
//
//   - appends are checked as PostgreSQL checks them (UUID event ids, UTF-8
//     JSON data and metadata, a type, a stream name);
//   - a retried Append whose events are already in the stream, in order,
//     under the same ids, succeeds with Deduplicated set and writes nothing;
//     an id already used by another append is refused;
//   - AppendMulti writes all of its appends or none;
//   - event ids come back in lower case, empty metadata comes back as {},
//     and recorded times have microsecond precision, as PostgreSQL returns
//     them.
//
// Two things differ from PostgreSQL: an append that names one event id twice
// is refused with a plain error rather than an ErrWrongVersion, and nothing
// is ever ErrUnavailable.
//
// # Positions
//
// A Position is the event's place in the log counting from 1, in decimal
// ("1", "2", …); Start ("") is before the first. Only that form is
// accepted back (no sign, no leading zeros), so that equal positions are
// equal strings.
//
// # Concurrency
//
// Store is safe for concurrent use. One lock orders appends: an append is
// decided and written while holding it, so the log order is the order in
// which appends took the lock, and a reader never finds an event below one
// it has passed. Subscribers wait on a channel that every append closes, so
// they wake at once and never poll; handle runs without the lock held and
// may itself append to the Store.
//
// Events are copied on the way in and on the way out: callers may reuse or
// change the slices they pass and receive without touching the log.
package memory
