package secure

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"sync"
	"testing"
)

const testSessionID = "0b9f2c4e-5d6a-4f3b-8e1c-7a2d9b6c5e4f"

// pair is a session and its client after the handshake.
func pair(t *testing.T) (*Session, *testClient) {
	t.Helper()
	c := newTestClient(t, nil)
	s, serverPublicKey, err := Accept(c.publicKey(), testSessionID)
	if err != nil {
		t.Fatal(err)
	}
	c.finish(t, serverPublicKey, testSessionID)
	return s, c
}

func TestRoundTrip(t *testing.T) {
	s, c := pair(t)
	large := `{"type":"event","data":"` + strings.Repeat("x", 64<<10) + `"}`
	for i, frame := range []string{vecServerFrame, "", large, `{"type":"event"}`, vecServerFrame} {
		sealed, err := s.Seal([]byte(frame))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.open(sealed)
		if err != nil {
			t.Fatalf("server frame %d: client refused it: %v", i+1, err)
		}
		if got != frame {
			t.Fatalf("server frame %d: client read %.80q, want %.80q", i+1, got, frame)
		}

		opened, err := s.Open(c.seal(t, frame))
		if err != nil {
			t.Fatalf("client frame %d: %v", i+1, err)
		}
		if string(opened) != frame {
			t.Fatalf("client frame %d: server read %.80q, want %.80q", i+1, opened, frame)
		}
	}
}

// TestSealNumbersFrames checks the wire form of the server's frames: the
// counter starts at 1 and grows by one, behind four zero bytes.
func TestSealNumbersFrames(t *testing.T) {
	s, _ := pair(t)
	for _, want := range []string{"AAAAAAAAAAAAAAAB", "AAAAAAAAAAAAAAAC", "AAAAAAAAAAAAAAAD"} {
		sealed, err := s.Seal([]byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]string
		if err := json.Unmarshal(sealed, &f); err != nil {
			t.Fatal(err)
		}
		if len(f) != 3 || f["type"] != "enc" || f["nonce"] != want {
			t.Fatalf("sealed frame %s, want type enc and nonce %s", sealed, want)
		}
	}
}

// reencode rewrites one member of an enc frame.
func reencode(t *testing.T, frame []byte, member string, change func(string) string) []byte {
	t.Helper()
	var f map[string]string
	if err := json.Unmarshal(frame, &f); err != nil {
		t.Fatal(err)
	}
	f[member] = change(f[member])
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flip changes one byte of a base64 value; at < 0 counts from the end.
func flip(at int) func(string) string {
	return func(s string) string {
		b, _ := base64.StdEncoding.DecodeString(s)
		if at < 0 {
			at += len(b)
		}
		b[at] ^= 0x01
		return base64.StdEncoding.EncodeToString(b)
	}
}

func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		// frame returns the frame to refuse, after sending what it needs.
		frame func(t *testing.T, s *Session, c *testClient) []byte
	}{
		{"tampered ciphertext", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "data", flip(0))
		}},
		{"tampered tag", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "data", flip(-1))
		}},
		{"tampered counter", func(t *testing.T, _ *Session, c *testClient) []byte {
			// 1 becomes 257: a counter that may follow, but not this frame's.
			return reencode(t, c.seal(t, vecClientFrame), "nonce", flip(-2))
		}},
		{"truncated tag", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "data", func(s string) string {
				b, _ := base64.StdEncoding.DecodeString(s)
				return base64.StdEncoding.EncodeToString(b[:len(b)-1])
			})
		}},
		{"data shorter than a tag", func(t *testing.T, _ *Session, _ *testClient) []byte {
			return encJSON(t, []byte{11: 1}, make([]byte, 15))
		}},
		{"empty data", func(t *testing.T, _ *Session, _ *testClient) []byte {
			return encJSON(t, []byte{11: 1}, nil)
		}},
		{"replayed counter", func(t *testing.T, s *Session, c *testClient) []byte {
			first := c.seal(t, vecClientFrame)
			if _, err := s.Open(first); err != nil {
				t.Fatal(err)
			}
			return first
		}},
		{"same counter, new frame", func(t *testing.T, s *Session, c *testClient) []byte {
			if _, err := s.Open(c.seal(t, vecClientFrame)); err != nil {
				t.Fatal(err)
			}
			return c.sealAt(t, [4]byte{}, c.sent, `{"type":"other"}`)
		}},
		{"counter 0", func(t *testing.T, _ *Session, c *testClient) []byte {
			return c.sealAt(t, [4]byte{}, 0, vecClientFrame)
		}},
		{"nonce prefix not zero", func(t *testing.T, _ *Session, c *testClient) []byte {
			// Sealed with that very nonce, so only the prefix rule refuses it.
			return c.sealAt(t, [4]byte{0, 0, 0, 1}, 1, vecClientFrame)
		}},
		{"server frame sent back (wrong direction's key)", func(t *testing.T, s *Session, _ *testClient) []byte {
			sealed, err := s.Seal([]byte(vecClientFrame))
			if err != nil {
				t.Fatal(err)
			}
			return sealed
		}},
		{"another client's key", func(t *testing.T, _ *Session, _ *testClient) []byte {
			_, other := pair(t)
			return other.seal(t, vecClientFrame)
		}},
		{"same client key, another session", func(t *testing.T, _ *Session, c *testClient) []byte {
			_, serverPublicKey, err := Accept(c.publicKey(), testSessionID)
			if err != nil {
				t.Fatal(err)
			}
			other := newTestClient(t, c.key)
			other.finish(t, serverPublicKey, testSessionID)
			return other.seal(t, vecClientFrame)
		}},
		{"nonce not base64", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "nonce", func(string) string { return "AAAAAAAAAAAAAA!B" })
		}},
		{"data not base64", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "data", func(s string) string { return "*" + s[1:] })
		}},
		{"data in URL-safe base64", func(t *testing.T, _ *Session, _ *testClient) []byte {
			return []byte(`{"type":"enc","nonce":"AAAAAAAAAAAAAAAB","data":"-_-_-_-_-_-_-_-_-_-_-_-_"}`)
		}},
		{"data without padding", func(t *testing.T, _ *Session, c *testClient) []byte {
			// 23 bytes: the padded form ends in one "=".
			return reencode(t, c.seal(t, `{"a":1}`), "data", func(s string) string { return strings.TrimRight(s, "=") })
		}},
		{"data with a line break", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "data", func(s string) string { return s[:8] + "\n" + s[8:] })
		}},
		{"data with padding bits set", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, `{"a":1}`), "data", paddingBitSet)
		}},
		{"nonce of 8 bytes", func(t *testing.T, _ *Session, _ *testClient) []byte {
			return encJSON(t, []byte{7: 1}, make([]byte, 32))
		}},
		{"nonce of 16 bytes", func(t *testing.T, _ *Session, _ *testClient) []byte {
			return encJSON(t, []byte{15: 1}, make([]byte, 32))
		}},
		{"type event", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "type", func(string) string { return "event" })
		}},
		{"type missing", func(t *testing.T, _ *Session, _ *testClient) []byte {
			return []byte(`{"nonce":"AAAAAAAAAAAAAAAB","data":"AAAAAAAAAAAAAAAAAAAAAA=="}`)
		}},
		{"clear frame", func(*testing.T, *Session, *testClient) []byte {
			return []byte(vecClientFrame)
		}},
		{"unknown member", func(t *testing.T, _ *Session, c *testClient) []byte {
			return reencode(t, c.seal(t, vecClientFrame), "tag", func(string) string { return "AAAA" })
		}},
		{"data after the frame", func(t *testing.T, _ *Session, c *testClient) []byte {
			return append(c.seal(t, vecClientFrame), []byte(`{}`)...)
		}},
		{"not JSON", func(*testing.T, *Session, *testClient) []byte { return []byte("enc AAAA") }},
		{"array", func(*testing.T, *Session, *testClient) []byte { return []byte(`[]`) }},
		{"null", func(*testing.T, *Session, *testClient) []byte { return []byte(`null`) }},
		{"empty", func(*testing.T, *Session, *testClient) []byte { return nil }},
		{"nonce not a string", func(*testing.T, *Session, *testClient) []byte {
			return []byte(`{"type":"enc","nonce":1,"data":"AAAAAAAAAAAAAAAAAAAAAA=="}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := pair(t)
			frame := tc.frame(t, s, c)
			received := s.received
			plain, err := s.Open(frame)
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("Open(%s) = %q, %v; want ErrBadFrame", frame, plain, err)
			}
			if s.received != received {
				t.Fatalf("a refused frame moved the counter from %d to %d", received, s.received)
			}
			// A refused frame costs nothing: the next one is read.
			if _, err := s.Open(c.seal(t, vecClientFrame)); err != nil {
				t.Fatalf("the frame after a refused one: %v", err)
			}
		})
	}
}

// paddingBitSet spells the same bytes with a padding bit set, which a
// lenient decoder reads as the canonical form.
func paddingBitSet(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.IndexByte(s, '=') - 1
	return s[:i] + string(alphabet[strings.IndexByte(alphabet, s[i])+1]) + s[i+1:]
}

func TestPaddingBitSetIsTheSameBytes(t *testing.T) {
	canonical := base64.StdEncoding.EncodeToString([]byte("23 bytes of ciphertext."))
	lenient, err := base64.StdEncoding.DecodeString(paddingBitSet(canonical))
	if err != nil || string(lenient) != "23 bytes of ciphertext." {
		t.Fatalf("the helper does not make a second spelling: %q, %v", lenient, err)
	}
}

func TestOpenRefusesReordering(t *testing.T) {
	s, c := pair(t)
	second := c.sealAt(t, [4]byte{}, 2, `{"n":2}`)
	third := c.sealAt(t, [4]byte{}, 3, `{"n":3}`)
	if _, err := s.Open(third); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(second); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("frame 2 after frame 3: %v, want ErrBadFrame", err)
	}
	if _, err := s.Open(third); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("frame 3 again: %v, want ErrBadFrame", err)
	}
	if _, err := s.Open(c.sealAt(t, [4]byte{}, 4, `{"n":4}`)); err != nil {
		t.Fatalf("frame 4: %v", err)
	}
}

func TestOpenAllowsGaps(t *testing.T) {
	s, c := pair(t)
	for _, counter := range []uint64{2, 5, 6, 1 << 40, math.MaxUint64} {
		if _, err := s.Open(c.sealAt(t, [4]byte{}, counter, `{}`)); err != nil {
			t.Fatalf("counter %d: %v", counter, err)
		}
	}
	// Nothing can follow the largest counter.
	if _, err := s.Open(c.sealAt(t, [4]byte{}, math.MaxUint64, `{}`)); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("counter 2^64-1 twice: %v, want ErrBadFrame", err)
	}
}

func TestSealDoesNotWrap(t *testing.T) {
	s, c := pair(t)
	s.sent = math.MaxUint64 - 1
	sealed, err := s.Seal([]byte(`{"last":true}`))
	if err != nil {
		t.Fatalf("the frame with counter 2^64-1: %v", err)
	}
	if !bytes.Contains(sealed, []byte(`"nonce":"AAAAAP//////////"`)) {
		t.Fatalf("the last frame %s does not carry counter 2^64-1", sealed)
	}
	if got, err := c.open(sealed); err != nil || got != `{"last":true}` {
		t.Fatalf("client read the last frame as %q, %v", got, err)
	}
	for range 2 {
		if sealed, err := s.Seal([]byte(`{}`)); !errors.Is(err, errExhausted) {
			t.Fatalf("Seal after counter 2^64-1 = %s, %v; want errExhausted", sealed, err)
		}
	}
	if s.sent != math.MaxUint64 {
		t.Fatalf("counter moved to %d", s.sent)
	}
}

func TestAcceptRefusesKeys(t *testing.T) {
	point, err := base64.StdEncoding.DecodeString(vecClientPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	x, y := point[1:33], point[33:]
	compressed := append([]byte{2 + y[31]&1}, x...)
	offCurve := bytes.Clone(point)
	offCurve[64] ^= 1
	hybrid := append([]byte{6 + y[31]&1}, point[1:]...)
	// x = p, the field's order: the coordinate is out of range.
	p, _ := new(big.Int).SetString("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff", 16)
	outOfRange := append(append([]byte{4}, p.FillBytes(make([]byte, 32))...), y...)
	std := base64.StdEncoding.EncodeToString
	for _, tc := range []struct{ name, key, says string }{
		{"empty", "", "0 bytes"},
		{"not base64", "BEe1GqGPPsLmdRYy3fsO3v4ibkzfhVXYmJ9hiyWoZfKGK4JCL7BcS7OGvnBRmYAMVmBBCgAXOWn0j1Pre9m3Ni!=", ""},
		{"without padding", strings.TrimRight(vecClientPublicKey, "="), ""},
		{"URL-safe base64", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 65)), ""},
		{"with a line break", vecClientPublicKey[:40] + "\r\n" + vecClientPublicKey[40:], ""},
		{"padding bits set", paddingBitSet(vecClientPublicKey), ""},
		{"not on the curve", std(offCurve), ""},
		{"compressed, 33 bytes", std(compressed), "33 bytes, want 65"},
		{"X and Y without the 0x04, 64 bytes", std(point[1:]), "64 bytes, want 65"},
		{"hybrid form", std(hybrid), ""},
		{"coordinate out of range", std(outOfRange), ""},
		{"point at infinity", std([]byte{0}), ""},
		{"65 zero bytes", std(make([]byte, 65)), ""},
		{"66 bytes", std(append(bytes.Clone(point), 0)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, serverPublicKey, err := Accept(tc.key, testSessionID)
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("Accept(%q) = %v, %q, %v; want ErrBadKey", tc.key, s, serverPublicKey, err)
			}
			// The size is named: it is the usual mistake of a client.
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Accept error %q does not say %q", err, tc.says)
			}
		})
	}
	if _, err := ecdh.P256().NewPublicKey(point); err != nil {
		t.Fatalf("the cases above were made from a key that is itself refused: %v", err)
	}
}

// TestAcceptDrawsAServerKeyPerSession: a client that reuses its key and a
// server that reused a session id would still get new keys, so counters
// restarting at 1 never repeat a nonce under one key.
func TestAcceptDrawsAServerKeyPerSession(t *testing.T) {
	c := newTestClient(t, nil)
	a, keyA, err := Accept(c.publicKey(), testSessionID)
	if err != nil {
		t.Fatal(err)
	}
	b, keyB, err := Accept(c.publicKey(), testSessionID)
	if err != nil {
		t.Fatal(err)
	}
	if keyA == keyB {
		t.Fatal("two sessions got the same server key")
	}
	sealedA, err := a.Seal([]byte(vecServerFrame))
	if err != nil {
		t.Fatal(err)
	}
	sealedB, err := b.Seal([]byte(vecServerFrame))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sealedA, sealedB) {
		t.Fatal("two sessions sealed the same frame alike")
	}
}

// TestSealAndOpenAtOnce holds the Session's promise that its reader and its
// writer need no lock between them (run with -race).
func TestSealAndOpenAtOnce(t *testing.T) {
	s, c := pair(t)
	const n = 200
	in := make([][]byte, n)
	for i := range in {
		in[i] = c.seal(t, vecClientFrame)
	}
	out := make([][]byte, n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range out {
			out[i], errs[i] = s.Seal([]byte(vecServerFrame))
		}
	})
	wg.Go(func() {
		for i := range in {
			_, errs[n+i] = s.Open(in[i])
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if _, err := c.open(out[i]); err != nil {
			t.Fatalf("server frame %d: %v", i+1, err)
		}
	}
}
