package wsroom

// The JavaScript client (client/wsroom.js), embedded so that a Hub's app
// can serve it from the same origin as its WebSocket endpoint.

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed client/wsroom.js
var clientJS []byte

// clientETag is the script's strong ETag: the start of its SHA-256.
var clientETag = func() string {
	sum := sha256.Sum256(clientJS)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// ClientScript returns a handler that serves the JavaScript client of the
// wsroom.v1 protocol (client/wsroom.js, an ES module; see docs/protocol.md
// and client/README.md) at whatever path it is mounted:
//
//	mux.Handle("GET /wsroom.js", wsroom.ClientScript())
//
// and, in the page, import { WsroomClient } from '/wsroom.js'. It answers
// GET and HEAD with Content-Type text/javascript, a strong ETag (304 to a
// matching If-None-Match) and Cache-Control "no-cache": browsers keep the
// file and revalidate it, so a new server version is picked up at once.
// Other methods get 405.
func ClientScript() http.Handler { return clientScript{} }

type clientScript struct{}

func (clientScript) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", clientETag)
	// ServeContent answers If-None-Match, HEAD and ranges.
	http.ServeContent(w, r, "wsroom.js", time.Time{}, bytes.NewReader(clientJS))
}
