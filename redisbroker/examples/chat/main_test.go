package main

import (
	"context"
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
	"github.com/wsroom/wsroom/redisbroker/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startNode runs the demo binary on a free port; Cleanup stops it with
// SIGTERM (by PID) and waits for it.
func startNode(t *testing.T, bin, redisAddr string) string {
	t.Helper()
	addr, _ := startProcess(t, bin, redisAddr)
	return addr
}

// startProcess runs the demo binary on a free port with extra flags and
// returns its address and a function that kills it with SIGKILL. Cleanup
// stops it with SIGTERM (by PID), unless it was killed, and waits for it.
func startProcess(t *testing.T, bin, redisAddr string, flags ...string) (addr string, kill func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-redis", redisAddr}, flags...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killed := false
	kill = func() {
		killed = true
		cmd.Process.Kill()
		<-done
	}
	t.Cleanup(func() {
		if killed {
			return
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node %s exited: %v", addr, err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("node %s did not stop on SIGTERM", addr)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return addr, kill
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type chatClient struct {
	t  *testing.T
	nc net.Conn
	r  io.Reader
}

func join(t *testing.T, addr, name, room string) *chatClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, "ws://"+addr+"/ws?name="+name+"&room="+room)
	if err != nil {
		t.Fatalf("%s joins %s on %s: %v", name, room, addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &chatClient{t: t, nc: nc, r: nc}
	if br != nil {
		c.r = br
	}
	return c
}

func (c *chatClient) send(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.nc, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next message that is not a presence update.
func (c *chatClient) next() string {
	c.t.Helper()
	for {
		c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{c.r, c.nc})
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if !strings.HasPrefix(string(b), `{"presence"`) {
			return string(b)
		}
	}
}

// waitSubscribers waits until the room's channel has n subscribers.
func waitSubscribers(t *testing.T, redisAddr, room string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", redisAddr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "PUBSUB NUMSUB wsroom:room:"+room+"\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 256)
		k, _ := c.Read(b)
		c.Close()
		if strings.HasSuffix(string(b[:k]), ":"+string(rune('0'+n))+"\r\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("room %s: NUMSUB reply %q, want %d", room, b[:k], n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTwoProcessesChatAndDM(t *testing.T) {
	redisAddr := redistest.Start(t).Addr
	bin := filepath.Join(t.TempDir(), "chat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	n1, n2 := startNode(t, bin, redisAddr), startNode(t, bin, redisAddr)
	alice := join(t, n1, "alice", "lobby")
	bob := join(t, n2, "bob", "lobby")
	eve := join(t, n2, "eve", "elsewhere")
	waitSubscribers(t, redisAddr, "lobby", 2)

	alice.send(`{"room":"lobby","data":{"text":"hi bob"},"id":"1"}`)
	if got, want := bob.next(), `{"from":"alice","room":"lobby","data":{"text":"hi bob"}}`; got != want {
		t.Fatalf("bob got %s, want %s", got, want)
	}
	bob.send(`{"room":"lobby","data":{"text":"hi alice"},"id":"1"}`)
	if got, want := alice.next(), `{"from":"bob","room":"lobby","data":{"text":"hi alice"}}`; got != want {
		t.Fatalf("alice got %s, want %s", got, want)
	}

	// A DM across nodes; eve shares no room with alice, so her node drops
	// the DM addressed to her.
	alice.send(`{"to":["eve"],"data":{"text":"psst eve","dm":true},"id":"2"}`)
	alice.send(`{"to":["bob"],"data":{"text":"psst","dm":true},"id":"3"}`)
	if got, want := bob.next(), `{"from":"alice","data":{"text":"psst","dm":true}}`; got != want {
		t.Fatalf("bob got %s, want %s", got, want)
	}
	bob.send(`{"to":["alice"],"data":{"text":"ok","dm":true},"id":"4"}`)
	if got, want := alice.next(), `{"from":"bob","data":{"text":"ok","dm":true}}`; got != want {
		t.Fatalf("alice got %s, want %s", got, want)
	}
	// By now alice's earlier DM to eve would have arrived: eve, who shares
	// no room with alice, must have received nothing but presence updates.
	eve.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		b, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{eve.r, eve.nc})
		if err != nil {
			break
		}
		if !strings.HasPrefix(string(b), `{"presence"`) {
			t.Fatalf("eve received %s", b)
		}
	}
}
