package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsroom/wsroom/natsbroker/internal/natstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTwoProcessesChat runs the demo binary twice on one nats-server:
// room messages and direct messages cross the nodes, and SIGTERM shuts
// each node down cleanly.
func TestTwoProcessesChat(t *testing.T) {
	srv := natstest.Start(t)
	bin := filepath.Join(t.TempDir(), "chat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	n1, n2 := runNode(t, bin, srv.URL), runNode(t, bin, srv.URL)
	alice := joinChat(t, n1, "alice", "lobby")
	bob := joinChat(t, n2, "bob", "lobby")
	lobby := "wsroom.room." + base64.RawURLEncoding.EncodeToString([]byte("lobby"))
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := srv.Subscribers(lobby); n != 2; n, _ = srv.Subscribers(lobby) {
		if time.Now().After(deadline) {
			t.Fatalf("%d nodes subscribe to %s, want 2", n, lobby)
		}
		time.Sleep(10 * time.Millisecond)
	}

	alice.say(`{"room":"lobby","data":{"text":"hi bob"},"id":"1"}`)
	bob.hear(`{"from":"alice","room":"lobby","data":{"text":"hi bob"}}`)
	bob.say(`{"to":["alice"],"data":{"text":"psst","dm":true},"id":"2"}`)
	alice.hear(`{"from":"bob","data":{"text":"psst","dm":true}}`)
}

// runNode starts the binary on a free port; Cleanup sends SIGTERM (by
// PID) and expects a clean exit.
func runNode(t *testing.T, bin, natsURL string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-addr", addr, "-nats", natsURL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("node %s exited: %v", addr, err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("node %s did not stop on SIGTERM", addr)
		}
	})
	// The node prints its URL once it listens.
	line, err := bufio.NewReader(out).ReadString('\n')
	go func() {
		io.Copy(io.Discard, out)
		exited <- cmd.Wait()
	}()
	if err != nil || !strings.Contains(line, "open http://") {
		t.Fatalf("node %s printed %q, %v", addr, line, err)
	}
	if resp, err := http.Get("http://" + addr + "/"); err != nil {
		t.Fatalf("node %s: %v", addr, err)
	} else {
		resp.Body.Close()
	}
	return addr
}

type chatter struct {
	t  *testing.T
	nc net.Conn
	rw io.ReadWriter
}

func joinChat(t *testing.T, addr, name, room string) *chatter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, "ws://"+addr+"/ws?name="+name+"&room="+room)
	if err != nil {
		t.Fatalf("%s joins %s on %s: %v", name, room, addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	var r io.Reader = nc
	if br != nil {
		r = br
	}
	return &chatter{t, nc, struct {
		io.Reader
		io.Writer
	}{r, nc}}
}

func (c *chatter) say(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.nc, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// hear fails unless the next message that is not a presence update is want.
func (c *chatter) hear(want string) {
	c.t.Helper()
	for {
		c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _, err := wsutil.ReadServerData(c.rw)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", want, err)
		}
		if strings.HasPrefix(string(b), `{"presence"`) {
			continue
		}
		if string(b) != want {
			c.t.Fatalf("got %s, want %s", b, want)
		}
		return
	}
}
