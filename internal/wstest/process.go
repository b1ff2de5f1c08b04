package wstest

import (
	"bufio"
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
)

// The demos' tests run them as programs, a node per process: Build
// compiles one and StartProcess runs it on a free loopback port.

// processPatience bounds how long StartProcess waits for a program to
// listen, and its cleanup for the program to exit.
const processPatience = 20 * time.Second

// Build compiles the main package in dir (go build) into the test's
// temporary directory and returns the binary's path. A failed build fails
// the test.
func Build(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "prog")
	if out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// Process is a program started by StartProcess.
type Process struct {
	// Addr is the host:port it listens on.
	Addr string

	cmd    *exec.Cmd
	exited chan error // cmd.Wait's result, once
	killed bool
}

// StartProcess runs bin with -addr 127.0.0.1:port (a free port) and then
// args, and waits until it has printed, as the first line on its standard
// output, a line that holds http://127.0.0.1:port/ (the program must
// announce its URL once it listens), and until GET / answers; the rest of
// its output goes to this process's standard error. Cleanup sends it
// SIGTERM (by PID) and fails the test unless it exits with status 0 within
// 20 s; after that it kills it.
func StartProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{Addr: ln.Addr().String(), exited: make(chan error, 1)}
	ln.Close()
	p.cmd = exec.Command(bin, append([]string{"-addr", p.Addr}, args...)...)
	p.cmd.Stderr = os.Stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		first <- line
		io.Copy(os.Stderr, r)
		p.exited <- p.cmd.Wait() // after the reads, as StdoutPipe requires
	}()
	url := "http://" + p.Addr + "/"
	select {
	case line := <-first:
		if !strings.Contains(line, url) {
			t.Fatalf("%s printed %q first, want a line with %s", bin, line, url)
		}
	case <-time.After(processPatience):
		t.Fatalf("%s printed nothing within %v", bin, processPatience)
	}
	client := http.Client{Timeout: DefaultTimeout}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	resp.Body.Close()
	return p
}

// Kill kills the process with SIGKILL (by PID) and waits for it to exit.
// Call it on the test's goroutine.
func (p *Process) Kill() {
	if p.killed {
		return
	}
	p.killed = true
	p.cmd.Process.Kill()
	<-p.exited
}

// stop ends the process at cleanup, unless Kill did: SIGTERM, then
// SIGKILL if it has not exited within processPatience.
func (p *Process) stop(t testing.TB) {
	if p.killed {
		return
	}
	p.killed = true
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("%s (%s) exited: %v", p.cmd.Path, p.Addr, err)
		}
	case <-time.After(processPatience):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s (%s) did not stop within %v of SIGTERM", p.cmd.Path, p.Addr, processPatience)
	}
}
