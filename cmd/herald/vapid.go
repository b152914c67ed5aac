package main

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
)

// vapidKeysCommand prints a new VAPID key pair (RFC 8292) as the settings
// the push channel reads: P-256, both halves base64url without padding, the
// public one uncompressed, as browsers take it for applicationServerKey.
// A pair identifies the server to push services for as long as browsers
// hold subscriptions made with it, so it is made once and kept.
func vapidKeysCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vapid-keys", "Prints a new VAPID key pair for the push channel, as HERALD_VAPID_ settings.", 0)
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.printHelp(stderr)
		return fmt.Errorf("vapid-keys takes no arguments, got %q", fs.Args())
	}
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate a P-256 key: %w", err)
	}
	enc := base64.RawURLEncoding
	_, err = fmt.Fprintf(stdout, "HERALD_VAPID_PUBLIC_KEY=%s\nHERALD_VAPID_PRIVATE_KEY=%s\n", enc.EncodeToString(key.PublicKey().Bytes()), enc.EncodeToString(key.Bytes()))
	return err
}
