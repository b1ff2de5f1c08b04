package main

import (
	"strings"
	"testing"
)

// TestParseResume reads the output of integration's TestResumeUnderCuts
// (lines as it prints them with -v): a subtest that passed with its
// figures, and one that failed with its errors, which must not read as
// passed.
func TestParseResume(t *testing.T) {
	out := `=== RUN   TestResumeUnderCuts
=== RUN   TestResumeUnderCuts/server-cuts
    resume_test.go:399: 10 clients, 60000 messages at 1000/s in 1m0s; 29 cuts of 290 connections in all
    resume_test.go:420: reconnects 290 (close codes of client 0: map[1006:29]), resumes that recovered 290; resume latency (socket created → first missed message) over 290 resumes: p50 2.2 ms, p99 7.7 ms, max 8.5 ms; of which socket created → hello: p50 2.2 ms, p99 7.7 ms, max 8.5 ms
=== RUN   TestResumeUnderCuts/proxy-kills
    resume_test.go:399: 10 clients, 60000 messages at 1000/s in 59.999s; 29 cuts of 290 connections in all
    resume_test.go:407: client 3 received 1..59000, 59002..60000, want 1..60000 once, in order
    resume_test.go:420: reconnects 290 (close codes of client 0: map[1006:29]), resumes that recovered 289; resume latency (socket created → first missed message) over 290 resumes: p50 2.8 ms, p99 10.7 ms, max 11.6 ms; of which socket created → hello: p50 2.8 ms, p99 10.7 ms, max 11.6 ms
--- FAIL: TestResumeUnderCuts (120.71s)
    --- PASS: TestResumeUnderCuts/server-cuts (60.10s)
    --- FAIL: TestResumeUnderCuts/proxy-kills (60.31s)
FAIL
`
	var started []string
	runs := parseResume(strings.NewReader(out), func(m string) { started = append(started, m) })
	if len(runs) != 2 || strings.Join(started, ",") != "server-cuts,proxy-kills" {
		t.Fatalf("%d runs, started %v", len(runs), started)
	}
	ok, bad := runs[0], runs[1]
	if !ok.Passed || len(ok.Failures) != 0 || ok.Load != "10 clients, 60000 messages at 1000/s in 1m0s; 29 cuts of 290 connections in all" ||
		ok.Resumes != "290 reconnects, 290 recovered" || ok.Latency != "p50 2.2 ms, p99 7.7 ms, max 8.5 ms" {
		t.Errorf("server-cuts read as %+v", ok)
	}
	if bad.Passed || len(bad.Failures) != 1 || !strings.HasPrefix(bad.Failures[0], "client 3 received") || bad.Latency != "p50 2.8 ms, p99 10.7 ms, max 11.6 ms" {
		t.Errorf("proxy-kills read as %+v", bad)
	}
	rep := &report{resume: &resumeResult{Runs: runs}}
	sec := rep.resumeSection()
	for _, want := range []string{"| server-cuts | 10 clients", "| **yes** |", "| proxy-kills |", "**no**: client 3 received"} {
		if !strings.Contains(sec, want) {
			t.Errorf("the section lacks %q:\n%s", want, sec)
		}
	}
}
