// Package pgtest gives tests a fresh, migrated PostgreSQL database of their
// own, dropped when the test ends, so tests never share state and can run in
// parallel. The server is the one at HERALD_TEST_DATABASE_URL (default: the
// local server as user postgres).
package pgtest
