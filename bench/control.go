package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// serverProc is a server running in its own process (this binary
// re-executed with serveEnv set), pinned to one CPU with GOMAXPROCS=1.
type serverProc struct {
	name  string
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ctl   *control
}

// startServer starts the named server. cpu < 0 leaves it unpinned;
// procs is its GOMAXPROCS (0 = Go's default); env is added to its
// environment.
func startServer(name string, cpu, procs int, env ...string) (*serverProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serveEnv+"="+name, "WSROOM_BENCH_CPU="+strconv.Itoa(cpu))
	if procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTEN ")
	if err != nil || !ok {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("server %s did not start: %q %v", name, line, err)
	}
	return &serverProc{name: name, addr: addr, cmd: cmd, stdin: stdin, ctl: newControl(addr)}, nil
}

// stop kills the server and waits for it. Killing (rather than closing
// every connection from the client) leaves TIME_WAIT on the server's
// side, so the client's source ports stay free for the next phase.
func (s *serverProc) stop() {
	s.ctl.close()
	_ = s.stdin.Close()
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// control talks to a server's /ctl/ endpoints over one keep-alive
// connection.
type control struct {
	base string
	tr   *http.Transport
	hc   *http.Client
}

func newControl(addr string) *control {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	return &control{base: "http://" + addr, tr: tr, hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

func (c *control) close() { c.tr.CloseIdleConnections() }

func (c *control) get(ctx context.Context, path string, q url.Values, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (c *control) stats(ctx context.Context, gc bool) (serverStats, error) {
	var st serverStats
	q := url.Values{}
	if gc {
		q.Set("gc", "1")
	}
	return st, c.get(ctx, "/ctl/stats", q, &st)
}

// publish asks the server to publish n messages (to the room, or to users
// when users is not empty) at rate per second (0 = back to back) and
// returns once the server's publish loop has finished. json publishes the
// compression scenario's 4 KiB JSON messages to the room, back to back.
func (c *control) publish(ctx context.Context, n int, rate float64, users []string, json bool) error {
	q := url.Values{"n": {strconv.Itoa(n)}, "rate": {strconv.FormatFloat(rate, 'g', -1, 64)}}
	if json {
		q.Set("json", "1")
	}
	if len(users) > 0 {
		q.Set("users", strings.Join(users, ","))
	}
	var resp map[string]int64
	return c.get(ctx, "/ctl/publish", q, &resp)
}

// publishSeq asks the server to publish n messages of size bytes to the
// room back to back, each carrying its index (see publish), and returns
// when the server's loop started and how long it took.
func (c *control) publishSeq(ctx context.Context, n, size int) (start time.Time, took time.Duration, err error) {
	q := url.Values{"n": {strconv.Itoa(n)}, "rate": {"0"}, "size": {strconv.Itoa(size)}, "seq": {"1"}}
	var resp map[string]int64
	if err := c.get(ctx, "/ctl/publish", q, &resp); err != nil {
		return time.Time{}, 0, err
	}
	return time.Unix(0, resp["start"]), time.Duration(resp["ns"]), nil
}

// sampleStart makes the server sample its memory every `every` (kernel
// figures every kevery) until sampleStop.
func (c *control) sampleStart(ctx context.Context, every, kevery time.Duration) error {
	var resp map[string]int64
	return c.get(ctx, "/ctl/sample", url.Values{"every": {every.String()}, "kevery": {kevery.String()}}, &resp)
}

// sampleStop stops the sampling and returns the samples.
func (c *control) sampleStop(ctx context.Context) ([]memSample, error) {
	var s []memSample
	return s, c.get(ctx, "/ctl/sample", url.Values{"stop": {"1"}}, &s)
}
