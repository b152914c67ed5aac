// Package secure is the payload encryption of Herald's WebSocket stream
// (docs/websocket.md, DESIGN §8, seed 000): an ECDH P-256 key agreement with
// the client's key, one HKDF-SHA256 key per direction salted with the
// session id, and AES-256-GCM with counter nonces.
//
// The hub calls Accept when a client's handshake carries a clientPublicKey,
// sends the returned server key in its clear handshake_ack, and from then on
// passes every frame it sends through Session.Seal and every frame it
// receives through Session.Open. The package knows nothing of the WebSocket,
// of tokens or of frame types other than "enc": it turns frame JSON into enc
// frame JSON and back.
//
// Things the caller must get right, because the package cannot:
//
//   - Seal numbers frames in the order it is called, and the client refuses a
//     frame whose counter does not increase. Seal and queue a frame under the
//     same lock (or in the one goroutine that writes the connection), or two
//     pushes racing each other reach the client out of order and the session
//     is lost.
//   - Open returns bytes that are authentic, nothing more: they are not known
//     to be UTF-8 or JSON. Check them as a clear frame is checked.
//   - After Open fails, close the session (4004). The session's state is left
//     as it was, but a client that sends a frame the server cannot open has
//     lost its keys or is not the client.
//   - Keep the *Session that Accept returns and never copy the value: a copy
//     counts on its own and would seal two frames with one nonce, which gives
//     the key away.
//   - The handshake_ack goes out in clear, and every frame after it, in both
//     directions, is sealed; a frame queued in clear before the ack must be
//     sent before it.
package secure
