package wsroom

// Control across nodes: disconnect a user everywhere, take a user out of a
// room everywhere, with the outcome reported by the nodes concerned.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/wsroom/wsroom/internal/wire"
)

// ErrIncomplete is returned (wrapped) by Disconnect and RemoveFromRoom
// when some node that has the user did not report before the context
// ended: the count returned covers the nodes that did.
var ErrIncomplete = errors.New("wsroom: not every node reported")

// Disconnect closes every connection of the user with code and reason
// (see Conn.Close), on every node, and returns how many it closed.
//
// With Options.Presence, Disconnect asks the nodes that have the user
// (the presence store knows which) and waits, at most until ctx ends, for
// each to report what it closed; an error wrapping ErrIncomplete names the
// nodes that did not. With a Broker but without Presence, the other nodes
// are told but do not report: the count covers this node. Without a
// Broker it covers this Hub, which is everything.
func (h *Hub) Disconnect(ctx context.Context, userID string, code StatusCode, reason string) (int, error) {
	if code == 0 {
		code = StatusNormalClosure
	}
	if err := checkClose(code, reason); err != nil {
		return 0, err
	}
	return h.control(ctx, controlMsg{op: opDisconnect, user: userID, code: code, reason: reason})
}

// RemoveFromRoom makes every connection of the user leave the room called
// room, on every node, and returns how many left. The outcome is reported
// as for Disconnect.
func (h *Hub) RemoveFromRoom(ctx context.Context, room, userID string) (int, error) {
	return h.control(ctx, controlMsg{op: opRemove, user: userID, room: room})
}

// Control operations.
const (
	opDisconnect = 1 + iota
	opRemove
	opReply
)

// controlMsg is a control request, or a node's reply to one.
type controlMsg struct {
	op     byte
	id     uint64 // the request's, echoed by the replies
	code   StatusCode
	count  uint32 // a reply: connections acted on
	user   string
	room   string
	reason string
}

// appendControl encodes cm as the data of a wire.Control message.
func appendControl(dst []byte, cm *controlMsg) []byte {
	dst = append(dst, cm.op)
	dst = binary.BigEndian.AppendUint64(dst, cm.id)
	dst = binary.BigEndian.AppendUint16(dst, uint16(cm.code))
	dst = binary.BigEndian.AppendUint32(dst, cm.count)
	for _, s := range []string{cm.user, cm.room, cm.reason} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

var errBadControl = errors.New("wsroom: malformed control message")

// parseControl decodes what appendControl encodes.
func parseControl(p []byte) (cm controlMsg, err error) {
	if len(p) < 15 {
		return cm, errBadControl
	}
	cm.op, cm.id = p[0], binary.BigEndian.Uint64(p[1:9])
	cm.code = StatusCode(binary.BigEndian.Uint16(p[9:11]))
	cm.count = binary.BigEndian.Uint32(p[11:15])
	p = p[15:]
	for _, s := range []*string{&cm.user, &cm.room, &cm.reason} {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return cm, errBadControl
		}
		*s, p = string(p[k:k+int(n)]), p[k+int(n):]
	}
	if cm.op < opDisconnect || cm.op > opReply || len(p) != 0 {
		return cm, errBadControl
	}
	return cm, nil
}

// controlState is the Hub's side of control requests in flight.
type controlState struct {
	next    atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]*controlReq
}

// controlReq is a request waiting for the nodes' reports.
type controlReq struct {
	mu     sync.Mutex
	expect map[string]bool // node IDs yet to report
	count  int
	done   chan struct{} // closed when expect is empty
}

// nodeTopic is the topic a node receives replies on.
func nodeTopic(node wire.NodeID) string { return "node:" + hex.EncodeToString(node[:]) }

// control acts on this node's connections, then asks the other nodes and
// gathers their reports.
func (h *Hub) control(ctx context.Context, cm controlMsg) (int, error) {
	if h.closed.Load() {
		return 0, ErrHubClosed
	}
	local := h.act(cm)
	if h.bk.b == nil {
		return local, nil
	}
	var req *controlReq
	if pb := h.pres.b; pb != nil {
		nodes, err := pb.UserNodes(ctx, cm.user)
		if err != nil {
			return local, fmt.Errorf("%w: %w", ErrIncomplete, err)
		}
		delete(nodes, h.nodeName())
		if len(nodes) > 0 {
			req = &controlReq{expect: make(map[string]bool, len(nodes)), done: make(chan struct{})}
			for n := range nodes {
				req.expect[n] = true
			}
			cm.id = h.ctl.next.Add(1)
			h.ctl.mu.Lock()
			if h.ctl.pending == nil {
				h.ctl.pending = make(map[uint64]*controlReq)
			}
			h.ctl.pending[cm.id] = req
			h.ctl.mu.Unlock()
			defer func() {
				h.ctl.mu.Lock()
				delete(h.ctl.pending, cm.id)
				h.ctl.mu.Unlock()
			}()
		}
	}
	payload := wire.Append(nil, &wire.Message{Type: wire.Control, Node: h.node, Data: appendControl(nil, &cm)})
	if err := h.bk.b.Publish(payload, wire.UserTopic(cm.user))(); err != nil {
		err = fmt.Errorf("%w: %w", ErrNotPublished, err)
		h.brokerError("publish", wire.UserTopic(cm.user), err)
		return local, err
	}
	if req == nil {
		return local, nil
	}
	select {
	case <-req.done:
		req.mu.Lock()
		defer req.mu.Unlock()
		return local + req.count, nil
	case <-ctx.Done():
		req.mu.Lock()
		defer req.mu.Unlock()
		missing := make([]string, 0, len(req.expect))
		for n := range req.expect {
			missing = append(missing, n)
		}
		return local + req.count, fmt.Errorf("%w: %d nodes did not report (%v): %w", ErrIncomplete, len(missing), missing, ctx.Err())
	}
}

// act carries out a control request on this node's connections and
// returns how many it acted on.
func (h *Hub) act(cm controlMsg) int {
	conns := h.UserConns(cm.user)
	n := 0
	for _, c := range conns {
		switch cm.op {
		case opDisconnect:
			if c.startClose(&CloseError{Code: cm.code, Reason: cm.reason}, false) {
				n++
			}
		case opRemove:
			if c.InRoom(cm.room) {
				c.Leave(cm.room)
				n++
			}
		}
	}
	return n
}

// receiveControl handles a control message from another node: a request
// on a user topic, or a reply on this node's topic.
func (h *Hub) receiveControl(from wire.NodeID, data []byte) error {
	cm, err := parseControl(data)
	if err != nil {
		return err
	}
	if cm.op == opReply {
		h.ctl.mu.Lock()
		req := h.ctl.pending[cm.id]
		h.ctl.mu.Unlock()
		if req != nil {
			req.mu.Lock()
			node := hex.EncodeToString(from[:])
			if req.expect[node] {
				delete(req.expect, node)
				req.count += int(cm.count)
				if len(req.expect) == 0 {
					close(req.done)
				}
			}
			req.mu.Unlock()
		}
		return nil
	}
	n := h.act(cm)
	if cm.id == 0 {
		return nil // nobody waits for a report
	}
	reply := controlMsg{op: opReply, id: cm.id, count: uint32(n)}
	payload := wire.Append(nil, &wire.Message{Type: wire.Control, Node: h.node, Data: appendControl(nil, &reply)})
	// Not on the broker's delivering goroutine, which must not wait for a
	// publish. The requester counts a reply that does not arrive.
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.bk.b.Publish(payload, nodeTopic(from))()
	}()
	return nil
}
