package wsroom

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/wsroom/wsroom/internal/frame"
)

// Errors returned by sends and connection methods.
var (
	// ErrClosed is returned when sending to or closing a connection that is
	// already closing. It is net.ErrClosed, so errors.Is(err, net.ErrClosed)
	// holds too.
	ErrClosed = net.ErrClosed
	// ErrHubClosed is returned by sends and joins after Shutdown has begun.
	ErrHubClosed = errors.New("wsroom: hub is shut down")
	// ErrSlowConsumer is returned by Conn.Send when the send overflowed the
	// connection's queue; the connection is then closed with 1008. It is
	// also the Err of that connection's CloseError.
	ErrSlowConsumer = errors.New("wsroom: slow consumer")
	// ErrPongTimeout is the Err of the CloseError of a connection dropped
	// because nothing was read from it for PongTimeout.
	ErrPongTimeout = errors.New("wsroom: pong timeout")
	// ErrInvalidUTF8 is returned when sending a text message that is not
	// valid UTF-8.
	ErrInvalidUTF8 = errors.New("wsroom: text message is not valid UTF-8")
	// ErrMessageType is returned when sending a Message whose Type is
	// neither TextMessage nor BinaryMessage.
	ErrMessageType = errors.New("wsroom: message type must be TextMessage or BinaryMessage")
)

// StatusCode is a WebSocket close code (RFC 6455 §7.4).
type StatusCode int

// Close codes used by wsroom. Applications may also use 3000–4999.
const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003
	StatusNoStatusRcvd    StatusCode = 1005 // never sent: the peer's close frame had no code
	StatusAbnormalClosure StatusCode = 1006 // never sent: the TCP connection ended without a close frame
	StatusInvalidPayload  StatusCode = 1007
	StatusPolicyViolation StatusCode = 1008
	StatusMessageTooBig   StatusCode = 1009
	StatusInternalError   StatusCode = 1011
)

// CloseError describes how a connection ended. OnClose always receives one.
type CloseError struct {
	Code   StatusCode // the code in the close frame, or 1005/1006
	Reason string     // the close frame's reason, if any
	Remote bool       // the peer sent the first close frame (or dropped the connection)
	Err    error      // the cause when wsroom closed it (ErrSlowConsumer, ErrPongTimeout), or what cut the close handshake short (a timeout, an I/O error); nil for a clean close
}

func (e *CloseError) Error() string {
	who := "server"
	if e.Remote {
		who = "peer"
	}
	s := fmt.Sprintf("wsroom: connection closed by %s with %d", who, e.Code)
	if e.Reason != "" {
		s += " " + fmt.Sprintf("%q", e.Reason)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause, if any.
func (e *CloseError) Unwrap() error { return e.Err }

// CloseStatus returns the close code carried by err (a *CloseError
// anywhere in its chain), or -1 if there is none.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// validSendCode reports whether code may be sent in a close frame.
func validSendCode(code StatusCode) bool {
	return code >= 0 && code <= 0xffff && code != StatusNoStatusRcvd && code != StatusAbnormalClosure &&
		frame.ValidCloseCode(uint16(code))
}

// RejectError rejects a handshake from Identify with an HTTP status.
type RejectError struct {
	Status int    // HTTP status; 0 means 401
	Reason string // one line sent as the response body
}

// Reject returns an error that makes Identify refuse the handshake with the
// given HTTP status and one-line reason, e.g. Reject(403, "banned").
func Reject(status int, reason string) error { return &RejectError{Status: status, Reason: reason} }

func (e *RejectError) Error() string {
	return fmt.Sprintf("wsroom: handshake rejected: %d %s", e.status(), e.Reason)
}

func (e *RejectError) status() int {
	if e.Status < 400 || e.Status > 599 {
		return http.StatusUnauthorized
	}
	return e.Status
}
