package redisbroker

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/wsroom/wsroom"
)

// Room history in Redis (wsroom.HistoryBroker).
//
// Each topic with history has two keys on the topic's server (in Cluster
// mode in its slot: they carry the channel's hash tag):
//
//	h:l:<topic>   a list of the messages, oldest first: each the time it was added (13 decimal digits, Unix ms) then its payload
//	h:m:<topic>   a hash: e epoch, n last offset, b payload bytes kept, o time of the oldest entry (ms), t TTL (ms)
//
// The list's entries are consecutive messages, so the entry at index i
// has offset n - LLEN + 1 + i: a read from an offset is one LRANGE, and
// no entry stores its offset. A list rather than a stream: Redis 7
// allocates each stream node 4 KiB up front (stream-node-max-bytes) and a
// node holds at most 4 KiB, so 1 KiB messages cost 1.3 KiB each in a
// stream and 1.1 KiB in a list, 2 KiB ones 3 KiB and 2.4 KiB (README.md
// has the measurements).
//
// One script appends, trims and publishes, atomically: it starts a new
// epoch when the history was lost (the hash is missing: expired, evicted,
// or a Redis restarted without persistence; or the list is missing while
// the hash says it holds messages), appends the message at the next
// offset, drops the oldest entries beyond limits.Messages and
// limits.Bytes and those older than limits.TTL, sets both keys to expire
// TTL after this message, and publishes the positioned message (see
// frame.go) on the topic's channel. Since Redis runs scripts one at a
// time, every subscriber receives a topic's messages in offset order.

// histPublish appends a message. KEYS: list, meta, channel. ARGV: most
// messages (0: no bound), most bytes, TTL in ms, an epoch to start if
// the history was lost, the publish command, the payload.
var histPublish = newScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local list, meta = KEYS[1], KEYS[2]
local maxn, maxb, ttl, payload = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[6]
local m = redis.call('HMGET', meta, 'e', 'n', 'b', 'o')
local epoch, last, bytes, oldest = m[1], tonumber(m[2] or '0'), tonumber(m[3] or '0'), tonumber(m[4] or '0')
local entry = string.format('%013d', now) .. payload
local n = 0
if epoch and last > 0 then
  n = redis.call('RPUSHX', list, entry)
  if n == 0 then epoch = nil end -- the list was lost
end
if not epoch then -- the history was lost: a new epoch
  redis.call('DEL', list)
  epoch, last, bytes = ARGV[4], 0, 0
end
if n == 0 then n = redis.call('RPUSH', list, entry) end
local off = last + 1
bytes = bytes + #payload
if n == 1 then oldest = now end
local cutoff = now - ttl
if (maxn > 0 and n > maxn) or bytes > maxb or oldest < cutoff then
  local drop, more = 0, true
  while more do
    local want = 2
    if maxn > 0 and n - maxn + 1 > want then want = n - maxn + 1 end
    local batch = redis.call('LRANGE', list, drop, drop + want - 1)
    if #batch == 0 then break end
    for _, e in ipairs(batch) do
      local ts = tonumber(string.sub(e, 1, 13))
      if (maxn > 0 and n > maxn) or (bytes > maxb and n > 1) or ts < cutoff then
        n = n - 1
        bytes = bytes - (#e - 13)
        drop = drop + 1
      else
        oldest = ts
        more = false
        break
      end
    end
  end
  if drop > 0 then redis.call('LTRIM', list, drop, -1) end
end
redis.call('HSET', meta, 'e', epoch, 'n', off, 'b', bytes, 'o', oldest, 't', ttl)
redis.call('PEXPIRE', list, ttl)
redis.call('PEXPIRE', meta, ttl)
redis.call(ARGV[5], KEYS[3], 'h' .. string.format('%d', off) .. ' ' .. epoch .. '\n' .. payload)
return {epoch, off}
`)

// histRead reads a history. KEYS: list, meta. ARGV: since's epoch ("":
// the newest messages), since's offset, most entries, an epoch to start
// if there is no history, how long such a new (empty) history is kept
// (ms). It returns {epoch, last offset, lost ("", "epoch" or "trimmed"),
// the offset of the first entry returned, then the entries (time and
// payload) in order}. An entry older than the TTL of the history's last
// message counts as gone.
var histRead = newScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local list, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'e', 'n', 't')
local epoch, last, ttl = m[1], tonumber(m[2] or '0'), tonumber(m[3] or '0')
if not epoch or (last > 0 and redis.call('EXISTS', list) == 0) then
  redis.call('DEL', list, meta)
  epoch, last = ARGV[4], 0
  redis.call('HSET', meta, 'e', epoch, 'n', 0, 'b', 0)
  redis.call('PEXPIRE', meta, ARGV[5])
end
local cutoff = -1
if ttl > 0 then cutoff = now - ttl end
local out = {epoch, last, '', 0}
local since, off, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = redis.call('LLEN', list)
local first = last - n + 1 -- the offset of index 0
local es
if since == '' then
  if most <= 0 or n == 0 then return out end
  es = redis.call('LRANGE', list, -most, -1)
  local k = 1
  while k <= #es and tonumber(string.sub(es[k], 1, 13)) < cutoff do k = k + 1 end
  out[4] = last - #es + k
  for i = k, #es do out[#out + 1] = es[i] end
  return out
end
if since ~= epoch or off > last then
  out[3] = 'epoch'
  return out
end
if off == last or most <= 0 then return out end
local i = off + 1 - first
if i >= 0 then es = redis.call('LRANGE', list, i, i + most - 1) end
if not es or #es == 0 or tonumber(string.sub(es[1], 1, 13)) < cutoff then
  out[3] = 'trimmed'
  return out
end
out[4] = off + 1
for _, e in ipairs(es) do out[#out + 1] = e end
return out
`)

// entryTimeLen is the length of the time before each entry's payload.
const entryTimeLen = 13

var _ wsroom.HistoryBroker = (*Broker)(nil)

// emptyHistoryTTL is how long the epoch ReadHistory starts for a topic
// without history is kept if no message follows.
const emptyHistoryTTL = wsroom.DefaultHistoryTTL

// maxHistoryRead bounds the entries one ReadHistory returns.
const maxHistoryRead = 1 << 20

// historyKeys returns the list and hash keys of topic's history.
func (b *Broker) historyKeys(tag, topic string) (list, meta string) {
	return b.key(tag, "h:l:"+topic), b.key(tag, "h:m:"+topic)
}

// StartHistory implements wsroom.HistoryBroker: deliver receives the
// messages published with PublishHistory, with their position, instead
// of Start's deliver (which receives them, without position, if
// StartHistory is not called). Call it before Start.
func (b *Broker) StartHistory(deliver func(topic string, pos wsroom.Position, payload []byte)) {
	b.hdeliver.Store(&deliver)
}

// PublishHistory implements wsroom.HistoryBroker: one script on topic's
// server appends payload to its history and publishes it with its
// position (see the package's key layout in README.md). limits.Bytes and
// limits.TTL default to wsroom's defaults when not positive;
// limits.Messages not positive means no bound on the count. wait returns
// the message's position, or an error, in which case the message may or
// may not have been appended and published (a timeout, a lost
// connection): it is never sent twice.
func (b *Broker) PublishHistory(topic string, payload []byte, limits wsroom.History) (wait func() (wsroom.Position, error)) {
	if len(topic) > MaxTopicBytes {
		return failedPos(b, ErrTopicTooLong)
	}
	if limits.Bytes <= 0 {
		limits.Bytes = wsroom.DefaultHistoryBytes
	}
	if limits.TTL <= 0 {
		limits.TTL = wsroom.DefaultHistoryTTL
	}
	tag := b.tagOf(topic)
	list, meta := b.historyKeys(tag, topic)
	c := newCall(histPublish, 3, list, meta, b.channel(tag, topic),
		strconv.Itoa(max(limits.Messages, 0)), strconv.Itoa(limits.Bytes), strconv.FormatInt(max(limits.TTL.Milliseconds(), 1), 10),
		newEpoch(), b.publishCmd())
	c.payload, c.withPayload = payload, true
	c.parse = parsePosition
	if err := b.send(topic, c); err != nil {
		return failedPos(b, err)
	}
	return func() (wsroom.Position, error) {
		<-c.done
		if c.rep.err != nil {
			b.publishErrors.Add(1)
			return wsroom.Position{}, c.rep.err
		}
		b.published.Add(1)
		return c.val.(wsroom.Position), nil
	}
}

func failedPos(b *Broker, err error) func() (wsroom.Position, error) {
	b.publishErrors.Add(1)
	return func() (wsroom.Position, error) { return wsroom.Position{}, err }
}

// parsePosition reads histPublish's reply: {epoch, offset}.
func parsePosition(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	if n != 2 {
		return reply{}, fmt.Errorf("%w: history publish reply of %d elements", errProtocol, n)
	}
	e, _, err := r.nextBulk(maxEpochLen)
	if err != nil {
		return reply{}, err
	}
	epoch := string(e)
	off, err := r.nextInt()
	if err != nil {
		return reply{}, err
	}
	c.val = wsroom.Position{Epoch: epoch, Offset: uint64(off)}
	return reply{}, nil
}

// ReadHistory implements wsroom.HistoryBroker with one script on topic's
// server: topic's epoch and last offset, and the entries after since
// (at most most of them, and never more than 2^20), or why they cannot be
// had. A topic without history gets an epoch (offset 0), kept 5 minutes
// unless a message follows. Entries older than the TTL the last
// PublishHistory gave count as gone.
func (b *Broker) ReadHistory(ctx context.Context, topic string, since wsroom.Position, most int) (wsroom.HistoryRead, error) {
	if len(topic) > MaxTopicBytes {
		return wsroom.HistoryRead{}, ErrTopicTooLong
	}
	tag := b.tagOf(topic)
	list, meta := b.historyKeys(tag, topic)
	c := newCall(histRead, 2, list, meta, since.Epoch, strconv.FormatUint(since.Offset, 10),
		strconv.Itoa(min(max(most, 0), maxHistoryRead)), newEpoch(), strconv.FormatInt(emptyHistoryTTL.Milliseconds(), 10))
	c.parse = b.parseHistoryRead
	if err := b.do(ctx, topic, c); err != nil {
		return wsroom.HistoryRead{}, err
	}
	return c.val.(wsroom.HistoryRead), nil
}

// parseHistoryRead reads histRead's reply.
func (b *Broker) parseHistoryRead(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	if n < 4 {
		return reply{}, fmt.Errorf("%w: history read reply of %d elements", errProtocol, n)
	}
	var rd wsroom.HistoryRead
	e, _, err := r.nextBulk(maxEpochLen)
	if err != nil {
		return reply{}, err
	}
	rd.Current.Epoch = string(e)
	last, err := r.nextInt()
	if err != nil {
		return reply{}, err
	}
	rd.Current.Offset = uint64(last)
	lost, _, err := r.nextBulk(16)
	if err != nil {
		return reply{}, err
	}
	rd.Lost = string(lost)
	off, err := r.nextInt()
	if err != nil {
		return reply{}, err
	}
	for i := int64(4); i < n; i++ {
		p, _, err := r.nextBulk(entryTimeLen + b.opts.MaxPayload)
		if err != nil {
			return reply{}, err
		}
		if len(p) < entryTimeLen {
			return reply{}, fmt.Errorf("%w: history entry of %d bytes", errProtocol, len(p))
		}
		rd.Entries = append(rd.Entries, wsroom.HistoryEntry{Offset: uint64(off + i - 4), Payload: bytes.Clone(p[entryTimeLen:])})
	}
	c.val = rd
	return reply{}, nil
}

// newEpoch returns a random epoch: 13 base32 characters, like the Hub's
// own.
func newEpoch() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}
