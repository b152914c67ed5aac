package ws_test

import (
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
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/projections/live"
	"github.com/heraldhq/herald/transport/ws"
)

// delta is one of alice's deltas, numbered by its position.
func delta(n int) live.Delta {
	return live.Delta{Tenant: "org-1", RecipientID: "alice", Topic: live.TopicUnreadCount, Position: fmt.Sprint(n), Data: live.UnreadCount{Count: int64(n)}}
}

// dialSince connects alice with ?since=since (none when negative).
func (s *stack) dialSince(since int) *client {
	s.t.Helper()
	url := s.url
	if since >= 0 {
		url += fmt.Sprintf("?since=%d", since)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(url, bearer(s.token("alice", "org-1", time.Hour)))
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		s.t.Fatalf("dial %s: %v", url, err)
	}
	s.t.Cleanup(func() { _ = conn.Close() })
	return read(conn)
}

// seqs reads n frames and returns their seqs, and each resync_required's
// seq as its negative.
func (c *client) seqs(t *testing.T, n int) []int64 {
	t.Helper()
	var out []int64
	for range n {
		f := c.next(t, fmt.Sprintf("frame %d of %d", len(out)+1, n))
		if f.Type == "resync_required" {
			out = append(out, -f.Seq)
			continue
		}
		out = append(out, f.Seq)
	}
	return out
}

func equalSeqs(got []int64, want ...int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// A client resumes from the seq it last saw: every later delta, in order,
// then live ones; since=0 is everything retained; a since older than what
// is retained gets resync_required with the latest seq, and nothing older.
func TestStreamResumesFromSince(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	for i := 1; i <= 5; i++ {
		s.publish(delta(i))
	}
	c := s.dialSince(2)
	if got := c.seqs(t, 3); !equalSeqs(got, 3, 4, 5) {
		t.Fatalf("since=2: seqs %v, want 3, 4, 5", got)
	}
	s.awaitClients("org-1", "alice")
	s.publish(delta(6), delta(7))
	if got := c.seqs(t, 2); !equalSeqs(got, 6, 7) {
		t.Fatalf("live after the replay: seqs %v, want 6, 7", got)
	}
	if got := s.dialSince(0).seqs(t, 7); !equalSeqs(got, 1, 2, 3, 4, 5, 6, 7) {
		t.Fatalf("since=0: seqs %v, want 1 to 7", got)
	}

	// Up to seq 3 is pruned: a resume from 1 cannot be served.
	s.log.prune("org-1", "alice", 3)
	old := s.dialSince(1)
	if got := old.seqs(t, 1); !equalSeqs(got, -7) {
		t.Fatalf("since=1 after pruning: %v, want resync_required at 7", got)
	}
	if got := s.dialSince(3).seqs(t, 4); !equalSeqs(got, 4, 5, 6, 7) {
		t.Fatalf("since=3, the last pruned: %v, want 4 to 7", got)
	}
	// From the future (another database, say): resync too.
	if got := s.dialSince(99).seqs(t, 1); !equalSeqs(got, -7) {
		t.Fatalf("since=99: %v, want resync_required at 7", got)
	}
	s.publish(delta(8))
	if got := old.seqs(t, 1); !equalSeqs(got, 8) {
		t.Fatalf("after resync_required: %v, want the live 8", got)
	}

	// The resume message, as the first message, does the same.
	conn, resp, err := websocket.DefaultDialer.Dial(s.url, bearer(s.token("alice", "org-1", time.Hour)))
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"resume","since":6}`)); err != nil {
		t.Fatal(err)
	}
	if got := read(conn).seqs(t, 2); !equalSeqs(got, 7, 8) {
		t.Fatalf("resume message since 6: %v, want 7, 8", got)
	}

	// Without since, only what comes after the connection.
	fresh := s.dialSince(-1)
	s.awaitClients("org-1", "alice")
	time.Sleep(700 * time.Millisecond) // past the wait for a resume message
	s.publish(delta(9))
	if got := fresh.seqs(t, 1); !equalSeqs(got, 9) {
		t.Fatalf("without since: %v, want 9 only", got)
	}
}

// Deltas published while a client replays reach it once each, in order,
// with no gap: the replay and the live stream meet without overlap.
func TestStreamReplayMeetsLiveDeltas(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	const before, during = 3000, 500
	for i := 1; i <= before; i++ {
		s.publish(delta(i))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := before + 1; i <= before+during; i++ {
			s.publish(delta(i))
		}
	})
	c := s.dialSince(0)
	got := c.seqs(t, before+during)
	wg.Wait()
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("frame %d has seq %d: a duplicate, a gap or disorder (%v…)", i+1, seq, got[max(0, i-3):min(len(got), i+3)])
		}
	}
	c.expectSilence(t, "alice, after every delta once")
}

// clientKeys is the client side of the encryption, written from
// docs/websocket.md with the standard library.
type clientKeys struct {
	key        *ecdh.PrivateKey
	send, recv cipher.AEAD
	sent, got  uint64
}

func newClientKeys(t *testing.T) *clientKeys {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &clientKeys{key: k}
}

func (k *clientKeys) publicKey() string {
	return base64.StdEncoding.EncodeToString(k.key.PublicKey().Bytes())
}

func (k *clientKeys) finish(t *testing.T, serverKey, sessionID string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := k.key.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	aead := func(info string) cipher.AEAD {
		key, err := hkdf.Key(sha256.New, secret, []byte(sessionID), info, 32)
		if err != nil {
			t.Fatal(err)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	k.recv, k.send = aead("herald-ws-v1 server-to-client"), aead("herald-ws-v1 client-to-server")
}

type encFrame struct {
	Type  string `json:"type"`
	Nonce string `json:"nonce"`
	Data  string `json:"data"`
}

func nonce(n uint64) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint64(b[4:], n)
	return b
}

// seal encrypts a client frame with counter n (the next one when n is 0).
func (k *clientKeys) seal(t *testing.T, plain string, n uint64) []byte {
	t.Helper()
	if n == 0 {
		k.sent++
		n = k.sent
	}
	b, _ := json.Marshal(encFrame{Type: "enc", Nonce: base64.StdEncoding.EncodeToString(nonce(n)),
		Data: base64.StdEncoding.EncodeToString(k.send.Seal(nil, nonce(n), []byte(plain), nil))})
	return b
}

// open decrypts a server frame, checking its counter increases.
func (k *clientKeys) open(t *testing.T, raw []byte) []byte {
	t.Helper()
	var f encFrame
	if err := json.Unmarshal(raw, &f); err != nil || f.Type != "enc" {
		t.Fatalf("not an enc frame: %s", raw)
	}
	n, _ := base64.StdEncoding.DecodeString(f.Nonce)
	ct, _ := base64.StdEncoding.DecodeString(f.Data)
	if len(n) != 12 || binary.BigEndian.Uint64(n[4:]) <= k.got {
		t.Fatalf("nonce %x after counter %d", n, k.got)
	}
	k.got = binary.BigEndian.Uint64(n[4:])
	plain, err := k.recv.Open(nil, n, ct, nil)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	return plain
}

// closeCode reads conn until it closes and returns the close code.
func closeCode(t *testing.T, conn *websocket.Conn, within time.Duration) int {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

// The seed's first-message handshake: a client without a token sends its
// token and key; the answer is in clear, every later frame encrypted both
// ways; what is wrong is closed with its code.
func TestStreamHandshakeAndEncryption(t *testing.T) {
	t.Parallel()
	s := newStack(t, ws.Config{})
	tok := s.token("alice", "org-1", time.Hour)
	dial := func() *websocket.Conn {
		conn, resp, err := websocket.DefaultDialer.Dial(s.url, nil)
		if resp != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	send := func(conn *websocket.Conn, v string) {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	keys := newClientKeys(t)
	for name, c := range map[string]struct {
		first string
		want  int
	}{
		"not a handshake":  {`{"type":"resume","since":0}`, ws.CloseTokenExpired},
		"a bad token":      {`{"type":"handshake","token":"garbage","clientPublicKey":"` + keys.publicKey() + `"}`, ws.CloseTokenExpired},
		"no token":         {`{"type":"handshake","clientPublicKey":"` + keys.publicKey() + `"}`, ws.CloseTokenExpired},
		"a bad key":        {`{"type":"handshake","token":"` + tok + `","clientPublicKey":"AAAA"}`, ws.CloseBadKey},
		"a compressed key": {`{"type":"handshake","token":"` + tok + `","clientPublicKey":"` + base64.StdEncoding.EncodeToString(keys.key.PublicKey().Bytes()[:33]) + `"}`, ws.CloseBadKey},
	} {
		conn := dial()
		send(conn, c.first)
		if got := closeCode(t, conn, 10*time.Second); got != c.want {
			t.Errorf("%s: closed with %d, want %d", name, got, c.want)
		}
	}
	if got := closeCode(t, dial(), 10*time.Second); got != ws.CloseNoHandshake {
		t.Errorf("no handshake at all: closed with %d, want %d", got, ws.CloseNoHandshake)
	}

	s.publish(delta(1))
	conn := dial()
	send(conn, `{"type":"handshake","token":"`+tok+`","clientPublicKey":"`+keys.publicKey()+`"}`)
	var ack struct {
		Type, SessionID, ServerPublicKey, Encryption string
	}
	_, raw, err := conn.ReadMessage()
	if err != nil || json.Unmarshal(raw, &ack) != nil || ack.Type != "handshake_ack" || ack.Encryption != "ECDH-P256+HKDF-SHA256+AES-256-GCM" {
		t.Fatalf("handshake answer %s, %v", raw, err)
	}
	keys.finish(t, ack.ServerPublicKey, ack.SessionID)
	if err := conn.WriteMessage(websocket.TextMessage, keys.seal(t, `{"type":"resume","since":0}`, 0)); err != nil {
		t.Fatal(err)
	}
	s.publish(delta(2))
	for want := int64(1); want <= 2; want++ {
		_, raw, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var f frame
		if err := json.Unmarshal(keys.open(t, raw), &f); err != nil || f.Seq != want || f.Topic != live.TopicUnreadCount {
			t.Fatalf("decrypted frame %+v (%v), want seq %d", f, err, want)
		}
	}
	// A replayed counter ends the session with 4004.
	if err := conn.WriteMessage(websocket.TextMessage, keys.seal(t, `{"type":"resume","since":0}`, 1)); err != nil {
		t.Fatal(err)
	}
	if got := closeCode(t, conn, 10*time.Second); got != ws.CloseBadFrame {
		t.Errorf("replayed counter: closed with %d, want %d", got, ws.CloseBadFrame)
	}

	// A client authenticated before the upgrade turns encryption on with a
	// handshake that carries only its key.
	pre, resp, err := websocket.DefaultDialer.Dial(s.url, http.Header{"Authorization": {"Bearer " + tok}})
	if resp != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pre.Close() })
	k2 := newClientKeys(t)
	send(pre, `{"type":"handshake","clientPublicKey":"`+k2.publicKey()+`"}`)
	if _, raw, err = pre.ReadMessage(); err != nil || json.Unmarshal(raw, &ack) != nil || ack.Type != "handshake_ack" {
		t.Fatalf("pre-authenticated handshake answer %s, %v", raw, err)
	}
	k2.finish(t, ack.ServerPublicKey, ack.SessionID)
	s.awaitClients("org-1", "alice")
	time.Sleep(700 * time.Millisecond)
	s.publish(delta(3))
	if _, raw, err = pre.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	var f frame
	if err := json.Unmarshal(k2.open(t, raw), &f); err != nil || f.Seq != 3 {
		t.Fatalf("pre-authenticated encrypted frame %+v (%v), want seq 3", f, err)
	}
}
