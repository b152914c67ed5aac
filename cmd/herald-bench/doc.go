// Command herald-bench measures Herald on the machine it runs on: event store
// appends against plain PostgreSQL inserts, and the Kafka-to-inbox pipeline
// against a minimal consumer, and inbox reads through the REST API against a
// minimal handler, and WebSocket sessions against a bare melody server.
// Every figure comes with a baseline measured in
// the same run, because an absolute number from a shared or unknown machine
// says little on its own. It reports; it asserts nothing.
//
// Run it with `go tool task bench`; `go run ./cmd/herald-bench -h` lists the
// flags. It creates its own databases (herald_bench_<random>) and drops them
// when it ends, also when it fails. For the WebSocket part it starts itself
// again as the server (the hidden ws-server command), so that the server's
// memory is measured apart from the clients'.
package main
