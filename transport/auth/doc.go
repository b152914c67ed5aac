// Package auth verifies JWT access tokens against a JWKS and turns them into a
// Principal.
package auth
