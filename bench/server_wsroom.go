package main

import (
	"net/http"
	"os"
	"strconv"

	"github.com/wsroom/wsroom"
)

// wsroomServer is wsroom with default Options: every connection joins
// room "r" under the user ID from the "u" query parameter, and, with
// roomsEnv=N, N-1 more: room "quiet", then rooms of its own.
type wsroomServer struct {
	hub  *wsroom.Hub
	room *wsroom.Room
}

func newWsroom() target { return newWsroomWith(wsroom.CompressionOptions{}) }

// newWsroomDeflate is wsroom with permessage-deflate enabled and its
// defaults (threshold 512 bytes, level 1).
func newWsroomDeflate() target {
	return newWsroomWith(wsroom.CompressionOptions{Enabled: true})
}

func newWsroomWith(z wsroom.CompressionOptions) target {
	s := &wsroomServer{}
	rooms, _ := strconv.Atoi(os.Getenv(roomsEnv))
	s.hub = wsroom.New(wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("u"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			if err := c.Join("r"); err != nil {
				return err
			}
			for i := 1; i < rooms; i++ {
				name := "quiet"
				if i > 1 {
					name = "own-" + strconv.Itoa(i) + "-" + c.ConnID()
				}
				if err := c.Join(name); err != nil {
					return err
				}
			}
			return nil
		},
		Compression: z,
	})
	s.room = s.hub.Room("r")
	return s
}

func (s *wsroomServer) handler() http.Handler { return s.hub }

func (s *wsroomServer) broadcast(p []byte) { _ = s.room.Broadcast(wsroom.Binary(p)) }

func (s *wsroomServer) broadcastText(p []byte) {
	_ = s.room.Broadcast(wsroom.Message{Type: wsroom.TextMessage, Data: p})
}

func (s *wsroomServer) sendTo(p []byte, users []string) {
	_ = s.hub.SendTo(wsroom.Binary(p), users...)
}

func (s *wsroomServer) conns() int { return s.room.Len() }

func (s *wsroomServer) counters() (kicked, dropped, merged int64) {
	return int64(s.hub.Stats().SlowConsumerCloses), 0, 0
}
