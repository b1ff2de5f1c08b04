package redisbroker

import (
	"errors"
	"time"

	"github.com/wsroom/wsroom"
)

// What the broker publishes on a channel. Every message starts with a
// byte that says what follows, so that subscribers tell a room's
// positioned messages (PublishHistory) from plain ones (Publish) on the
// same channel, in the order Redis published them:
//
//	'p' payload                                  a plain message
//	'h' offset ' ' epoch '\n' payload            a message of a room's history
//
// offset is decimal, epoch at most maxEpochLen bytes without a space or a
// newline. The history script (history.go) writes the second form.
const (
	framePlain      = 'p'
	framePositioned = 'h'
)

// maxEpochLen bounds an epoch read from Redis.
const maxEpochLen = 64

var errFrame = errors.New("redisbroker: malformed message frame")

// parsePositioned splits a positioned frame (without its first byte)
// into its position and payload. The epoch is returned as bytes of b.
func parsePositioned(b []byte) (offset uint64, epoch, payload []byte, err error) {
	i := 0
	for ; i < len(b) && b[i] != ' '; i++ {
		c := b[i]
		if c < '0' || c > '9' || i >= 19 {
			return 0, nil, nil, errFrame
		}
		offset = offset*10 + uint64(c-'0')
	}
	if i == 0 || i == len(b) {
		return 0, nil, nil, errFrame
	}
	rest := b[i+1:]
	for j := 0; j < len(rest) && j <= maxEpochLen; j++ {
		switch rest[j] {
		case '\n':
			if j == 0 {
				return 0, nil, nil, errFrame
			}
			return offset, rest[:j], rest[j+1:], nil
		case ' ':
			return 0, nil, nil, errFrame
		}
	}
	return 0, nil, nil, errFrame
}

// epochs interns epoch strings, so that the messages of an epoch share
// one string. Each reading goroutine has its own.
type epochs map[string]string

func (e *epochs) get(b []byte) string {
	if s, ok := (*e)[string(b)]; ok {
		return s
	}
	if *e == nil || len(*e) >= 1024 {
		*e = make(map[string]string)
	}
	s := string(b)
	(*e)[s] = s
	return s
}

// deliverFrame hands a message received on topic to the Hub: a
// positioned one to StartHistory's function (to Start's, without the
// position, if StartHistory was not called), a plain one to Start's. A
// malformed frame is dropped, logged and counted in Stats.Dropped.
func (b *Broker) deliverFrame(topic string, frame []byte, ep *epochs) {
	if len(frame) > 0 {
		switch frame[0] {
		case framePlain:
			b.deliverMsg(topic, frame[1:])
			return
		case framePositioned:
			off, e, payload, err := parsePositioned(frame[1:])
			if err == nil {
				b.deliverPositioned(topic, wsroom.Position{Epoch: ep.get(e), Offset: off}, payload)
				return
			}
		}
	}
	b.dropped.Add(1)
	// Logged at most once a second: a node of an older version publishing
	// unframed messages would otherwise flood the log.
	if now := b.now(); now-b.lastFrameLog.Load() >= int64(time.Second) {
		b.lastFrameLog.Store(now)
		b.opts.Logger.Warn("redisbroker: dropped a message that is not the broker's frame (every node must run a redisbroker that frames its messages)", "topic", topic, "bytes", len(frame), "dropped", b.dropped.Load())
	}
}
