package conformance

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// limitCases is group 9: large messages, many frames, small chops and
// round-trip times, against the Large endpoint, one case at a time.
func limitCases() []Case {
	var cs []Case
	add := func(id, desc string, steps ...Step) {
		c := newCase(id, desc, steps...)
		c.Endpoint, c.Serial = Large, true
		cs = append(cs, c)
	}
	kinds := []struct {
		op   byte
		name string
		fill string
	}{{OpText, "text", autobahnText}, {OpBinary, "binary", "\xfe"}}
	for k, kind := range kinds {
		for i, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20} {
			p := repeat(kind.fill, n)
			add(fmt.Sprintf("9.%d.%d", 1+k, i+1), fmt.Sprintf("%s message of %s in one frame", kind.name, size(n)),
				Send(Whole, Frame{Fin: true, Op: kind.op, Payload: p}), ExpectMessage(kind.op, p))
		}
		p4 := repeat(kind.fill, 4<<20)
		for i, n := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
			add(fmt.Sprintf("9.%d.%d", 3+k, i+1), fmt.Sprintf("4 MiB %s message in frames of %s", kind.name, size(n)),
				Send(Whole, Fragments(kind.op, p4, n)...), ExpectMessage(kind.op, p4))
		}
		p1 := repeat(kind.fill, 1<<20)
		for i, n := range []int{64, 128, 256, 512, 1024, 2048} {
			add(fmt.Sprintf("9.%d.%d", 5+k, i+1), fmt.Sprintf("1 MiB %s message in %d-byte TCP chops", kind.name, n),
				Send(Chops(n, 0), Frame{Fin: true, Op: kind.op, Payload: p1}), ExpectMessage(kind.op, p1))
		}
		for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
			add(fmt.Sprintf("9.%d.%d", 7+k, i+1), fmt.Sprintf("1000 %s messages of %d bytes, one round trip each", kind.name, n),
				RoundTrips(kind.op, repeat(kind.fill, n), 1000))
		}
	}
	return cs
}

// RoundTrips sends p n times, each after the previous echo arrived, and
// records the mean round-trip time as the case's note.
func RoundTrips(op byte, p []byte, n int) Step {
	return NewStep(fmt.Sprintf("%d round trips of %d bytes", n, len(p)), func(s *Session) error {
		start := time.Now()
		for i := range n {
			s.Send(Whole, Frame{Fin: true, Op: op, Payload: p})
			m, err := s.ReadMessage(s.Timeout(0))
			if err != nil {
				return s.Fail("round trip %d: %v", i+1, err)
			}
			if m.Op != op || !bytes.Equal(m.Data, p) {
				return s.Fail("round trip %d: got %s", i+1, describeMessage(m, p))
			}
		}
		s.Info(fmt.Sprintf("mean round trip %v", (time.Since(start) / time.Duration(n)).Round(time.Microsecond)))
		return nil
	})
}

func size(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}
