// Package http is Herald's REST transport: routes, the response and error
// envelopes, and the mapping of error codes to HTTP statuses.
package http
