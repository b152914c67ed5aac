package secure

import (
	"errors"
	"testing"
)

// FuzzOpen feeds Open what a hostile client could send after the
// handshake. Whatever the bytes, Open must not panic, must refuse with
// ErrBadFrame and leave the counter where it was, and may accept only a
// frame the client really sealed.
func FuzzOpen(f *testing.F) {
	c := newTestClient(f, nil)
	s, serverPublicKey, err := Accept(c.publicKey(), testSessionID)
	if err != nil {
		f.Fatal(err)
	}
	c.finish(f, serverPublicKey, testSessionID)
	const sealed = `{"type":"resume","since":41}`
	// Frames sealed at counters 1 to 3: accepted once each, in order.
	for range 3 {
		f.Add(c.seal(f, sealed))
	}
	f.Add(c.sealAt(f, [4]byte{0, 0, 0, 1}, 9, sealed))
	f.Add([]byte(`{"type":"enc","nonce":"AAAAAAAAAAAAAAAB","data":""}`))
	f.Add([]byte(`{"type":"enc","nonce":"AAAAAAAAAAAAAAAB","data":"AAAA","x":1}`))
	f.Add([]byte(`{"type":"enc"} {}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		before := s.received
		plain, err := s.Open(frame)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("Open(%q) = %v, want an ErrBadFrame", frame, err)
			}
			if s.received != before {
				t.Fatalf("a refused frame moved the counter from %d to %d", before, s.received)
			}
			return
		}
		if string(plain) != sealed {
			t.Fatalf("Open(%q) accepted %q, which the client never sealed", frame, plain)
		}
		if s.received <= before {
			t.Fatalf("an accepted frame left the counter at %d (was %d)", s.received, before)
		}
	})
}

// FuzzAccept feeds Accept any clientPublicKey: it must not panic, and
// must refuse anything but a 65-byte P-256 point in padded standard base64
// with an error wrapping ErrBadKey.
func FuzzAccept(f *testing.F) {
	f.Add(newTestClient(f, nil).publicKey())
	f.Add("")
	f.Add("BA==")
	f.Add("BEe1GqGPPsLmdRYy3fsO3v4ibkzfhVXYmJ9hiyWoZfKGK4JCL7BcS7OGvnBRmYAMVmBBCgAXOWn0j1Pre9m3Nis")
	f.Fuzz(func(t *testing.T, key string) {
		s, serverPublicKey, err := Accept(key, testSessionID)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("Accept(%q) = %v, want an ErrBadKey", key, err)
			}
			return
		}
		if s == nil || serverPublicKey == "" {
			t.Fatalf("Accept(%q) succeeded without a session or a key", key)
		}
		raw, ok := decode(key)
		if !ok || len(raw) != pointSize || raw[0] != 4 {
			t.Fatalf("Accept took %q, which is not a 65-byte uncompressed point in padded base64", key)
		}
	})
}
