//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wsroom/wsroom"
)

// TestStalledMemory checks docs/memory.md's bounds with the case:
// 2,000 connections that never read (4 KiB receive buffers), then 8,000
// broadcasts of 1 KiB back to back, with the default Options.
//
// The program is built without the race detector and run in its own
// processes, so the heap it reports is the library's, as users see it.
func TestStalledMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the measuring program (a few seconds)")
	}
	bin := filepath.Join(t.TempDir(), "stalledmem")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const n, msgs, size = 2000, 8000, 1024
	// -gc-every: the live heap that counts is what forced collections find
	// (see burstResult.PeakForced); one every 100 broadcasts.
	cmd := exec.Command(bin, "-json", "-n", "2000", "-msgs", "8000", "-size", "1024", "-gc-every", "100")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stalledmem: %v\n%s", err, stderr.Bytes())
	}
	var r Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("stalledmem output %q: %v", out, err)
	}

	// Every stalled connection (and the first one, stalled too) was
	// closed as a slow consumer once its own bound was reached.
	if kicked := r.After.Kicked - r.Before.Kicked; kicked != n+1 {
		t.Errorf("%d slow-consumer closes, want %d", kicked, n+1)
	}

	// Kernel: a peer that reads nothing (its window closed) holds what its
	// 4 KiB receive buffer took plus at most SendBufferUnsent not yet
	// sent and one write's overshoot: 19–21 KiB measured; without
	// SendBufferUnsent it was SendBuffer, doubled by Linux: 130 KiB.
	if limit := int64(2 * wsroom.DefaultSendBufferUnsent); r.After.MaxQueued > limit {
		t.Errorf("a stalled socket's write memory is %d KiB, above 2 × SendBufferUnsent (%d KiB)", r.After.MaxQueued>>10, limit>>10)
	}

	// Heap, broadcast workload (docs/memory.md): the distinct frames queued
	// plus, per connection, 8 bytes per queued reference (in 1 KiB chunks)
	// and a fixed part. A stalled connection queues at most what
	// SendQueueBytes counts: frameCost per message.
	frameCost := cap(slices.Grow([]byte(nil), size+4)) + 32
	perConnEntries := min(wsroom.DefaultSendQueueBytes/frameCost, wsroom.DefaultSendQueueMessages)
	frames := int64(msgs * (cap(slices.Grow([]byte(nil), size+4)) + 24 + 200)) // each broadcast's frame, reference and prepared message
	perConn := int64(perConnEntries*8 + 1<<10 + fixedPerConn)
	bound := frames + int64(n)*perConn
	t.Logf("peak live heap %d MiB by forced collections, %d MiB by the others (bound %d MiB: %d MiB of frames + %d × %d KiB; parked, see below); kernel %d KiB per socket at most; %d slow-consumer closes",
		r.Burst.PeakForced>>20, r.Burst.PeakLive>>20, bound>>20, frames>>20, n, perConn>>10, r.After.MaxQueued>>10, r.After.Kicked-r.Before.Kicked)
	if r.Burst.PeakForced == 0 {
		t.Fatal("no forced collection ran during the burst")
	}
	if int64(r.Burst.PeakForced) > bound {
		t.Errorf("peak live heap %d MiB is above the documented bound %d MiB", r.Burst.PeakForced>>20, bound>>20)
	}
	// The stalled connections are in one room, so they park once their
	// queue reaches 64 KiB (docs/fairness.md): each then holds at most
	// about 128 KiB worth of references, and the room's backlog 32 bytes
	// per entry it keeps (one form), at most a bound's worth of entries.
	parkedEntries := min(2*(64<<10)/frameCost+2, perConnEntries)
	parkedBound := frames + int64(n)*int64(parkedEntries*8+1<<10+fixedPerConn) + int64(perConnEntries*32)
	if int64(r.Burst.PeakForced) > parkedBound {
		t.Errorf("peak live heap %d MiB is above the documented bound for parked connections, %d MiB", r.Burst.PeakForced>>20, parkedBound>>20)
	}
	// Any workload: at most SendQueueBytes and the fixed part each.
	if worst := int64(n) * int64(wsroom.DefaultSendQueueBytes+fixedPerConn); int64(r.Burst.PeakLive) > worst {
		t.Errorf("peak live heap %d MiB is above the worst case %d MiB", r.Burst.PeakLive>>20, worst>>20)
	}
}

// fixedPerConn is docs/memory.md's fixed part of a connection that a
// broadcast has reached: its Conn and index entries, a blocked writer's
// gathering buffer (3 KiB), the iovec array the standard library keeps
// for the socket's writev (up to 2 KiB here) and the writer's task, a
// closing reader's 512-byte buffer, the socket's runtime structures, and
// the chunks of a dropped queue that wait in their pool for the next
// collections.
const fixedPerConn = 12 << 10
