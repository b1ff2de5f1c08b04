package main

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// coderServer follows coder/websocket's internal/examples/chat: a
// subscriber per connection with a 16-message channel, written by the
// handler goroutine (5 s write timeout per message) while CloseRead's
// goroutine answers control frames; publish holds the subscribers' mutex
// and kicks (closes with 1008 "too slow") a subscriber whose channel is
// full. The example's publish rate limiter is left out; a users map is
// added for SendTo.
type coderServer struct {
	mu     sync.Mutex
	subs   map[*coderSub]struct{}
	users  userIndex[*coderSub]
	kicked atomic.Int64
}

type coderSub struct {
	msgs      chan []byte
	closeSlow func()
	user      string
}

// coderBuffer is the example's subscriberMessageBuffer.
const coderBuffer = 16

func newCoder() target {
	return &coderServer{subs: map[*coderSub]struct{}{}, users: userIndex[*coderSub]{}}
}

func (s *coderServer) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		sub := &coderSub{msgs: make(chan []byte, coderBuffer), user: r.URL.Query().Get("u")}
		sub.closeSlow = func() {
			_ = c.Close(websocket.StatusPolicyViolation, "connection too slow to keep up with messages")
		}
		s.add(sub)
		defer s.remove(sub)
		ctx := c.CloseRead(context.Background())
		for {
			select {
			case msg := <-sub.msgs:
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := c.Write(wctx, websocket.MessageBinary, msg)
				cancel()
				if err != nil {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	})
}

func (s *coderServer) add(sub *coderSub) {
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.users.add(sub.user, sub)
	s.mu.Unlock()
}

func (s *coderServer) remove(sub *coderSub) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.users.remove(sub.user, sub)
	s.mu.Unlock()
}

func (s *coderServer) deliver(sub *coderSub, p []byte) {
	select {
	case sub.msgs <- p:
	default:
		s.kicked.Add(1)
		go sub.closeSlow()
	}
}

func (s *coderServer) broadcast(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		s.deliver(sub, p)
	}
}

func (s *coderServer) sendTo(p []byte, users []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		for sub := range s.users[u] {
			s.deliver(sub, p)
		}
	}
}

func (s *coderServer) conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

func (s *coderServer) counters() (kicked, dropped, merged int64) { return s.kicked.Load(), 0, 0 }
