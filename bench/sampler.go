package main

import (
	"runtime/metrics"
	"sync"
	"time"

	"github.com/wsroom/wsroom"
	"github.com/wsroom/wsroom/internal/sysstat"
)

// socketsEnv makes the server process record its accepted sockets (in a
// sysstat.SocketList) so that the sampler can read their kernel send-side
// memory.
// Only the stalled scenario sets it: the other scenarios run unchanged.
const socketsEnv = "WSROOM_BENCH_SOCKETS"

// roomsEnv=N puts every connection of the wsroom server in N rooms (see
// wsroomServer).
const roomsEnv = "WSROOM_BENCH_ROOMS"

// overOutq is what a stalled socket may hold at most with wsroom's
// defaults (TCP_NOTSENT_LOWAT bounds what waits unsent; the 4 KiB
// receiver's window and one write's overshoot come on top): the sampler
// counts the sockets above it. A reader's socket may hold more once its
// unsent limit is lifted.
const overOutq = 2 * wsroom.DefaultSendBufferUnsent

// memSample is one sample of the server's memory. The per-socket kernel
// fields are -1 in samples taken between kernel samples, and in every
// sample when kernel sampling is off (it costs a syscall pair per socket).
type memSample struct {
	T         int64 `json:"t"`      // wall clock, UnixNano
	Heap      int64 `json:"heap"`   // Go heap objects, live and not yet swept (HeapAlloc)
	Live      int64 `json:"live"`   // live heap marked by the last GC
	RSS       int64 `json:"rss"`    // VmRSS, bytes
	Kicked    int64 `json:"kicked"` // the server's slow-consumer closes so far
	Sockets   int   `json:"socks"`  // open sockets sampled
	Outq      int64 `json:"outq"`   // sum of SIOCOUTQ over the server's sockets
	Queued    int64 `json:"wq"`     // sum of SK_MEMINFO_WMEM_QUEUED (ss -m "w")
	MaxOutq   int64 `json:"maxoutq"`
	MaxQueued int64 `json:"maxwq"`
	MaxSndbuf int64 `json:"maxsndbuf"`
	Over      int   `json:"over"`     // sockets holding more than overOutq unacknowledged bytes
	TCPPages  int64 `json:"tcppages"` // /proc/net/sockstat TCP mem, machine-wide, pages
}

// sampler samples the server process's memory from inside at a fixed
// interval (per-socket kernel figures every kevery, none if kevery is 0)
// until stopped: the heap peaks
// between two control requests, so asking from outside would miss it.
type sampler struct {
	t     target
	socks *sysstat.SocketList // nil: no kernel figures

	mu      sync.Mutex
	quit    chan struct{}
	done    chan struct{}
	samples []memSample
}

func (s *sampler) start(every, kevery time.Duration) {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quit, s.done, s.samples = make(chan struct{}), make(chan struct{}), nil
	go s.run(s.quit, s.done, every, kevery)
}

func (s *sampler) run(quit, done chan struct{}, every, kevery time.Duration) {
	defer close(done)
	ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastK time.Time
	for stopping := false; ; {
		now := time.Now()
		metrics.Read(ms)
		kicked, _, _ := s.t.counters()
		rss, _ := sysstat.RSS() // 0 if unknown
		smp := memSample{T: now.UnixNano(), Heap: int64(ms[0].Value.Uint64()), Live: int64(ms[1].Value.Uint64()),
			RSS: int64(rss), Kicked: kicked, Outq: -1, Queued: -1, MaxOutq: -1, MaxQueued: -1, MaxSndbuf: -1, TCPPages: -1}
		smp.TCPPages = sysstat.TCPMemPages() // one read of /proc/net/sockstat
		if s.socks != nil && kevery > 0 && (stopping || now.Sub(lastK) >= kevery) {
			lastK = now
			k := s.socks.SendMem()
			smp.Sockets, smp.Outq, smp.Queued, smp.MaxOutq, smp.MaxQueued, smp.MaxSndbuf, smp.Over = k.Sockets, k.Outq, k.Queued, k.MaxOutq, k.MaxQueued, k.MaxSndbuf, k.Over
		}
		s.mu.Lock()
		s.samples = append(s.samples, smp)
		s.mu.Unlock()
		if stopping {
			return
		}
		select {
		case <-quit:
			stopping = true // one last sample, kernel figures included
		case <-tick.C:
		}
	}
}

// stop ends sampling (if running) and returns the samples.
func (s *sampler) stop() []memSample {
	s.mu.Lock()
	quit, done := s.quit, s.done
	s.quit = nil
	s.mu.Unlock()
	if quit != nil {
		close(quit)
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}
