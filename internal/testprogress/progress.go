package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`), with the
// build events that go test -json adds (build-output, build-fail).
type event struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64 // seconds
	Output      string
	ImportPath  string // build events
	FailedBuild string // on a package's fail: the build that failed
}

// progress turns events into the account main prints. Its clock is the
// now passed to each method, so that tests drive it without sleeping.
type progress struct {
	w        io.Writer
	start    time.Time
	every    time.Duration
	lastLine time.Time

	pkgs    map[string]*pkgRun       // packages started, not ended
	running []string                 // their names, in start order
	builds  map[string]*bytes.Buffer // build output by ImportPath
	ended   []pkgResult
	failed  bool
}

// pkgRun is a package whose tests are running.
type pkgRun struct {
	start, lastLine time.Time
	tests           map[string]*testRun // tests started, not ended
	out             bytes.Buffer        // the package's own output
	failedTests     []string
}

// testRun is a test that has started and not ended.
type testRun struct {
	running bool      // false while paused (t.Parallel)
	since   time.Time // when it last ran or continued
	out     bytes.Buffer
}

// pkgResult is a package that ended.
type pkgResult struct {
	name        string
	action      string // pass, fail or skip
	elapsed     time.Duration
	failedTests []string
	failedBuild bool
}

func newProgress(w io.Writer, now time.Time, every time.Duration) *progress {
	return &progress{w: w, start: now, every: every, lastLine: now,
		pkgs: map[string]*pkgRun{}, builds: map[string]*bytes.Buffer{}}
}

// printf prints one line (format has no newline) stamped with the time
// since the start.
func (p *progress) printf(now time.Time, format string, args ...any) {
	d := now.Sub(p.start)
	fmt.Fprintf(p.w, "[%3d:%02d] %s\n", int(d/time.Minute), int(d%time.Minute/time.Second), fmt.Sprintf(format, args...))
	p.lastLine = now
}

// line handles one line of input: an event, or a line that is not one,
// which is copied through.
func (p *progress) line(l []byte, now time.Time) {
	var ev event
	if len(l) == 0 || l[0] != '{' || json.Unmarshal(l, &ev) != nil || ev.Action == "" {
		p.w.Write(append(l, '\n'))
		return
	}
	p.event(ev, now)
}

func (p *progress) event(ev event, now time.Time) {
	switch ev.Action {
	case "build-output":
		b := p.builds[ev.ImportPath]
		if b == nil {
			b = new(bytes.Buffer)
			p.builds[ev.ImportPath] = b
		}
		b.WriteString(ev.Output)
		return
	case "build-fail":
		p.failed = true
		p.printf(now, "BUILD FAIL %s", ev.ImportPath)
		if b := p.builds[ev.ImportPath]; b != nil {
			p.w.Write(b.Bytes())
		}
		delete(p.builds, ev.ImportPath)
		return
	}
	if ev.Package == "" {
		return
	}
	pkg := p.pkgs[ev.Package]
	if pkg == nil {
		pkg = &pkgRun{start: now, lastLine: now, tests: map[string]*testRun{}}
		p.pkgs[ev.Package] = pkg
		p.running = append(p.running, ev.Package)
		p.printf(now, "start   %s", ev.Package)
	}
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			pkg.out.WriteString(ev.Output)
		case "pass", "fail", "skip":
			p.endPackage(ev, pkg, now)
		}
		return
	}
	t := pkg.tests[ev.Test]
	if t == nil {
		t = &testRun{running: true, since: now}
		pkg.tests[ev.Test] = t
	}
	switch ev.Action {
	case "run", "cont":
		t.running, t.since = true, now
	case "pause":
		t.running = false
	case "output":
		t.out.WriteString(ev.Output)
	case "pass", "skip":
		delete(pkg.tests, ev.Test)
	case "fail":
		p.failed = true
		pkg.failedTests = append(pkg.failedTests, ev.Test)
		p.printf(now, "FAIL    %s %s (%s); its output:", ev.Package, ev.Test, fmtDuration(seconds(ev.Elapsed)))
		p.w.Write(t.out.Bytes())
		pkg.lastLine = now
		delete(pkg.tests, ev.Test)
	}
}

// endPackage prints a package's result; for a failed package, first the
// output of the tests that had not ended (a timeout or a crash) and its
// own output.
func (p *progress) endPackage(ev event, pkg *pkgRun, now time.Time) {
	delete(p.pkgs, ev.Package)
	for i, name := range p.running {
		if name == ev.Package {
			p.running = append(p.running[:i], p.running[i+1:]...)
			break
		}
	}
	elapsed := seconds(ev.Elapsed)
	if elapsed == 0 {
		elapsed = now.Sub(pkg.start)
	}
	r := pkgResult{name: ev.Package, action: ev.Action, elapsed: elapsed, failedTests: pkg.failedTests, failedBuild: ev.FailedBuild != ""}
	defer func() { p.ended = append(p.ended, r) }()
	switch {
	case ev.Action == "fail":
		p.failed = true
		for _, name := range sortedTests(pkg.tests) {
			if t := pkg.tests[name]; t.out.Len() > 0 {
				r.failedTests = append(r.failedTests, name+" (had not ended)")
				p.printf(now, "FAIL    %s %s had not ended; its output:", ev.Package, name)
				p.w.Write(t.out.Bytes())
			}
		}
		if own := ownOutput(pkg.out.String(), ev.Package); own != "" {
			p.printf(now, "FAIL    %s; its own output:", ev.Package)
			io.WriteString(p.w, own)
		}
		what := fmtDuration(elapsed)
		if r.failedBuild {
			what = "build failed"
		}
		p.printf(now, "FAIL    %s  %s", ev.Package, what)
	case ev.Action == "skip":
		p.printf(now, "skip    %s  %s", ev.Package, strings.TrimSpace(lastField(pkg.out.String())))
	default:
		p.printf(now, "ok      %s  %s", ev.Package, fmtDuration(elapsed))
	}
}

// tick prints, for each package that has printed nothing for p.every, the
// tests it is running; and, if no package runs and nothing was printed
// for p.every, that go test is building.
func (p *progress) tick(now time.Time) {
	if len(p.running) == 0 {
		if now.Sub(p.lastLine) >= p.every {
			p.printf(now, "...     no package running: go test is building")
		}
		return
	}
	for _, name := range p.running {
		pkg := p.pkgs[name]
		if now.Sub(pkg.lastLine) < p.every {
			continue
		}
		p.printf(now, "...     %s running for %s: %s", name, fmtDuration(now.Sub(pkg.start)), runningTests(pkg, now))
		pkg.lastLine = now
	}
}

// runningTests names the innermost running tests of pkg, longest
// running first, with their times.
func runningTests(pkg *pkgRun, now time.Time) string {
	var leaves []string
	paused := 0
	for name, t := range pkg.tests {
		if !t.running {
			paused++
			continue
		}
		leaf := true
		for other, o := range pkg.tests {
			if o.running && strings.HasPrefix(other, name+"/") {
				leaf = false
				break
			}
		}
		if leaf {
			leaves = append(leaves, name)
		}
	}
	sort.Slice(leaves, func(i, j int) bool {
		ti, tj := pkg.tests[leaves[i]].since, pkg.tests[leaves[j]].since
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return leaves[i] < leaves[j]
	})
	const most = 5
	var parts []string
	for i, name := range leaves {
		if i == most {
			parts = append(parts, fmt.Sprintf("and %d more", len(leaves)-most))
			break
		}
		parts = append(parts, name+" "+fmtDuration(now.Sub(pkg.tests[name].since)))
	}
	if len(parts) == 0 {
		parts = append(parts, "no test running (TestMain, or between tests)")
	}
	if paused > 0 {
		parts = append(parts, fmt.Sprintf("%d paused (t.Parallel)", paused))
	}
	return strings.Join(parts, ", ")
}

// finish prints the summary at the end of the input and returns the exit
// status: 1 if anything failed.
func (p *progress) finish(now time.Time) int {
	for _, name := range p.running { // go test ended without their result
		p.failed = true
		p.printf(now, "FAIL    %s: no result (go test ended while it ran); its output:", name)
		pkg := p.pkgs[name]
		for _, tn := range sortedTests(pkg.tests) {
			p.w.Write(pkg.tests[tn].out.Bytes())
		}
		p.w.Write(pkg.out.Bytes())
		p.ended = append(p.ended, pkgResult{name: name, action: "fail", elapsed: now.Sub(pkg.start)})
	}
	count := map[string]int{}
	for _, r := range p.ended {
		count[r.action]++
	}
	p.printf(now, "done    %d packages: %d ok, %d failed, %d without tests, in %s",
		len(p.ended), count["pass"], count["fail"], count["skip"], fmtDuration(now.Sub(p.start)))
	slow := append([]pkgResult(nil), p.ended...)
	sort.SliceStable(slow, func(i, j int) bool { return slow[i].elapsed > slow[j].elapsed })
	var parts []string
	for _, r := range slow[:min(5, len(slow))] {
		if r.action != "skip" {
			parts = append(parts, r.name+" "+fmtDuration(r.elapsed))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(p.w, "         slowest: %s\n", strings.Join(parts, ", "))
	}
	for _, r := range p.ended {
		if r.action != "fail" {
			continue
		}
		what := strings.Join(r.failedTests, ", ")
		if r.failedBuild {
			what = "build failed"
		}
		fmt.Fprintf(p.w, "         FAILED: %s %s\n", r.name, what)
	}
	if p.failed {
		if count["fail"] == 0 {
			fmt.Fprintf(p.w, "         FAILED: a build (see BUILD FAIL above)\n")
		}
		return 1
	}
	return 0
}

// ownOutput is a package's own output without the lines go test always
// prints (PASS, FAIL, ok and FAIL with the package name and time).
func ownOutput(out, pkg string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(out, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || t == "PASS" || t == "FAIL" || strings.HasPrefix(t, "FAIL\t"+pkg) || strings.HasPrefix(t, "ok  \t"+pkg) {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

func sortedTests(m map[string]*testRun) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// lastField returns the last tab-separated field of s's first line
// ("?   \tpkg\t[no test files]" gives "[no test files]").
func lastField(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s[strings.LastIndex(s, "\t")+1:]
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// fmtDuration prints d as 0.4s, 12s or 3m05s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	}
	return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
}
