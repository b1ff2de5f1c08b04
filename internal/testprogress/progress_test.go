package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runFile runs testprogress over a recorded go test -json stream (made by
// go 1.26 from small packages: testdata/*.jsonl).
func runFile(t *testing.T, name string) (string, int) {
	t.Helper()
	in, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out bytes.Buffer
	status := run(in, &out, 30*time.Second)
	return out.String(), status
}

func contains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func lacks(t *testing.T, out string, unwanted ...string) {
	t.Helper()
	for _, u := range unwanted {
		if strings.Contains(out, u) {
			t.Errorf("output has %q:\n%s", u, out)
		}
	}
}

// TestFailures: a passing package, a failing test with a failing
// subtest, a compile error, a vet error and a package without tests.
func TestFailures(t *testing.T) {
	out, status := runFile(t, "mixed.jsonl")
	if status != 1 {
		t.Errorf("status %d, want 1", status)
	}
	contains(t, out,
		"start   example.com/tp/a", "ok      example.com/tp/a  0.0s",
		// failing tests' output in full, each under its name
		"FAIL    example.com/tp/b TestBad/sub (0.0s); its output:\n=== RUN   TestBad/sub\n    b_test.go:12: sub failed: 42\n--- FAIL: TestBad/sub (0.00s)\n",
		"FAIL    example.com/tp/b TestBad (0.0s); its output:\n=== RUN   TestBad\nstdout line\n    b_test.go:11: a log line\n--- FAIL: TestBad (0.00s)\n",
		"FAIL    example.com/tp/b  0.0s",
		// build failures with the compiler's and vet's words
		"BUILD FAIL example.com/tp/c [example.com/tp/c.test]\n# example.com/tp/c [example.com/tp/c.test]\nc/c_test.go:5:28: undefined: undefinedThing\n",
		"FAIL    example.com/tp/c  build failed",
		`f/f_test.go:8:43: fmt.Sprintf format %d has arg "x" of wrong type string`,
		"skip    example.com/tp/d  [no test files]",
		"done    5 packages: 1 ok, 3 failed, 1 without tests, in ",
		"FAILED: example.com/tp/b TestBad/sub, TestBad\n",
		"FAILED: example.com/tp/c build failed\n",
		"FAILED: example.com/tp/f build failed\n")
	// Passing tests' output is dropped, and so are go test's own lines.
	lacks(t, out, "hello", "=== RUN   TestOK", "TestPar", "FAIL\texample.com/tp/b\t0.005s", "its own output")
}

// TestTimeout: a test that runs into -timeout never ends; its output,
// with the panic, is printed when its package fails.
func TestTimeout(t *testing.T) {
	out, status := runFile(t, "timeout.jsonl")
	if status != 1 {
		t.Errorf("status %d, want 1", status)
	}
	contains(t, out,
		"FAIL    example.com/tp/g TestSlow had not ended; its output:\n=== RUN   TestSlow\n    g_test.go:8: before\npanic: test timed out after 1s\n",
		"/src/tp/g/g_test.go:8",
		"FAILED: example.com/tp/g TestSlow (had not ended)\n")
}

// TestPass: a run where everything passes has status 0 and no FAIL.
func TestPass(t *testing.T) {
	in, err := os.ReadFile("testdata/mixed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var pass []string // package a's events only
	for _, l := range strings.Split(string(in), "\n") {
		if strings.Contains(l, `"Package":"example.com/tp/a"`) {
			pass = append(pass, l)
		}
	}
	var out bytes.Buffer
	if status := run(strings.NewReader(strings.Join(pass, "\n")+"\n"), &out, 30*time.Second); status != 0 {
		t.Errorf("status %d, want 0", status)
	}
	contains(t, out.String(), "ok      example.com/tp/a", "done    1 packages: 1 ok, 0 failed, 0 without tests")
	lacks(t, out.String(), "FAIL")
}

// TestCutShort: input that ends while a package runs (go test killed) is
// a failure, and what the package printed is shown; other lines are
// copied through.
func TestCutShort(t *testing.T) {
	in := `go: downloading example.com/x v1.0.0
{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:3: halfway\n"}
`
	var out bytes.Buffer
	if status := run(strings.NewReader(in), &out, 30*time.Second); status != 1 {
		t.Errorf("status %d, want 1", status)
	}
	contains(t, out.String(), "go: downloading example.com/x v1.0.0\n",
		"FAIL    p: no result (go test ended while it ran); its output:\n=== RUN   TestA\n    a_test.go:3: halfway\n",
		"done    1 packages: 0 ok, 1 failed")
}

// TestHeartbeat drives the clock by hand: a running package gets a line
// naming its innermost running tests once it has printed nothing for
// every; while no package runs, a line says go test is building.
func TestHeartbeat(t *testing.T) {
	var out bytes.Buffer
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	p := newProgress(&out, t0, 30*time.Second)
	// tickAt ticks at s seconds and checks that it prints want ("": nothing).
	tickAt := func(s int, want string) {
		t.Helper()
		out.Reset()
		p.tick(at(s))
		if got := out.String(); got != want {
			t.Errorf("tick at %ds printed %q, want %q", s, got, want)
		}
	}
	tickAt(29, "")
	tickAt(30, "[  0:30] ...     no package running: go test is building\n")
	p.event(event{Action: "start", Package: "p"}, at(40))
	p.event(event{Action: "run", Package: "p", Test: "TestA"}, at(40))
	p.event(event{Action: "run", Package: "p", Test: "TestA/sub"}, at(41))
	p.event(event{Action: "run", Package: "p", Test: "TestB"}, at(45))
	p.event(event{Action: "run", Package: "p", Test: "TestP"}, at(46))
	p.event(event{Action: "pause", Package: "p", Test: "TestP"}, at(46))
	tickAt(69, "") // 29 s after the package started
	tickAt(70, "[  1:10] ...     p running for 30s: TestA/sub 29s, TestB 25s, 1 paused (t.Parallel)\n")
	tickAt(99, "")
	// A failing test's report counts as a line about its package.
	p.event(event{Action: "fail", Package: "p", Test: "TestB"}, at(99))
	p.event(event{Action: "pass", Package: "p", Test: "TestA/sub"}, at(99))
	tickAt(128, "")
	tickAt(129, "[  2:09] ...     p running for 1m29s: TestA 1m29s, 1 paused (t.Parallel)\n")
	p.event(event{Action: "pass", Package: "p", Test: "TestA"}, at(130))
	tickAt(159, "[  2:39] ...     p running for 1m59s: no test running (TestMain, or between tests), 1 paused (t.Parallel)\n")
	out.Reset()
	p.event(event{Action: "fail", Package: "p", Elapsed: 120}, at(160))
	contains(t, out.String(), "[  2:40] FAIL    p  2m00s\n")
	tickAt(180, "") // 20 s after the package ended
	out.Reset()
	if status := p.finish(at(200)); status != 1 {
		t.Errorf("status %d, want 1", status)
	}
	contains(t, out.String(), "[  3:20] done    1 packages: 0 ok, 1 failed, 0 without tests, in 3m20s\n",
		"slowest: p 2m00s\n", "FAILED: p TestB\n")
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0.0s", 1234 * time.Millisecond: "1.2s", 12 * time.Second: "12s",
		65 * time.Second: "1m05s", 61 * time.Minute: "61m00s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
