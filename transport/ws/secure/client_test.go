package secure

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// testClient is the client side of the protocol, written from
// docs/websocket.md and not from the package's code, so that a mistake the
// package shares with its own tests (a swapped salt and info, a wrong byte
// order) still shows. HKDF is spelled out from RFC 5869 for that reason.
type testClient struct {
	key *ecdh.PrivateKey
	// send seals client-to-server frames, recv opens server-to-client ones.
	send, recv cipher.AEAD
	sent       uint64
	received   uint64
	// sendKey and recvKey are kept for the test vector.
	sendKey, recvKey []byte
	secret           []byte
}

func newTestClient(t testing.TB, key *ecdh.PrivateKey) *testClient {
	t.Helper()
	if key == nil {
		var err error
		if key, err = ecdh.P256().GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	return &testClient{key: key}
}

// publicKey is the handshake's clientPublicKey.
func (c *testClient) publicKey() string {
	return base64.StdEncoding.EncodeToString(c.key.PublicKey().Bytes())
}

// finish reads the handshake_ack's serverPublicKey and sessionId.
func (c *testClient) finish(t testing.TB, serverPublicKey, sessionID string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(serverPublicKey)
	if err != nil {
		t.Fatalf("serverPublicKey: %v", err)
	}
	if len(raw) != 65 || raw[0] != 4 {
		t.Fatalf("serverPublicKey is %d bytes starting %#x, want an uncompressed point", len(raw), raw[0])
	}
	server, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.secret, err = c.key.ECDH(server); err != nil {
		t.Fatal(err)
	}
	c.recvKey = hkdfSHA256(c.secret, []byte(sessionID), "herald-ws-v1 server-to-client")
	c.sendKey = hkdfSHA256(c.secret, []byte(sessionID), "herald-ws-v1 client-to-server")
	c.recv = gcm(t, c.recvKey)
	c.send = gcm(t, c.sendKey)
}

// hkdfSHA256 is RFC 5869 for a 32-byte output: one expand block.
func hkdfSHA256(secret, salt []byte, info string) []byte {
	extract := hmac.New(sha256.New, salt)
	extract.Write(secret)
	expand := hmac.New(sha256.New, extract.Sum(nil))
	expand.Write([]byte(info))
	expand.Write([]byte{1})
	return expand.Sum(nil)
}

func gcm(t testing.TB, key []byte) cipher.AEAD {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// seal is a well-behaved client's next frame.
func (c *testClient) seal(t testing.TB, frame string) []byte {
	t.Helper()
	c.sent++
	return c.sealAt(t, [4]byte{}, c.sent, frame)
}

// sealAt seals with any nonce a misbehaving client might use.
func (c *testClient) sealAt(t testing.TB, prefix [4]byte, counter uint64, frame string) []byte {
	t.Helper()
	nonce := make([]byte, 12)
	copy(nonce, prefix[:])
	binary.BigEndian.PutUint64(nonce[4:], counter)
	return encJSON(t, nonce, c.send.Seal(nil, nonce, []byte(frame), nil))
}

// encJSON writes the members in the document's order, as a browser's
// JSON.stringify of {type, nonce, data} does; base64 needs no escaping.
func encJSON(t testing.TB, nonce, data []byte) []byte {
	t.Helper()
	return fmt.Appendf(nil, `{"type":"enc","nonce":"%s","data":"%s"}`,
		base64.StdEncoding.EncodeToString(nonce), base64.StdEncoding.EncodeToString(data))
}

// open reads a frame the server sent, refusing what a client must refuse.
func (c *testClient) open(frame []byte) (string, error) {
	var f struct{ Type, Nonce, Data string }
	if err := json.Unmarshal(frame, &f); err != nil {
		return "", err
	}
	if f.Type != "enc" {
		return "", fmt.Errorf("type %q", f.Type)
	}
	nonce, err := base64.StdEncoding.DecodeString(f.Nonce)
	if err != nil {
		return "", err
	}
	if len(nonce) != 12 || binary.BigEndian.Uint32(nonce) != 0 {
		return "", fmt.Errorf("nonce %x", nonce)
	}
	counter := binary.BigEndian.Uint64(nonce[4:])
	if counter <= c.received {
		return "", fmt.Errorf("counter %d after %d", counter, c.received)
	}
	data, err := base64.StdEncoding.DecodeString(f.Data)
	if err != nil {
		return "", err
	}
	plain, err := c.recv.Open(nil, nonce, data, nil)
	if err != nil {
		return "", errors.New("authentication failed")
	}
	c.received = counter
	return string(plain), nil
}
