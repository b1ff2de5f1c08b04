package redisbroker

import (
	"context"
	"sync"
)

// How topics map to Redis servers.
//
// Every topic has a 64-bit hash (FNV-1a, then a mixing step). Without
// Cluster, a topic lives on shard jump(hash, len(Addrs)) (Lamping and
// Veach's jump consistent hash: all nodes agree given the same list, and
// appending a server moves only the topics the new one takes). In Cluster
// mode, a topic's slot is hash mod 16384, and its channel carries a hash
// tag that Redis maps to exactly that slot (see slotTag), so topics spread
// evenly over the slots whatever their names (a room name may itself hold
// braces, which would otherwise pick the slot) and the slot is known
// without asking Redis.

// topicHash returns the topic's 64-bit hash, the same in every process.
func topicHash(topic string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(topic); i++ {
		h ^= uint64(topic[i])
		h *= 1099511628211
	}
	// splitmix64's finalizer: every output bit depends on every input bit.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// jump returns the bucket in [0, n) of key (jump consistent hash).
func jump(key uint64, n int) int {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// numSlots is the number of Redis Cluster hash slots.
const numSlots = 16384

// noShard marks a slot that no master serves.
const noShard = 0xffff

// topology is the current set of shards and how topics map to them. It
// is replaced as a whole (Broker.topo) when a cluster's layout changes.
type topology struct {
	shards []*shard
	slots  []uint16 // Cluster mode: slot → index in shards (or noShard); nil otherwise
}

// route returns the shard of topic (nil if its slot has no master) and
// the hash tag of its channel ("" without Cluster).
func (t *topology) route(topic string) (*shard, string) {
	h := topicHash(topic)
	if t.slots == nil {
		return t.shards[jump(h, len(t.shards))], ""
	}
	slot := h % numSlots
	i := t.slots[slot]
	if i == noShard {
		return nil, ""
	}
	return t.shards[i], slotTag(int(slot))
}

// shard is one Redis server (a master, in Cluster mode): a connection
// that publishes and one that subscribes, each with its own goroutines.
type shard struct {
	b    *Broker
	addr string
	pub  publisher
	sub  subscriber

	ctx    context.Context // cancelled to stop this shard (Close, or a master gone from the cluster)
	cancel context.CancelFunc
	wg     sync.WaitGroup // the publisher's and subscriber's goroutines
}

func newShard(b *Broker, addr string) *shard {
	s := &shard{b: b, addr: addr}
	s.ctx, s.cancel = context.WithCancel(b.ctx)
	s.pub.init(s)
	s.sub.init(s)
	return s
}

// start starts the shard's goroutines; stop joins them.
func (s *shard) start() {
	s.wg.Add(2)
	go s.pub.run()
	go s.sub.run()
}

// stop stops the shard: waiting publishes fail with err, and its
// goroutines are joined.
func (s *shard) stop() {
	s.cancel()
	s.wg.Wait()
}

// publishCmd returns the command that publishes on this broker's channels.
func (b *Broker) publishCmd() string {
	if b.opts.Cluster {
		return "SPUBLISH"
	}
	return "PUBLISH"
}
