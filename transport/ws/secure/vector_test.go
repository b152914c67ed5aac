package secure

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// The test vector of docs/websocket.md ("Test vector"). These constants are
// the one copy the tests check the code against; TestVectorInDoc keeps the
// document equal to them.
const (
	vecClientPrivateKey  = "32322325432c18996cb74dd489254e84ea4e4074cfe57e879d52fe75dce5f251"
	vecClientPublicKey   = "BEe1GqGPPsLmdRYy3fsO3v4ibkzfhVXYmJ9hiyWoZfKGK4JCL7BcS7OGvnBRmYAMVmBBCgAXOWn0j1Pre9m3Nis="
	vecServerPrivateKey  = "979efdc62e44cece7c3b2f52bb6bcefe5a525ba3094b52251507eccc49c17bda"
	vecServerPublicKey   = "BAvpryB4gz3veG7MW3pihPb4MStV0KumatFhvdKt+D+aFyvMsDIsgB3Womaiqv6CHmesqaS9Y6CYq2LGCnIDOCY="
	vecSessionID         = "67991090-c085-4ba7-a331-5c2d34370991"
	vecSharedSecret      = "3e6c057e8b282a6bb6d2d361778d742dbd728a92dedadd4208d724949f709deb"
	vecKeyServerToClient = "8b2d4a4f64aef97a0ebdf8d11d34cc0a493031bb61e1111fb4fab984ca50f4c7"
	vecKeyClientToServer = "69b477e352198070ff3c88c58a017d9ffe6a842487403afe962cca45907b6d66"
	vecNonceHex          = "000000000000000000000001"
	vecNonceBase64       = "AAAAAAAAAAAAAAAB"
	vecServerFrame       = `{"type":"event","topic":"observation/signal/notification/unread_count","room":"signal/notification/alice","seq":1,"position":"42","data":{"count":1}}`
	vecServerEncFrame    = `{"type":"enc","nonce":"AAAAAAAAAAAAAAAB","data":"8hqBZFmC0YtwOemR8ogFcsYQpnQ5UboQrOQUuBCOX006kzQC42t/PRxF1m4n50f7Nt5HcgzdxlEE6T5mBUISPZ6X/NiyX41Ndkz1Gfvm7jXSZ4/euEC8AXSkyyRWpd1at1u87yeoVEZlw7TuxHdOluM24hMDl0GsRo6u/Y9u76+SfZ9+UxW3Ymuiq1tenZ1KTBN5NkRWQFnIvNF/A8nnHGkSatTl"}`
	vecClientFrame       = `{"type":"resume","since":0}`
	vecClientEncFrame    = `{"type":"enc","nonce":"AAAAAAAAAAAAAAAB","data":"exz8U+YEjoJZmeYCZBPn2HatmWhX4Tw19PDlcabvTU2LUEJ0nNFDDWDdKg=="}`
)

// vector is the vector as the document lists it, in its order and with its
// names.
var vector = [][2]string{
	{"client_private_key", vecClientPrivateKey},
	{"client_public_key", vecClientPublicKey},
	{"server_private_key", vecServerPrivateKey},
	{"server_public_key", vecServerPublicKey},
	{"session_id", vecSessionID},
	{"shared_secret", vecSharedSecret},
	{"key_server_to_client", vecKeyServerToClient},
	{"key_client_to_server", vecKeyClientToServer},
	{"nonce_hex", vecNonceHex},
	{"nonce", vecNonceBase64},
	{"server_frame", vecServerFrame},
	{"server_enc_frame", vecServerEncFrame},
	{"client_frame", vecClientFrame},
	{"client_enc_frame", vecClientEncFrame},
}

func privateKey(t *testing.T, scalar string) *ecdh.PrivateKey {
	t.Helper()
	b, err := hex.DecodeString(scalar)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdh.P256().NewPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVectorServer(t *testing.T) {
	s, serverPublicKey, err := accept(vecClientPublicKey, vecSessionID, privateKey(t, vecServerPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if serverPublicKey != vecServerPublicKey {
		t.Errorf("server public key\n got %s\nwant %s", serverPublicKey, vecServerPublicKey)
	}
	sealed, err := s.Seal([]byte(vecServerFrame))
	if err != nil {
		t.Fatal(err)
	}
	if string(sealed) != vecServerEncFrame {
		t.Errorf("first server frame\n got %s\nwant %s", sealed, vecServerEncFrame)
	}
	opened, err := s.Open([]byte(vecClientEncFrame))
	if err != nil {
		t.Fatal(err)
	}
	if string(opened) != vecClientFrame {
		t.Errorf("first client frame\n got %s\nwant %s", opened, vecClientFrame)
	}
}

// TestVectorClient derives the vector's intermediate values on the client's
// side; the package keeps its keys to itself, and its frames above can only
// match when its keys equal these.
func TestVectorClient(t *testing.T) {
	c := newTestClient(t, privateKey(t, vecClientPrivateKey))
	if got := c.publicKey(); got != vecClientPublicKey {
		t.Errorf("client public key\n got %s\nwant %s", got, vecClientPublicKey)
	}
	c.finish(t, vecServerPublicKey, vecSessionID)
	for _, v := range []struct{ name, got, want string }{
		{"shared secret", hex.EncodeToString(c.secret), vecSharedSecret},
		{"server-to-client key", hex.EncodeToString(c.recvKey), vecKeyServerToClient},
		{"client-to-server key", hex.EncodeToString(c.sendKey), vecKeyClientToServer},
	} {
		if v.got != v.want {
			t.Errorf("%s\n got %s\nwant %s", v.name, v.got, v.want)
		}
	}
	nonce, err := hex.DecodeString(vecNonceHex)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(nonce); got != vecNonceBase64 {
		t.Errorf("nonce in base64 = %s, want %s", got, vecNonceBase64)
	}
	if got := c.seal(t, vecClientFrame); string(got) != vecClientEncFrame {
		t.Errorf("first client frame\n got %s\nwant %s", got, vecClientEncFrame)
	}
	plain, err := c.open([]byte(vecServerEncFrame))
	if err != nil {
		t.Fatal(err)
	}
	if plain != vecServerFrame {
		t.Errorf("first server frame\n got %s\nwant %s", plain, vecServerFrame)
	}
}

// TestVectorInDoc keeps the document's vector equal to the one the tests
// check: the first fenced block after the "## Test vector" heading, one
// "name: value" a line.
func TestVectorInDoc(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/websocket.md")
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]string
	state := "before"
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() && state != "done" {
		line := sc.Text()
		switch {
		case state == "before" && line == "## Test vector":
			state = "section"
		case state == "section" && strings.HasPrefix(line, "```"):
			state = "block"
		case state == "section" && strings.HasPrefix(line, "## "):
			t.Fatal("the Test vector section has no fenced block")
		case state == "block" && strings.HasPrefix(line, "```"):
			state = "done"
		case state == "block":
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("vector line %q is not name: value", line)
			}
			got = append(got, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if state != "done" {
		t.Fatalf("no complete Test vector block in docs/websocket.md (stopped %s)", state)
	}
	if len(got) != len(vector) {
		t.Errorf("the document lists %d values, the tests %d", len(got), len(vector))
	}
	for i := range min(len(got), len(vector)) {
		if got[i] != vector[i] {
			t.Errorf("line %d of the vector\n doc: %s: %s\nwant: %s: %s", i+1, got[i][0], got[i][1], vector[i][0], vector[i][1])
		}
	}
}
