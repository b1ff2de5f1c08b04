package redisbroker

import (
	"strconv"
	"testing"
)

func TestCRC16(t *testing.T) {
	// CRC-16/XMODEM's check value, and Redis's CLUSTER KEYSLOT foo.
	if got := crc16("123456789"); got != 0x31c3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	if got := crc16("foo") % numSlots; got != 12182 {
		t.Errorf("slot of foo = %d, want 12182", got)
	}
}

func TestSlotTagsCoverEverySlot(t *testing.T) {
	for slot := range numSlots {
		tag := slotTag(slot)
		if tag == "" || len(tag) > 3 || int(crc16(tag)%numSlots) != slot {
			t.Fatalf("slot %d: tag %q (slot %d)", slot, tag, crc16(tag)%numSlots)
		}
	}
}

// TestSpread checks that room topics spread evenly over servers and
// slots, and that adding a server moves only the topics it takes.
func TestSpread(t *testing.T) {
	const n = 10000
	for _, shards := range []int{3, 4} {
		count := make([]int, shards)
		for i := range n {
			count[jump(topicHash("room:r"+strconv.Itoa(i)), shards)]++
		}
		for s, c := range count {
			if even := n / shards; c < even*9/10 || c > even*11/10 {
				t.Errorf("%d shards: shard %d has %d of %d topics", shards, s, c, n)
			}
		}
		t.Logf("%d room topics over %d shards: %v", n, shards, count)
	}
	moved := 0
	for i := range n {
		h := topicHash("room:r" + strconv.Itoa(i))
		from, to := jump(h, 4), jump(h, 5)
		if from != to {
			if to != 4 {
				t.Fatalf("topic %d moved from shard %d to %d, not to the new one", i, from, to)
			}
			moved++
		}
	}
	if moved < n/5*9/10 || moved > n/5*11/10 {
		t.Errorf("adding a fifth shard moved %d of %d topics, want about a fifth", moved, n)
	}
	slots := make([]int, numSlots)
	for i := range 100 * numSlots {
		slots[topicHash("user:"+strconv.Itoa(i))%numSlots]++
	}
	lo, hi := 100, 100
	for _, c := range slots {
		lo, hi = min(lo, c), max(hi, c)
	}
	if lo < 50 || hi > 150 {
		t.Errorf("%d user topics over %d slots: %d to %d per slot, want about 100", 100*numSlots, numSlots, lo, hi)
	}
}
