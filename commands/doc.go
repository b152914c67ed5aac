// Package commands holds Herald's write side: every input becomes a command
// whose handler loads what it needs from the event store, decides with the
// domain, and appends events. Handlers never touch the read model.
package commands
