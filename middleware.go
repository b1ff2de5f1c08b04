package wsroom

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/httphead"
	"github.com/wsroom/wsroom/internal/wire"
)

// ServeHTTP upgrades a WebSocket handshake and serves the connection.
// Requests that are not WebSocket handshakes get 426 Upgrade Required;
// malformed handshakes get 400, 403, 405 or 426 with a one-line reason;
// after Shutdown has begun, 503. On Linux, when the hijacked connection is
// a plain *net.TCPConn, ServeHTTP returns once OnConnect has run and the
// connection is handed to the hub's readiness poller; otherwise it returns
// when the connection ends.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isWebSocket(r) {
		h.refused(r, RefusedNotWebSocket, http.StatusUpgradeRequired)
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		http.Error(w, "wsroom: this endpoint only speaks WebSocket (expected Upgrade: websocket)", http.StatusUpgradeRequired)
		return
	}
	h.serveWebSocket(w, r)
}

// Middleware returns a handler that serves WebSocket handshakes like
// ServeHTTP and passes every other request to next untouched; a request
// without "Upgrade: websocket" is never hijacked.
func (h *Hub) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isWebSocket(r) {
			next.ServeHTTP(w, r)
			return
		}
		h.serveWebSocket(w, r)
	})
}

// isWebSocket reports whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool { return hasToken(r.Header["Upgrade"], "websocket") }

// hasToken reports whether any of the comma-separated header values holds
// token, compared case-insensitively.
func hasToken(values []string, token string) bool {
	found := false
	for _, v := range values {
		httphead.ScanTokens([]byte(v), func(t []byte) bool {
			found = strings.EqualFold(string(t), token)
			return !found
		})
		if found {
			return true
		}
	}
	return false
}

// handshakeError is a refused handshake.
type handshakeError struct {
	status int
	reason string
	cause  Refusal
}

// checkHandshake validates what RFC 6455 §4.2.1 requires, before anything
// is hijacked, so a bad request gets a plain HTTP answer.
func checkHandshake(r *http.Request) *handshakeError {
	switch {
	case r.Method != http.MethodGet:
		return &handshakeError{http.StatusMethodNotAllowed, "WebSocket handshakes must use GET", RefusedBadRequest}
	case r.ProtoMajor != 1 || r.ProtoMinor < 1:
		return &handshakeError{http.StatusBadRequest, "WebSocket handshakes need HTTP/1.1", RefusedBadRequest}
	case r.Host == "":
		return &handshakeError{http.StatusBadRequest, "missing Host header", RefusedBadRequest}
	case !hasToken(r.Header["Connection"], "upgrade"):
		return &handshakeError{http.StatusBadRequest, "missing Connection: Upgrade header", RefusedBadRequest}
	}
	switch v := r.Header.Values("Sec-WebSocket-Version"); {
	case len(v) == 0 || v[0] == "":
		return &handshakeError{http.StatusBadRequest, "missing Sec-WebSocket-Version header", RefusedBadRequest}
	case len(v) > 1 || v[0] != "13":
		return &handshakeError{http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version (this server speaks 13)", RefusedBadRequest}
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return &handshakeError{http.StatusBadRequest, "need exactly one Sec-WebSocket-Key header", RefusedBadRequest}
	}
	if k, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(k) != 16 {
		return &handshakeError{http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64", RefusedBadRequest}
	}
	return nil
}

// reject answers a refused handshake and counts it.
func (h *Hub) reject(w http.ResponseWriter, r *http.Request, e *handshakeError) {
	h.refused(r, e.cause, e.status)
	if e.status == http.StatusUpgradeRequired {
		w.Header().Set("Sec-WebSocket-Version", "13")
		w.Header().Set("Upgrade", "websocket")
	}
	if e.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodGet)
	}
	http.Error(w, "wsroom: "+e.reason, e.status)
}

func (h *Hub) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if h.closed.Load() {
		h.reject(w, r, &handshakeError{http.StatusServiceUnavailable, "server is shutting down", RefusedShutdown})
		return
	}
	if e := checkHandshake(r); e != nil {
		h.reject(w, r, e)
		return
	}
	if !h.originAllowed(r) {
		h.reject(w, r, &handshakeError{http.StatusForbidden, "origin not allowed", RefusedOrigin})
		return
	}
	id, e := h.identify(r)
	if e != nil {
		h.reject(w, r, e)
		return
	}
	protocol, ok := selectProtocol(h.opts.Subprotocols, r.Header.Values("Sec-WebSocket-Protocol"))
	if !ok {
		h.reject(w, r, &handshakeError{http.StatusBadRequest, "malformed Sec-WebSocket-Protocol header", RefusedBadRequest})
		return
	}
	var resume *resumeSet
	if protocol == ProtocolV1 {
		if v := r.URL.Query().Get(ResumeParam); v != "" {
			var err error
			if resume, err = parseResume(v); err != nil {
				h.reject(w, r, &handshakeError{http.StatusBadRequest, err.Error(), RefusedBadRequest})
				return
			}
		}
	}
	extensions, deflate := h.negotiateCompression(r)
	nc, rw, err := h.hijack(w)
	if err != nil {
		h.refused(r, RefusedHijack, http.StatusInternalServerError)
		h.opts.Logger.Warn("wsroom: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// The server may have set deadlines on the connection (http.Server's
	// ReadTimeout, WriteTimeout); from now on the hub sets its own.
	nc.SetDeadline(time.Time{})
	// Keep only the bytes the client sent right after its handshake and
	// drop the hijacked bufio buffers: they are most of an idle
	// connection's memory.
	var pending []byte
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		pending = append([]byte(nil), b...)
	}
	rw = nil

	c := &Conn{hub: h, nc: nc, id: id, seq: h.seq.Add(1), protocol: protocol, deflate: deflate, reqCtx: r.Context()}
	c.setSendBuffer()
	c.opened = h.now()
	c.lastRead.Store(c.opened)
	c.lastPing = c.opened
	// The writer is held until OnConnect has run and the 101 is written
	// (see Conn.serve): the rooms OnConnect joins and whatever is sent to
	// them meanwhile reach the client right behind the 101, so a client
	// that sees "open" is already a member.
	accept := appendAccept(nil, r.Header.Get("Sec-WebSocket-Key"), protocol, extensions)
	c.writing = true
	c.writers.Add(1)
	if protocol == ProtocolV1 {
		c.proto = protoV1
		c.pushLocked(controlFrame(c.helloHeader()), false)
	}
	if cause, ok := h.register(c, resume); !ok {
		// Shutdown began while we upgraded, or the user has too many
		// connections: say so with a close code the page can see.
		h.refused(r, cause, http.StatusSwitchingProtocols)
		frame := shutdownFrame
		if cause == RefusedTooManyConns {
			frame = tooManyConnsFrame
		}
		nc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
		nc.Write(append(accept, frame...))
		nc.Close()
		return
	}
	h.stats.accepted.Add(1)
	h.observe(HandshakeEvent{Request: r, Conn: c, Status: http.StatusSwitchingProtocols})
	if h.pres.b != nil {
		h.presenceChanged("", c.id, -1, -1, nil) // online
	}
	if h.bk.b != nil {
		h.syncInterest(wire.TopicAll, wire.UserTopic(c.id))
	}
	c.serve(r, accept, pending)
}

// hijack takes the connection over from the HTTP server. Some frameworks'
// ResponseWriters implement Hijack with an unchecked type assertion on the
// writer they wrap (gin's does); behind a middleware whose writer is not
// an http.Hijacker that panics. The panic is turned into an error and a
// one-line 500 answer instead of a dropped connection and a stack trace in
// the server's log.
func (h *Hub) hijack(w http.ResponseWriter) (nc net.Conn, rw *bufio.ReadWriter, err error) {
	defer func() {
		if v := recover(); v != nil {
			nc, rw = nil, nil
			err = fmt.Errorf("hijacking the connection panicked: %v", v)
			http.Error(w, "wsroom: cannot take over the connection: the ResponseWriter does not support hijacking", http.StatusInternalServerError)
		}
	}()
	nc, rw, err = http.NewResponseController(w).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		http.Error(w, "wsroom: cannot take over the connection: the ResponseWriter is not an http.Hijacker and does not Unwrap to one", http.StatusInternalServerError)
	}
	return nc, rw, err
}

// acceptGUID is the GUID of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// appendAccept appends the 101 response to a handshake whose
// Sec-WebSocket-Key is key, with the selected subprotocol and the
// extensions answer (either may be "").
func appendAccept(dst []byte, key, protocol, extensions string) []byte {
	sum := sha1.Sum([]byte(key + acceptGUID))
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = base64.StdEncoding.AppendEncode(dst, sum[:])
	if protocol != "" {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "...)
		dst = append(dst, protocol...)
	}
	if extensions != "" {
		dst = append(dst, "\r\nSec-WebSocket-Extensions: "...)
		dst = append(dst, extensions...)
	}
	return append(dst, "\r\n\r\n"...)
}

// identify runs Options.Identify, turning errors and panics into answers.
func (h *Hub) identify(r *http.Request) (id string, e *handshakeError) {
	if h.opts.Identify != nil {
		defer func() {
			if v := recover(); v != nil {
				h.stats.panics.Add(1)
				h.opts.Logger.Error("wsroom: panic in Identify", "panic", v, "stack", string(debug.Stack()))
				id, e = "", &handshakeError{http.StatusInternalServerError, "internal error", RefusedIdentify}
			}
		}()
		var err error
		id, err = h.opts.Identify(r)
		if err != nil {
			var rej *RejectError
			if errors.As(err, &rej) {
				reason := rej.Reason
				if reason == "" {
					reason = http.StatusText(rej.status())
				}
				return "", &handshakeError{rej.status(), oneLine(reason), RefusedIdentify}
			}
			return "", &handshakeError{http.StatusUnauthorized, "unauthorized", RefusedIdentify}
		}
	}
	if id == "" {
		id = rand.Text()
	}
	return id, nil
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// originAllowed implements the origin policy described on Options.
func (h *Hub) originAllowed(r *http.Request) bool {
	if h.opts.InsecureSkipOriginCheck {
		return true
	}
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return true // not a browser
	}
	if len(origins) > 1 {
		return false
	}
	u, err := url.Parse(origins[0])
	if err != nil || u.Host == "" {
		return false // includes the opaque origin "null"
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(r.Host) {
		return true
	}
	for _, p := range h.opts.OriginPatterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}

// selectProtocol picks the first of the server's subprotocols that the
// client offered, or else ProtocolV1 if the client offered it. ok is false if an offer line is not a token list.
func selectProtocol(server, offered []string) (protocol string, ok bool) {
	var client []string
	for _, v := range offered {
		if !httphead.ScanTokens([]byte(v), func(t []byte) bool {
			client = append(client, string(t))
			return true
		}) {
			return "", false
		}
	}
	for _, p := range server {
		if slices.Contains(client, p) {
			return p, true
		}
	}
	if slices.Contains(client, ProtocolV1) {
		return ProtocolV1, true // the hub's own, after the app's
	}
	return "", true
}
