package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Redis Cluster mode: the broker reads the cluster's layout (CLUSTER
// SLOTS) from any node it knows, keeps one shard per master, and reads
// the layout again every topologyInterval, when a publish gets a MOVED
// reply, when a shard's connection fails, and when Redis unsubscribes a
// channel because its slot moved. A new layout keeps the shards of
// masters that stay, starts those of new masters, stops those of masters
// that left, and moves each wanted topic's subscription to its slot's
// master.

// topologyInterval is how often the cluster layout is read when nothing
// prompts it.
const topologyInterval = 5 * time.Second

// minTopologyGap is the least time between two readings of the layout.
const minTopologyGap = 100 * time.Millisecond

// crc16 is CRC-16/XMODEM, Redis Cluster's key hash.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

var (
	slotTagsOnce sync.Once
	slotTags     []string // slot → shortest tag Redis maps to that slot
)

// slotTag returns a short string whose Redis Cluster slot is slot, so that
// the channel prefix + "{" + tag + "}" + topic lives in that slot. The
// table is built on first use (all strings of 1–3 characters of
// [0-9a-zA-Z], about 240k CRCs, a few milliseconds).
func slotTag(slot int) string {
	slotTagsOnce.Do(func() {
		const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		tags := make([]string, numSlots)
		left := numSlots
		var gen func(prefix string, n int)
		gen = func(prefix string, n int) {
			if n == 0 {
				if s := crc16(prefix) % numSlots; tags[s] == "" {
					tags[s] = prefix
					left--
				}
				return
			}
			for i := 0; i < len(alphabet) && left > 0; i++ {
				gen(prefix+alphabet[i:i+1], n-1)
			}
		}
		for n := 1; left > 0; n++ {
			gen("", n)
		}
		slotTags = tags
	})
	return slotTags[slot]
}

// clusterLayout is what CLUSTER SLOTS says: the master of each slot.
type clusterLayout struct {
	masters []string // distinct master addresses, in order of their first slot
	slots   []uint16 // slot → index in masters, or noShard
}

// readLayout asks the nodes in addrs, in turn, for the cluster's layout.
func (b *Broker) readLayout(ctx context.Context, addrs []string) (*clusterLayout, error) {
	var errs []error
	for _, addr := range addrs {
		l, err := b.readLayoutFrom(ctx, addr)
		if err == nil {
			return l, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, errors.Join(errs...)
}

func (b *Broker) readLayoutFrom(ctx context.Context, addr string) (*clusterLayout, error) {
	nc, r, err := b.dial(ctx, addr, false)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, b.opts.DialTimeout)
	defer cancel()
	v, err := roundTrip(ctx, nc, r, []string{"CLUSTER", "SLOTS"})
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	return parseLayout(v[0], host)
}

// parseLayout reads a CLUSTER SLOTS reply: an array of [start, end,
// [host, port, id, …], replicas…]. An empty host means the host asked.
func parseLayout(v any, askedHost string) (*clusterLayout, error) {
	ranges, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: CLUSTER SLOTS reply is not an array", errProtocol)
	}
	l := &clusterLayout{slots: make([]uint16, numSlots)}
	for i := range l.slots {
		l.slots[i] = noShard
	}
	index := make(map[string]uint16)
	for _, rv := range ranges {
		e, ok := rv.([]any)
		if !ok || len(e) < 3 {
			return nil, fmt.Errorf("%w: bad CLUSTER SLOTS entry", errProtocol)
		}
		start, ok1 := e[0].(int64)
		end, ok2 := e[1].(int64)
		node, ok3 := e[2].([]any)
		if !ok1 || !ok2 || !ok3 || len(node) < 2 || start < 0 || end >= numSlots || start > end {
			return nil, fmt.Errorf("%w: bad CLUSTER SLOTS entry", errProtocol)
		}
		host, ok1 := node[0].(string)
		port, ok2 := node[1].(int64)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: bad CLUSTER SLOTS node", errProtocol)
		}
		if host == "" || host == "?" {
			host = askedHost
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		i, ok := index[addr]
		if !ok {
			i = uint16(len(l.masters))
			index[addr] = i
			l.masters = append(l.masters, addr)
		}
		for s := start; s <= end; s++ {
			l.slots[s] = i
		}
	}
	if len(l.masters) == 0 {
		return nil, errors.New("redisbroker: the cluster has no slots assigned")
	}
	return l, nil
}

// refreshTopology asks the topology goroutine to read the layout again.
func (b *Broker) refreshTopology() {
	if !b.opts.Cluster {
		return
	}
	select {
	case b.topoKick <- struct{}{}:
	default:
	}
}

// watchTopology reads the cluster layout at start, then whenever asked
// and every topologyInterval, and applies changes. It stops the shards of
// the last layout when the broker closes.
func (b *Broker) watchTopology() {
	defer b.wg.Done()
	tick := time.NewTicker(topologyInterval)
	defer tick.Stop()
	var last time.Time
	var backoff time.Duration
	for {
		if wait := minTopologyGap - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-b.ctx.Done():
				return
			}
		}
		last = time.Now()
		addrs := slices.Clone(b.opts.Addrs)
		if t := b.topo.Load(); t != nil {
			for _, s := range t.shards {
				if !slices.Contains(addrs, s.addr) {
					addrs = append(addrs, s.addr)
				}
			}
		}
		l, err := b.readLayout(b.ctx, addrs)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			b.logState("cluster", "layout", err)
			backoff = nextBackoff(backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-b.ctx.Done():
				return
			}
		}
		backoff = 0
		b.logState("cluster", "layout", nil)
		b.applyLayout(l)
		select {
		case <-b.topoKick:
		case <-tick.C:
		case <-b.ctx.Done():
			return
		}
	}
}

// applyLayout makes l the current topology, if it differs.
func (b *Broker) applyLayout(l *clusterLayout) {
	old := b.topo.Load()
	if old != nil && slices.Equal(old.slots, l.slots) && slices.EqualFunc(old.shards, l.masters, func(s *shard, a string) bool { return s.addr == a }) {
		return
	}
	byAddr := make(map[string]*shard)
	if old != nil {
		for _, s := range old.shards {
			byAddr[s.addr] = s
		}
	}
	t := &topology{slots: l.slots}
	var started []*shard
	for _, a := range l.masters {
		s := byAddr[a]
		if s == nil {
			s = newShard(b, a)
			started = append(started, s)
		}
		delete(byAddr, a)
		t.shards = append(t.shards, s)
	}
	b.setTopology(t)
	for _, s := range started {
		s.start()
	}
	for _, s := range byAddr { // masters that left
		s.stop()
	}
	b.opts.Logger.Info("redisbroker: cluster layout", "masters", strings.Join(l.masters, ","))
}

// setTopology installs t and moves every wanted topic to its shard in t.
func (b *Broker) setTopology(t *topology) {
	b.wantMu.Lock()
	defer b.wantMu.Unlock()
	b.topo.Store(t)
	want := make(map[*shard]map[string]bool, len(t.shards))
	for _, s := range t.shards {
		want[s] = make(map[string]bool)
	}
	for topic := range b.want {
		if s, _ := t.route(topic); s != nil {
			want[s][topic] = true
		}
	}
	for s, w := range want {
		s.sub.replace(w)
	}
	b.topoOnce.Do(func() { close(b.topoReady) })
}
