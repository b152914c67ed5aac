package secure

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// Encryption names the scheme in the handshake_ack's "encryption" member, so
// that a client can refuse a scheme it does not implement.
const Encryption = "ECDH-P256+HKDF-SHA256+AES-256-GCM"

// ErrBadKey means that the client's public key is not the standard base64 of
// an uncompressed P-256 point (65 bytes, 0x04 then X and Y, on the curve).
// The hub closes the connection with 4002.
var ErrBadKey = errors.New("client public key is not an uncompressed P-256 point in base64")

// ErrBadFrame means that a frame the client sent is not an enc frame, fails
// authentication, or does not carry a counter greater than the last one
// accepted (a replay or a reordering). The hub closes the session with 4004.
var ErrBadFrame = errors.New("encrypted frame refused")

// errExhausted is returned by Seal once the counter reached its largest
// value: the next frame would reuse a nonce, which would expose the key.
var errExhausted = errors.New("frame counter exhausted; the session must end")

// The HKDF info strings name the direction, so that the two keys differ and
// a frame cannot be reflected back to its sender.
const (
	infoServerToClient = "herald-ws-v1 server-to-client"
	infoClientToServer = "herald-ws-v1 client-to-server"
)

const (
	keySize    = 32 // AES-256
	nonceSize  = 12 // the standard GCM nonce
	prefixSize = nonceSize - 8
	pointSize  = 65 // 0x04 || X || Y
	frameType  = "enc"
)

// Session is one encrypted session's keys and counters.
//
// Seal and Open may run at the same time as each other (they share no
// state: the connection's reader opens, its writer seals), but neither may
// run at the same time as itself. The hub serialises each session's frames
// in each direction. A Session must not be copied (see the package comment).
type Session struct {
	seal, open cipher.AEAD
	// sent and received are the counters of the last frame sealed and of
	// the last frame accepted: 0 before the first, which is 1 each way.
	sent, received uint64
}

// Accept is the server side of the handshake. clientPublicKey is the
// handshake's clientPublicKey member; sessionID is the sessionId the server
// sends in its handshake_ack (the HKDF salt), so both must be the exact
// strings on the wire. It draws a fresh server key, which never leaves the
// returned Session, and returns the base64 public key the handshake_ack
// carries. An unusable client key yields an error wrapping ErrBadKey.
func Accept(clientPublicKey, sessionID string) (s *Session, serverPublicKey string, err error) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate server key: %w", err)
	}
	return accept(clientPublicKey, sessionID, key)
}

// accept is Accept with the server's key given, so that the test vector can
// fix it.
func accept(clientPublicKey, sessionID string, server *ecdh.PrivateKey) (*Session, string, error) {
	raw, ok := decode(clientPublicKey)
	if !ok {
		return nil, "", fmt.Errorf("%w: not standard padded base64", ErrBadKey)
	}
	if len(raw) != pointSize {
		// Named apart from the curve check: a compressed (33-byte) or bare
		// X||Y (64-byte) key is the likely mistake of a client.
		return nil, "", fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(raw), pointSize)
	}
	client, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	secret, err := server.ECDH(client)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	seal, err := newAEAD(secret, sessionID, infoServerToClient)
	if err != nil {
		return nil, "", err
	}
	open, err := newAEAD(secret, sessionID, infoClientToServer)
	if err != nil {
		return nil, "", err
	}
	return &Session{seal: seal, open: open},
		base64.StdEncoding.EncodeToString(server.PublicKey().Bytes()), nil
}

func newAEAD(secret []byte, sessionID, info string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, secret, []byte(sessionID), info, keySize)
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", info, err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%s cipher: %w", info, err)
	}
	return cipher.NewGCM(block)
}

// envelope is the enc frame on the wire. The member order is the one the
// protocol document shows.
type envelope struct {
	Type  string `json:"type"`
	Nonce string `json:"nonce"`
	Data  string `json:"data"`
}

// Seal encrypts the JSON of a frame the server sends and returns the JSON of
// its enc frame. Each call takes the next counter, so frames must reach the
// connection in the order they were sealed (see the package comment). Seal
// fails only after 2^64-1 frames, when the counter would wrap and a nonce
// would repeat: the session must then end, and the client reconnect.
func (s *Session) Seal(frame []byte) ([]byte, error) {
	if s.sent == math.MaxUint64 {
		return nil, errExhausted
	}
	s.sent++
	var nonce [nonceSize]byte
	binary.BigEndian.PutUint64(nonce[prefixSize:], s.sent)
	return json.Marshal(envelope{
		Type:  frameType,
		Nonce: base64.StdEncoding.EncodeToString(nonce[:]),
		Data:  base64.StdEncoding.EncodeToString(s.seal.Seal(nil, nonce[:], frame, nil)),
	})
}

// Open decrypts the JSON of an enc frame the client sent and returns the
// JSON of the frame inside, which is authentic but not yet checked to be
// JSON. Any refusal wraps ErrBadFrame and leaves the session as it was, so
// that a forged frame cannot move the counter.
func (s *Session) Open(encFrame []byte) ([]byte, error) {
	nonce, ciphertext, err := parse(encFrame)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(nonce[:prefixSize], make([]byte, prefixSize)) {
		return nil, fmt.Errorf("%w: nonce does not start with %d zero bytes", ErrBadFrame, prefixSize)
	}
	counter := binary.BigEndian.Uint64(nonce[prefixSize:])
	if counter <= s.received {
		return nil, fmt.Errorf("%w: counter %d after %d", ErrBadFrame, counter, s.received)
	}
	plain, err := s.open.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrBadFrame)
	}
	s.received = counter
	return plain, nil
}

// parse reads an enc frame strictly: one JSON object with no members but
// the three, of type "enc", with a 12-byte nonce, nonce and data in
// canonical padded base64. Data too short to hold the tag fails in Open.
func parse(frame []byte) (nonce, ciphertext []byte, err error) {
	var f envelope
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("%w: not an enc frame: %w", ErrBadFrame, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%w: data after the frame", ErrBadFrame)
	}
	if f.Type != frameType {
		return nil, nil, fmt.Errorf("%w: type %q, want %q", ErrBadFrame, f.Type, frameType)
	}
	nonce, ok := decode(f.Nonce)
	if !ok || len(nonce) != nonceSize {
		return nil, nil, fmt.Errorf("%w: nonce is not %d bytes in base64", ErrBadFrame, nonceSize)
	}
	ciphertext, ok = decode(f.Data)
	if !ok {
		return nil, nil, fmt.Errorf("%w: data is not base64", ErrBadFrame)
	}
	return nonce, ciphertext, nil
}

// decode accepts only the one encoding Seal and the protocol produce:
// StdEncoding tolerates line breaks and non-zero padding bits, which would
// give one frame many spellings.
func decode(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}
