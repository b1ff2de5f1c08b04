package main

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/olahol/melody"
)

// melodyServer is olahol/melody with its default Config. Melody has no
// rooms and no user index: the whole instance is the room, and a send to
// users is BroadcastBinaryFilter, which tests every session.
type melodyServer struct {
	m       *melody.Melody
	dropped atomic.Int64
}

func newMelody() target {
	s := &melodyServer{m: melody.New()}
	s.m.HandleError(func(_ *melody.Session, err error) {
		if errors.Is(err, melody.ErrMessageBufferFull) {
			s.dropped.Add(1)
		}
	})
	return s
}

func (s *melodyServer) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = s.m.HandleRequestWithKeys(w, r, map[string]any{"u": r.URL.Query().Get("u")})
	})
}

func (s *melodyServer) broadcast(p []byte) { _ = s.m.BroadcastBinary(p) }

func (s *melodyServer) sendTo(p []byte, users []string) {
	set := make(map[string]bool, len(users))
	for _, u := range users {
		set[u] = true
	}
	_ = s.m.BroadcastBinaryFilter(p, func(q *melody.Session) bool {
		u, _ := q.Get("u")
		s, _ := u.(string)
		return set[s]
	})
}

func (s *melodyServer) conns() int { return s.m.Len() }

func (s *melodyServer) counters() (kicked, dropped, merged int64) {
	return 0, s.dropped.Load(), 0
}
