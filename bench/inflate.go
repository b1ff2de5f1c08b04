package main

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"sync"
)

// inflater is a pooled permessage-deflate decompressor for the load
// generator's clients: a flate reader reset for each message, its input
// (the payload plus the sync-flush tail the sender removed) and an output
// buffer one byte longer than a JSON message, so that anything longer is
// caught without reading it all.
type inflater struct {
	in  []byte
	src bytes.Reader
	fr  io.ReadCloser
	out [jsonSize + 1]byte
}

var inflaters = sync.Pool{New: func() any {
	f := &inflater{}
	f.fr = flate.NewReader(&f.src)
	return f
}}

func getInflater() *inflater  { return inflaters.Get().(*inflater) }
func putInflater(f *inflater) { inflaters.Put(f) }

// inflate returns the message compressed in p (RFC 7692 §7.2.2: append
// 0x00 0x00 0xff 0xff and inflate), valid until f is reused, or nil if p
// is not valid deflate data. At most jsonSize+1 bytes are produced.
func (f *inflater) inflate(p []byte) []byte {
	f.in = append(append(f.in[:0], p...), 0x00, 0x00, 0xff, 0xff)
	f.src.Reset(f.in)
	if err := f.fr.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil
	}
	n, err := io.ReadFull(f.fr, f.out[:])
	// The stream ends with the sync flush (no final block): flate reports
	// it as an unexpected EOF. A full buffer (err == nil) is too long.
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil
	}
	return f.out[:n]
}
