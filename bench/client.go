package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsroom/wsroom/internal/rawws"
	"github.com/wsroom/wsroom/internal/sysstat"
)

// loader is the load generator: n raw WebSocket client connections, each
// read by its own goroutine with a small bufio.Reader and a hand-rolled
// frame parser (server frames are unmasked). Connection i belongs to user
// "u<i/2>", so every user holds two connections.
type loader struct {
	addr    string // server host:port
	sources int    // number of 127.0.0.x source addresses to spread over
	opts    loadOpts

	mu     sync.Mutex
	conns  []net.Conn
	counts []*atomic.Int64 // messages received, by connection index
	wg     sync.WaitGroup

	recv   atomic.Int64 // data messages received (a merged frame counts each message)
	frames atomic.Int64 // data frames received
	merged atomic.Int64 // frames carrying more than one message
	closed atomic.Int64 // connections the server closed
	bad    atomic.Int64 // frames whose size is not a multiple of the payload, or JSON messages that failed a check

	wire       atomic.Int64 // bytes of data frames received (headers included)
	negotiated atomic.Int64 // connections whose handshake answer accepted permessage-deflate
	compressed atomic.Int64 // messages received compressed (RSV1)
	verified   atomic.Int64 // JSON messages whose length and CRC-32 were checked

	target atomic.Int64 // waitRecv's goal; math.MaxInt64 when none
	hit    chan time.Time

	latOn atomic.Bool
	lat   histogram

	// With opts.seq (the stalled scenario): messages that did not carry
	// the next sequence number of their connection, the wall clock
	// (UnixNano) of the latest receipt, and the close codes the server
	// sent, by code.
	outOfOrder atomic.Int64
	lastRecv   atomic.Int64
	codesMu    sync.Mutex
	codes      map[int]int
}

// loadOpts are the clients' settings for the compression scenario; the
// zero value is the plain clients of every other scenario.
type loadOpts struct {
	deflate      bool // offer permessage-deflate (both no_context_takeover parameters)
	json         bool // expect the 4 KiB JSON messages instead of 64-byte ones
	inflateEvery int  // check (inflating if compressed) every n-th JSON message of each connection
	seq          int  // expect messages of this size carrying a sequence number (the stalled scenario); 0: the 64-byte ones
	readBuf      int  // size of each connection's bufio.Reader; 0: 2 KiB
}

// deflateOffer is the clients' permessage-deflate offer: both
// no-context-takeover parameters, which wsroom and gorilla put in their
// answers whatever the offer (browsers offer "permessage-deflate;
// client_max_window_bits").
const deflateOffer = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"

func newLoader(addr string, sources int, opts loadOpts) *loader {
	opts.inflateEvery = max(opts.inflateEvery, 1)
	l := &loader{addr: addr, sources: max(sources, 1), opts: opts, hit: make(chan time.Time, 1)}
	l.target.Store(math.MaxInt64)
	return l
}

// userOf is the user ID of connection i.
func userOf(i int) string { return fmt.Sprintf("u%d", i/2) }

// connect opens connections first..first+n-1 with `parallel` concurrent
// dialers and returns how long the handshakes took.
func (l *loader) connect(first, n, parallel int) (time.Duration, error) {
	start := time.Now()
	err := inParallel(first, n, parallel, l.dial)
	return time.Since(start), err
}

// inParallel calls f(i) for i in first..first+n-1 from `parallel`
// goroutines and returns the first error; a goroutine stops at its first
// error.
func inParallel(first, n, parallel int, f func(i int) error) error {
	parallel = max(parallel, 1)
	var next atomic.Int64
	next.Store(int64(first))
	errc := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= first+n {
					return
				}
				if err := f(i); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func (l *loader) dial(i int) error {
	src := net.IPv4(127, 0, 0, byte(2+i%l.sources))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Control: sysstat.BindNoPort, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("dial %d from %s: %w", i, src, err)
	}
	br, deflate, err := upgrade(nc, l.addr, userOf(i), l.opts.deflate, cmp.Or(l.opts.readBuf, 2048))
	if err != nil {
		nc.Close()
		return fmt.Errorf("handshake %d: %w", i, err)
	}
	if deflate {
		l.negotiated.Add(1)
	}
	count := new(atomic.Int64)
	l.mu.Lock()
	l.conns = append(l.conns, nc)
	if len(l.counts) <= i {
		l.counts = append(l.counts, make([]*atomic.Int64, i+1-len(l.counts))...)
	}
	l.counts[i] = count
	l.mu.Unlock()
	l.wg.Go(func() { l.read(nc, br, count, deflate) })
	return nil
}

// upgrade sends a WebSocket handshake for user on nc (offering
// permessage-deflate if asked) and reads the answer through a bufio.Reader
// of bufSize bytes, which it returns with whatever followed the answer.
// deflate says whether the server accepted the extension.
func upgrade(nc net.Conn, addr, user string, offerDeflate bool, bufSize int) (br *bufio.Reader, deflate bool, err error) {
	extra := ""
	if offerDeflate {
		extra = "Sec-WebSocket-Extensions: " + deflateOffer + "\r\n"
	}
	br, header, err := rawws.Upgrade(nc, addr, "/ws?u="+user, extra, bufSize)
	if err != nil {
		return nil, false, err
	}
	return br, strings.HasPrefix(rawws.Value(header, "Sec-WebSocket-Extensions"), "permessage-deflate"), nil
}

// read parses frames until the connection ends, counting data messages
// and answering pings (the servers drop peers that never pong). deflate
// says whether the connection negotiated permessage-deflate.
func (l *loader) read(nc net.Conn, br *bufio.Reader, count *atomic.Int64, deflate bool) {
	var hdr [8]byte
	var scratch, msg []byte
	var msgZ, msgText bool // the fragmented message in msg is compressed, is text
	defer l.closed.Add(1)
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		op, fin, z := hdr[0]&0x0f, hdr[0]&0x80 != 0, hdr[0]&0x40 != 0
		n, hlen := int(hdr[1]&0x7f), 2
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return
			}
			n, hlen = int(binary.BigEndian.Uint16(hdr[:2])), 4
		case 127:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return
			}
			n, hlen = int(binary.BigEndian.Uint64(hdr[:8])), 10
		}
		if z && (!deflate || op == 0x0 || op >= 0x8) {
			l.bad.Add(1) // RSV1 without the extension, or on a continuation or control frame
			return
		}
		if n > 1<<20 || len(msg) > 1<<20 {
			return
		}
		var p []byte
		if n <= br.Size() {
			b, err := br.Peek(n)
			if err != nil {
				return
			}
			p = b
		} else {
			if cap(scratch) < n {
				scratch = make([]byte, n)
			}
			p = scratch[:n]
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
		}
		if op < 0x8 {
			l.wire.Add(int64(hlen + n))
		}
		switch op {
		case 0x1, 0x2:
			if fin {
				l.onData(p, op == 0x1, z, count)
			} else { // gorilla fragments a message larger than its write buffer
				msg, msgText, msgZ = append(msg[:0], p...), op == 0x1, z
			}
		case 0x0:
			if msg = append(msg, p...); fin {
				l.onData(msg, msgText, msgZ, count)
			}
		case 0x8:
			l.closeCode(p)
			return
		case 0x9:
			if err := writePong(nc, p); err != nil {
				return
			}
		}
		if n <= br.Size() {
			_, _ = br.Discard(n)
		}
	}
}

// onData counts one data message (text: a text message; z: it was
// compressed). A frame of k messages merged with '\n' separators
// (gorilla's chat example) is 65k-1 bytes long.
func (l *loader) onData(p []byte, text, z bool, count *atomic.Int64) {
	if l.opts.seq > 0 {
		l.onSeq(p, text || z, count)
		return
	}
	if l.opts.json {
		if !text {
			l.bad.Add(1) // the JSON goes out as text
			return
		}
		l.onJSON(p, z, count)
		return
	}
	if z {
		l.bad.Add(1) // no server compresses 64-byte messages
		return
	}
	k := 1
	if len(p) != payloadSize {
		if (len(p)+1)%(payloadSize+1) != 0 {
			l.bad.Add(1)
			return
		}
		k = (len(p) + 1) / (payloadSize + 1)
		l.merged.Add(1)
	}
	l.frames.Add(1)
	if l.latOn.Load() {
		now := time.Now().UnixNano()
		for j := range k {
			ts := int64(binary.LittleEndian.Uint64(p[j*(payloadSize+1):]))
			l.lat.record(now - ts)
		}
	}
	l.count(k, count)
}

// onJSON checks and counts one message of the compression scenario. Every
// message counts; every opts.inflateEvery-th of each connection (the first
// included) is inflated if compressed and checked for its length and
// CRC-32. A message that fails is not counted: the run then stalls and
// reports it (as "malformed").
func (l *loader) onJSON(p []byte, z bool, count *atomic.Int64) {
	if z {
		l.compressed.Add(1)
	}
	if count.Load()%int64(l.opts.inflateEvery) == 0 {
		msg := p
		if z {
			f := getInflater()
			defer putInflater(f)
			msg = f.inflate(p)
		}
		if !checkJSON(msg) {
			l.bad.Add(1)
			return
		}
		l.verified.Add(1)
	} else if !z && len(p) != jsonSize {
		l.bad.Add(1)
		return
	}
	l.count(1, count)
}

// onSeq counts one message of the stalled scenario, which must be
// opts.seq bytes, binary and uncompressed (bad says it is not), and whose
// sequence number (bytes 8–15, little endian: its index in the publish
// call) must be the number of messages this connection received before
// it; it counts those that are not as out of order.
func (l *loader) onSeq(p []byte, bad bool, count *atomic.Int64) {
	if bad || len(p) != l.opts.seq || len(p) < seqOffset+8 {
		l.bad.Add(1)
		return
	}
	if int64(binary.LittleEndian.Uint64(p[seqOffset:])) != count.Load() {
		l.outOfOrder.Add(1)
	}
	now := time.Now().UnixNano()
	for last := l.lastRecv.Load(); now > last && !l.lastRecv.CompareAndSwap(last, now); last = l.lastRecv.Load() {
	}
	l.frames.Add(1)
	l.count(1, count)
}

// closeCode records the code of a close frame the server sent (1005 when
// it carries none).
func (l *loader) closeCode(p []byte) {
	code := 1005
	if len(p) >= 2 {
		code = int(binary.BigEndian.Uint16(p))
	}
	l.codesMu.Lock()
	if l.codes == nil {
		l.codes = map[int]int{}
	}
	l.codes[code]++
	l.codesMu.Unlock()
}

// closeCodes returns how many connections the server closed with each
// code so far.
func (l *loader) closeCodes() map[int]int {
	l.codesMu.Lock()
	defer l.codesMu.Unlock()
	out := make(map[int]int, len(l.codes))
	for c, n := range l.codes {
		out[c] = n
	}
	return out
}

// count adds k messages received by one connection and signals waitRecv
// when its goal is reached.
func (l *loader) count(k int, count *atomic.Int64) {
	count.Add(int64(k))
	if n := l.recv.Add(int64(k)); n >= l.target.Load() {
		if l.target.Swap(math.MaxInt64) != math.MaxInt64 {
			l.hit <- time.Now()
		}
	}
}

// writePong answers a ping with a masked pong (zero mask key).
func writePong(nc net.Conn, payload []byte) error {
	f := make([]byte, 0, 6+len(payload))
	f = append(f, 0x8a, 0x80|byte(len(payload)), 0, 0, 0, 0)
	f = append(f, payload...)
	_, err := nc.Write(f)
	return err
}

var errStalled = errors.New("no progress")

// waitRecv waits until at least want messages have been received and
// returns the time the last of them arrived. It gives up when the count
// makes no progress for stall.
func (l *loader) waitRecv(want int64, stall time.Duration) (time.Time, error) {
	l.target.Store(want)
	if l.recv.Load() >= want && l.target.Swap(math.MaxInt64) == want {
		return time.Now(), nil
	}
	last := l.recv.Load()
	tick := time.NewTicker(stall)
	defer tick.Stop()
	for {
		select {
		case t := <-l.hit:
			return t, nil
		case <-tick.C:
			if now := l.recv.Load(); now > last {
				last = now
				continue
			}
			if l.target.Swap(math.MaxInt64) == math.MaxInt64 {
				return <-l.hit, nil // the goal was reached just now
			}
			return time.Now(), fmt.Errorf("%w: %d of %d messages", errStalled, l.recv.Load(), want)
		}
	}
}

// waitEach waits until every connection listed in idx (all when idx is
// nil) has received at least level[i] messages, where level[i] is
// base[i]+add; it polls. It gives up when the slowest makes no progress
// for stall.
func (l *loader) waitEach(idx []int, base []int64, add int64, stall time.Duration) error {
	l.mu.Lock()
	counts := l.counts
	l.mu.Unlock()
	if idx == nil {
		idx = make([]int, len(counts))
		for i := range idx {
			idx[i] = i
		}
	}
	lastMin, lastProgress := int64(-1), time.Now()
	for {
		done, min := true, int64(math.MaxInt64)
		for j, i := range idx {
			behind := counts[i].Load() - base[j] - add
			if behind < 0 {
				done = false
			}
			min = minInt(min, behind)
		}
		if done {
			return nil
		}
		if min > lastMin {
			lastMin, lastProgress = min, time.Now()
		} else if time.Since(lastProgress) > stall {
			return fmt.Errorf("%w: a connection is %d messages behind", errStalled, -min)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// snapshot returns the current counts of the listed connections (all when
// idx is nil).
func (l *loader) snapshot(idx []int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if idx == nil {
		out := make([]int64, len(l.counts))
		for i, c := range l.counts {
			out[i] = c.Load()
		}
		return out
	}
	out := make([]int64, len(idx))
	for j, i := range idx {
		out[j] = l.counts[i].Load()
	}
	return out
}

func minInt(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

// close closes every connection and waits for the readers.
func (l *loader) close() {
	l.mu.Lock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	l.conns = nil
	l.mu.Unlock()
	l.wg.Wait()
}

// waitServer polls the server until it has registered n connections.
func waitServer(ctx context.Context, ctl *control, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := ctl.stats(ctx, false)
		if err != nil {
			return err
		}
		if st.Conns >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server registered %d of %d connections", st.Conns, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
