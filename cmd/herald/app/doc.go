// Package app is Herald's one composition root: the typed configuration
// (Config, read from HERALD_ variables by Load and checked whole by
// Validate) and the assembly of every part from it (Build, Run, Close).
// herald serve, herald dev, the maintenance commands (through OpenStorage),
// the benchmark and the end-to-end tests all start Herald here, so that
// none of them can drift from what production runs.
//
// Nothing outside cmd imports this package: transports and their tests
// assemble what they test from small interfaces instead.
package app
