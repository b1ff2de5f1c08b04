// Package natstest starts throwaway nats-server processes for tests, on
// free loopback ports, and kills them by PID when the test ends.
package natstest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Server is a server process started by a test.
type Server struct {
	Addr       string // host:port for clients
	URL        string // nats://Addr
	MonitorURL string // nats-server's monitoring endpoint, http://host:port

	t    testing.TB // nil for StartMain
	name string
	args []string
	cmd  *exec.Cmd
}

// Shared returns the NATS URL named by WSROOM_NATS_URL, or starts a
// nats-server for this test and returns its URL.
func Shared(t testing.TB) string {
	if url := os.Getenv("WSROOM_NATS_URL"); url != "" {
		return url
	}
	return Start(t).URL
}

// Start starts nats-server (WSROOM_NATS_SERVER, else nats-server on PATH,
// else /usr/sbin/nats-server, where Debian puts it) on a free loopback
// port, with its monitoring endpoint on another; Cleanup kills it. Under
// CI=true a missing nats-server fails the test instead of skipping it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := natsServer()
	if err != nil {
		missing(t, err)
	}
	s := newNATS(bin, freeAddr(t), freeAddr(t))
	s.t = t
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// StartMain starts nats-server like Start, for TestMain, where there is
// no testing.TB: the caller stops it. It returns an error if nats-server
// is missing or does not start.
func StartMain() (*Server, error) {
	bin, err := natsServer()
	if err != nil {
		return nil, err
	}
	var addrs [2]string
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	s := newNATS(bin, addrs[0], addrs[1])
	return s, s.start()
}

func natsServer() (string, error) {
	bin := os.Getenv("WSROOM_NATS_SERVER")
	if bin == "" {
		bin = "nats-server"
		if _, err := exec.LookPath(bin); err != nil {
			bin = "/usr/sbin/nats-server"
		}
	}
	return exec.LookPath(bin)
}

func newNATS(bin, addr, mon string) *Server {
	host, port, _ := net.SplitHostPort(addr)
	_, mport, _ := net.SplitHostPort(mon)
	return &Server{
		Addr: addr, URL: "nats://" + addr, MonitorURL: "http://" + mon, name: bin,
		args: []string{"-a", host, "-p", port, "-m", mport},
	}
}

// missing skips the test, or fails it under CI=true, where the servers
// must be installed.
func missing(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("not installed (needed by these tests): %v", err)
	}
	t.Skipf("not installed: %v", err)
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Restart runs the server on s.Addr (again) and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) start() error {
	s.cmd = exec.Command(s.name, s.args...)
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := natsReady(s)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("%s on %s did not start: %w", s.name, s.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server process by PID and reaps it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// natsReady checks that nats-server greets clients with INFO and that its
// monitoring endpoint answers.
func natsReady(s *Server) error {
	line, err := greeting(s.Addr)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("greeting %q, want INFO", line)
	}
	resp, err := http.Get(s.MonitorURL + "/varz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// greeting connects to addr and returns the first line read.
func greeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// Subscribers returns how many client connections of a nats-server
// started by Start subscribe to subject, read from its monitoring
// endpoint (/connz?subs=1).
func (s *Server) Subscribers(subject string) (int, error) {
	resp, err := http.Get(s.MonitorURL + "/connz?subs=1&limit=10000")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var connz struct {
		Connections []struct {
			Subs []string `json:"subscriptions_list"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range connz.Connections {
		if slices.Contains(c.Subs, subject) {
			n++
		}
	}
	return n, nil
}
