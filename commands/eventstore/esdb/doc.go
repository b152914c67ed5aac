// Package esdb is the EventStoreDB / KurrentDB adapter of the event store,
// on EventStore-Client-Go v4.
//
// # Positions
//
// A Position is an event's place in $all written as "<commit>:<prepare>", both
// decimal (for example "40960:40960"); Start ("") is the start of $all.
// Positions order by commit position, then prepare position, as $all does.
// Only positions of events are meaningful to the server: a made-up pair may
// be refused as an invalid position.
//
// # Herald's log inside $all
//
// $all holds every stream of the database, the server's own ($-prefixed)
// included. The Store's log is the part of $all whose stream names start with
// one of Options.StreamPrefixes, without system ($-typed) events: ReadAll,
// Head and Subscribe see nothing else. Subscriptions filter on the server;
// reads filter here, because client v4.2.0 sends no filter on reads.
//
// $all is gap-safe as the port requires: one writer assigns log positions as
// it commits, every append is one implicit transaction, and readers only see
// what the server has indexed, so nothing ever appears below a position a
// reader has passed. Reads must go to the leader (the connection string's
// default) to include every event committed before the call.
//
// # Retried appends
//
// EventStoreDB accepts a retried append (same event ids at the same expected
// version) without writing it again, but its answer does not say so. So an
// append with NoStream or an exact version first reads the stream where the
// events would go: when the same ids are already there, in order, it returns
// their place with Deduplicated set and writes nothing. That costs one stream
// read per such append. Two identical appends racing each other both find
// nothing where their events would go; the server writes the events once but
// answers both as written, so neither reports Deduplicated. An append with Any relies on the
// server's own id check, which is best effort, and always reports
// Deduplicated false. Event ids are unique within a stream only: the server
// does not refuse an id already used in another stream.
//
// # Server requirements
//
// EventStoreDB 22.6 or later, or any KurrentDB: older servers send no log
// position with stream reads, and the Store refuses such events. An append
// of 1 MiB or more (the conformance suite makes one) needs the server's max
// append size raised above its 1 MiB default.
//
// Store is safe for concurrent use.
package esdb
