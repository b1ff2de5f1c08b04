//go:build linux

package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// TestSockcost runs the program with a few sockets in each place its
// peers can be and checks that the sockets took about what
// TCP_NOTSENT_LOWAT lets them take: at least that, and no more than that
// plus the 4 KiB receivers' windows and some slack (20–22 KiB measured;
// without the limit they take about 120 KiB of the 128 KiB offered).
func TestSockcost(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sockcost")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const n, size, writes, lowat = 50, 64 << 10, 2, 16 << 10
	peerCPU := strconv.Itoa(runtime.NumCPU() - 1)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"here", nil},
		{"peer process, polled", []string{"-peer-cpu", peerCPU, "-greet", "129"}},
		{"peer process, bare", []string{"-peer-cpu", peerCPU, "-peer-poll=false", "-greet", "129"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-json", "-n", strconv.Itoa(n), "-size", strconv.Itoa(size),
				"-writes", strconv.Itoa(writes), "-lowat", strconv.Itoa(lowat)}, tc.args...)
			out, err := exec.Command(bin, args...).Output()
			if err != nil {
				t.Fatalf("sockcost %v: %v", args, err)
			}
			var r result
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			per := r.Taken / n
			if most := int64(lowat + 32<<10); per < lowat || per > most {
				t.Errorf("%s: %d bytes taken per socket, want %d to %d", r.Peers, per, lowat, most)
			}
			if r.WriteMicros < 0 || r.Interrupts < 0 {
				t.Errorf("%s: write CPU %.0f µs, interrupts %d: a counter went backwards", r.Peers, r.WriteMicros, r.Interrupts)
			}
		})
	}
}
