package main

// The resume scenario (issue 12, AnyCable-style): clients in a room with
// history receive 1,000 messages/s for 60 s while their connections are
// cut every 2 s, on one node (cut by the server; reset by a proxy) and on
// two nodes over a real Redis (each reconnect on the other node). It is
// integration's TestResumeUnderCuts at full size (WSROOM_RESUME_SIZE=full),
// run as `go test` in that module: one implementation, which judges every
// client's messages (each once, in order, none lost) and measures resume
// latency; this scenario reports what it logged.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wsroom/wsroom/internal/sysstat"
)

// resumeRun is one subtest's outcome.
type resumeRun struct {
	Mode     string   // server-cuts, proxy-kills, two-nodes-redis
	Passed   bool     // every client got every message once, in order, and was never told lost
	Load     string   // clients, messages, rate, cuts
	Resumes  string   // reconnects and resumes that recovered
	Latency  string   // socket created → first missed message: p50, p99, max
	Failures []string // the test's error lines, if it failed
}

// resumeResult is the scenario's outcome.
type resumeResult struct {
	Runs    []*resumeRun
	Elapsed time.Duration
	Failed  string // the run could not be made or read
}

var (
	resumeSubtest = regexp.MustCompile(`^\s*--- (PASS|FAIL): TestResumeUnderCuts/(\S+)`)
	resumeRunLine = regexp.MustCompile(`^\s*=== RUN\s+TestResumeUnderCuts/(\S+)`)
	resumeLoadLog = regexp.MustCompile(`resume_test\.go:\d+: (\d+ clients, .* cuts of \d+ connections in all)`)
	resumeLatLog  = regexp.MustCompile(`resume_test\.go:\d+: reconnects (\d+) .*resumes that recovered (\d+); resume latency \(socket created → first missed message\) over \d+ resumes: ([^;]+);`)
	resumeErrLog  = regexp.MustCompile(`resume_test\.go:\d+: (.*)`) // any other line the test writes is an error
)

// runResume runs the scenario in dir (the integration module).
func runResume(ctx context.Context, dir string) *resumeResult {
	res := &resumeResult{}
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	// The tool pins itself to -client-cpu, and a child inherits its
	// mask: the test's servers, Redis and the Node clients would share
	// one CPU. The scenario runs last, so the tool lets go of its CPU.
	if err := sysstat.Unpin(); err != nil {
		res.Failed = err.Error()
		return res
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-timeout", "20m", "-run", "^TestResumeUnderCuts$", "-v", ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "WSROOM_RESUME_SIZE=full")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		res.Failed = err.Error()
		return res
	}
	fmt.Fprintf(os.Stderr, "resume: go test -run TestResumeUnderCuts in %s at full size (about 3 minutes)\n", abs)
	if err := cmd.Start(); err != nil {
		res.Failed = err.Error()
		return res
	}
	res.Runs = parseResume(out, func(mode string) { fmt.Fprintf(os.Stderr, "resume: %s\n", mode) })
	werr := cmd.Wait()
	switch {
	case len(res.Runs) == 0:
		res.Failed = fmt.Sprintf("go test ran no subtest (%v)", werr)
	case werr != nil:
		res.Failed = fmt.Sprintf("go test: %v", werr)
	}
	return res
}

// parseResume reads `go test -v -run TestResumeUnderCuts` output: a run
// per subtest, with what it logged and whether it passed. started is
// told each subtest's start.
func parseResume(out io.Reader, started func(mode string)) []*resumeRun {
	var runs []*resumeRun
	var cur *resumeRun
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := resumeRunLine.FindStringSubmatch(line); m != nil {
			cur = &resumeRun{Mode: m[1]}
			runs = append(runs, cur)
			started(m[1])
			continue
		}
		if m := resumeSubtest.FindStringSubmatch(line); m != nil {
			for _, r := range runs {
				if r.Mode == m[2] {
					r.Passed = m[1] == "PASS"
				}
			}
			continue
		}
		if cur == nil {
			continue
		}
		if m := resumeLoadLog.FindStringSubmatch(line); m != nil {
			cur.Load = m[1]
		} else if m := resumeLatLog.FindStringSubmatch(line); m != nil {
			cur.Resumes = fmt.Sprintf("%s reconnects, %s recovered", m[1], m[2])
			cur.Latency = m[3]
		} else if m := resumeErrLog.FindStringSubmatch(line); m != nil {
			cur.Failures = append(cur.Failures, m[1])
		}
	}
	return runs
}

func (rep *report) resumeSection() string {
	s := rep.resume
	if s == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n### Resume under cuts (issue 12)\n\n")
	fmt.Fprintf(&b, "integration's `TestResumeUnderCuts` at full size (`WSROOM_RESUME_SIZE=full`), %v: 10 clients "+
		"(client/wsroom.js in Node) in a room with history, 1,000 broadcasts/s for 60 s, every connection cut every 2 s. "+
		"\"Every message once, in order\" is the test's own check of each client's messages; resume latency is from the new "+
		"socket's creation to the first missed message.\n\n", s.Elapsed.Round(time.Second))
	if s.Failed != "" {
		fmt.Fprintf(&b, "**resume scenario failed:** %s\n\n", s.Failed)
	}
	b.WriteString("| cut by | load | every message once, in order | resumes | resume latency |\n|---|---|---|---|---|\n")
	for _, r := range s.Runs {
		ok := "**yes**"
		if !r.Passed {
			ok = "**no**: " + strings.Join(r.Failures, "; ")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Mode, r.Load, ok, r.Resumes, r.Latency)
	}
	return b.String()
}
