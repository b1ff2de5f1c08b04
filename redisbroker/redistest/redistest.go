// Package redistest starts throwaway redis-server processes, standalone
// and as a cluster, for tests of code that uses redisbroker: a real Redis on
// a free loopback port, killed by PID when the test ends. Under CI=true a
// missing redis-server fails the test; otherwise it skips it.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

// TB is the part of testing.TB the package uses, so that a benchmark
// program can start servers too.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Server is a redis-server process started by a test, listening on Addr
// with no persistence in a temporary directory.
type Server struct {
	Addr  string
	t     TB
	dir   string
	extra []string // more redis-server arguments
	wrap  []string // command prefix, such as taskset -c 0
	cmd   *exec.Cmd
}

// Shared returns the Redis named by WSROOM_REDIS_ADDR, or starts one for
// this test.
func Shared(t TB) string {
	if addr := os.Getenv("WSROOM_REDIS_ADDR"); addr != "" {
		return addr
	}
	return Start(t).Addr
}

// Start starts redis-server on a free loopback port; Cleanup kills it by
// PID. Under CI=true a missing redis-server fails the test instead of
// skipping it.
func Start(t TB) *Server {
	t.Helper()
	return StartWith(t, nil)
}

// needRedis skips the test, or fails it under CI=true, if redis-server is
// not installed.
func needRedis(t TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not installed (needed by the redisbroker tests): %v", err)
		}
		t.Skipf("redis-server is not installed: %v", err)
	}
}

// Restart runs redis-server on s.Addr (again) and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"}
	argv := append(append(append([]string(nil), s.wrap...), "redis-server"), append(args, s.extra...)...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			fmt.Fprint(c, "PING\r\n")
			c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("redis-server on %s did not start: %v", s.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// PID returns the process ID of the running redis-server (0 if stopped).
func (s *Server) PID() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// StartWith starts redis-server like Start, with more arguments, under
// the command prefix wrap (e.g. "taskset", "-c", "0"; none if empty).
func StartWith(t TB, wrap []string, args ...string) *Server {
	t.Helper()
	needRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &Server{Addr: addr, t: t, dir: t.TempDir(), extra: args, wrap: wrap}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Stopped reports whether the process is stopped.
func (s *Server) Stopped() bool { return s.cmd == nil }

// Stop kills the redis-server process by PID and reaps it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}
