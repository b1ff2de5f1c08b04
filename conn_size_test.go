package wsroom

import (
	"testing"
	"unsafe"
)

// TestConnSize keeps Conn within the 320-byte allocation size class: every
// idle connection pays for it, and the next class is 352 bytes.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 320 {
		t.Fatalf("Conn is %d bytes, want at most 320 (reorder fields to avoid padding)", n)
	}
}
