//go:build linux

package wsroom

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWriteOpPartial writes more than a socket takes without blocking:
// what write reports as written and what its cursor has left must add up
// to the frames, in order, with the cut in the middle of some frame.
func TestWriteOpPartial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, _ := ln.Accept()
		accepted <- nc
	}()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sv := <-accepted
	if sv == nil {
		t.Fatal("accept failed")
	}
	defer sv.Close()
	sv.(*net.TCPConn).SetWriteBuffer(8 << 10)
	cl.(*net.TCPConn).SetReadBuffer(8 << 10)

	// 3000 frames of 997 bytes (more than one writev's maxIovec and far
	// more than the socket buffers), each naming its index.
	q := new(frameQueue)
	var all []byte
	for i := range 3000 {
		f := bytes.Repeat([]byte(strconv.Itoa(i)+","), 997)[:997]
		q.push(&f, false)
		all = append(all, f...)
	}
	rc, err := sv.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	op := writeOps.Get().(*writeOp)
	op.cur = cursor{ch: q.head}
	if err := rc.Write(op.fn); err != nil {
		t.Fatal(err)
	}
	n, cur, werr := op.n, op.cur, op.err
	op.reset()
	if werr != unix.EAGAIN || n == 0 || n >= int64(len(all)) {
		t.Fatalf("wrote %d of %d bytes, err %v: want a partial write and EAGAIN", n, len(all), werr)
	}
	if got := rest(cur); !bytes.Equal(got, all[n:]) {
		t.Fatalf("the cursor leaves %d bytes, not the %d bytes after the written ones", len(got), len(all)-int(n))
	}
	if cur.off == 0 {
		t.Logf("the socket took whole frames only (%d bytes)", n)
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(cl, got); err != nil || !bytes.Equal(got, all[:n]) {
		t.Fatalf("the peer read %v, not the first %d bytes", err, n)
	}
}
