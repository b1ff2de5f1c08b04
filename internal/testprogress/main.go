// Command testprogress reads the output of `go test -json` on its
// standard input and prints an account of the run that never goes
// silent, for test.sh:
//
//   - each package when it starts, and when it ends with its result and
//     elapsed time;
//   - the full output of every failing test (and of the tests still
//     running when a package fails, as on a timeout panic), of a failing
//     package's own output, and of every failed build;
//   - while a package runs, a line at least every -every (default 30s)
//     naming the tests still running and for how long, and, while no
//     package runs (go test is compiling), a line saying so;
//   - at the end, the count of packages by result, the slowest ones and
//     every failed package with its failed tests.
//
// Output of passing tests is dropped. Lines that are not JSON events are
// copied through. It exits with status 1 if a test, a package or a build
// failed, or if the input could not be read; run it at the end of a pipe
// with `set -o pipefail`, so that go test's own status counts too:
//
//	go build -o /tmp/testprogress ./internal/testprogress
//	go test -json ./... | /tmp/testprogress
//
// It has no dependencies beyond the standard library.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// maxLine bounds one input line: go test -json writes one event per
// line, with one line of test output in each.
const maxLine = 16 << 20

func main() {
	every := flag.Duration("every", 30*time.Second, "longest silence while tests run: a line naming the running tests comes at least this often")
	flag.Parse()
	if *every < time.Second {
		fmt.Fprintln(os.Stderr, "testprogress: -every must be at least 1s")
		os.Exit(2)
	}
	os.Exit(run(os.Stdin, os.Stdout, *every))
}

// run copies the account of the go test -json stream in to out, ticking
// every second, and returns the exit status.
func run(in io.Reader, out io.Writer, every time.Duration) int {
	p := newProgress(out, time.Now(), every)
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() { // ends at the end of the input, which ends the loop below
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
		readErr <- sc.Err()
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				status := p.finish(time.Now())
				if err := <-readErr; err != nil {
					fmt.Fprintf(out, "testprogress: reading go test's output: %v\n", err)
					status = 1
				}
				return status
			}
			p.line(l, time.Now())
		case now := <-tick.C:
			p.tick(now)
		}
	}
}
