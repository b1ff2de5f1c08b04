package wstest

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// program is what this test binary runs as when WSTEST_PROGRAM is set
// (see TestMain), for TestStartProcess: a server on -addr that announces
// its URL and on SIGTERM exits with the status code names; with -quit it
// exits at once, announcing nothing.
func program(code string) int {
	fs := flag.NewFlagSet("program", flag.ContinueOnError)
	addr := fs.String("addr", "", "address to listen on")
	quit := fs.Bool("quit", false, "exit at once, announcing nothing")
	if fs.Parse(os.Args[1:]) != nil {
		return 2
	}
	if *quit {
		return 0
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return 1
	}
	fmt.Printf("open http://%s/\n", ln.Addr())
	go http.Serve(ln, http.NotFoundHandler())
	<-term
	status, _ := strconv.Atoi(code)
	return status
}

// recorder is a testing.TB that records what fails instead of failing,
// and runs its cleanups when told.
type recorder struct {
	testing.TB // the real test, for everything else
	failures   []string
	cleanups   []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// failures runs f with a recorder, then its cleanups, and returns what
// failed.
func failures(t *testing.T, f func(testing.TB)) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return strings.Join(r.failures, "; ")
}

// TestStartProcess runs this test binary as a program: one that announces
// its URL and exits cleanly on SIGTERM passes; one that exits with an
// error on SIGTERM fails at cleanup, one that quits without announcing
// its URL fails at once, and one killed first is not signalled.
func TestStartProcess(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, code string
		args       []string
		kill       bool
		want       string // in the failures; "" for none
	}{
		{"clean", "0", nil, false, ""},
		{"exit status", "3", nil, false, "exited: exit status 3"},
		{"quits", "0", []string{"-quit"}, false, `printed "" first`},
		{"killed", "3", nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WSTEST_PROGRAM", tc.code)
			got := failures(t, func(tb testing.TB) {
				p := StartProcess(tb, bin, tc.args...)
				if resp, err := http.Get("http://" + p.Addr + "/"); err != nil {
					tb.Errorf("GET: %v", err)
				} else {
					resp.Body.Close()
				}
				if tc.kill {
					p.Kill()
				}
			})
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("failures %q, want %q", got, tc.want)
			}
		})
	}
}
