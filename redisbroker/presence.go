package redisbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsroom/wsroom"
)

// Cluster presence in Redis (wsroom.PresenceBroker).
//
// Keys of the registry, on the server of the topic "presence:registry"
// (in Cluster mode all in its slot):
//
//	p:nodes         sorted set: node → deadline in ms (its last beat + its ttl)
//	p:dead          sorted set: node presumed dead → deadline of the lease of whoever cleans it up
//	p:since         hash: node → since when (ms) it has been registered without a gap
//	p:idx:<node>    set: the rooms the node has entries in (its index, for the cleanup)
//	p:on:<node>     hash: user → the node's connections of the user (room "")
//
// Keys of a room R, on the server (slot) of the topic "room:R", like the
// room's channel and history:
//
//	p:r:<R>                     sorted set, every score 0: "<user>\x00<connections on every node>:<info>"
//	p:n:<len(node)>:<node>:<R>  hash: user → the node's connections of the user in R
//	p:v:<R>                     the version of p:r:<R>: Redis's clock in µs at its last change (or later), gone with it
//	p:l:<R>                     list: the changes of p:r:<R> that made its last versions (its change log), gone with it
//
// The room's members sort by user ID (Redis orders equal scores by their
// bytes, and the NUL after the user ID sorts first), so a room's presence
// comes out of one ZRANGE in the order RoomPresence returns it, with
// nothing to sort; a user's member is found with ZRANGEBYLEX. (A user ID
// holding a NUL byte may be mistaken for another that starts with it.)
//
// A node's SetPresence runs one script in the room's slot that sets the
// node's count and the user's total and returns the transition, so that
// concurrent updates from several nodes each see their own: exactly one
// sees the total leave or reach 0. The node adds the room to its index
// before its first entry in the room (and removes it after its last), so
// the index always covers the node's entries.
//
// Each node beats every ttl/3 (a script that pushes its deadline in
// p:nodes) and, once its own beats have reached Redis for a whole ttl
// (so that after an outage of Redis every node had the time to beat
// again), looks for dead nodes every ttl/5: a node whose deadline passed
// is claimed by one survivor (a script moves it from p:nodes to
// p:dead with a lease), which removes its entries room by room: one
// script per room, atomic in the room's slot and idempotent (it removes
// the node's hash of the room and lowers the totals; run again, it finds
// nothing), reporting each user whose total fell to 0; then the room
// leaves the dead node's index. A cleaner that dies midway loses its
// lease; the next claims the node again and resumes with the rooms left
// in the index, without reporting anything twice. LeavePresence is the
// same cleanup of the node by itself.
//
// Every script that changes a room's sorted set bumps its version and,
// in the same script, appends the changes to the room's change log: one
// entry per member changed, "<prev> <version> <user>\x00<total>:<info>"
// (total 0: the user left), where version is the version the script
// made and prev the one before it for the script's first entry, and
// version itself for the others (so that every entry links to the one
// before it, and a log whose head was trimmed in the middle of a
// script's entries does not link to that script's prev). The log keeps
// the last cap = min(maxPresenceLog, members/4) entries: it is trimmed
// back to cap when it passes it by an eighth (so that most writes need
// no trim), so it holds at most 9/32 as many entries as the room has
// members. A script that changes more than cap members deletes the log
// instead, and a room that empties deletes it with its version. A room
// of fewer than minLoggedRoom members logs nothing (its log, if any, is
// left to be trimmed or deleted later). A change that is not logged
// leaves a gap, which queries see: the log's next entry does not link
// to its last one, or its last one is not of the room's version. See
// RoomPresence for how queries use it.
//
// A node that was presumed dead while it was alive (cut off from Redis
// for longer than its ttl), or whose Redis lost its data, finds out at
// its next beat: it writes its presence again from its own record of it
// once the cleanup is over (without join events for the users who
// thereby come back).

// Presence scripts. now is Redis's clock, in ms.
const luaNow = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// maxPresenceLog bounds a room's change log (entries), and the changes
// a query takes from it; a room of fewer than minLoggedRoom members logs
// nothing (it is cheap to read whole).
const (
	maxPresenceLog = 1024
	minLoggedRoom  = 64
)

// luaMember finds user's member in the room's sorted set: cur (or
// nil), and its total and info. setMember sets it, returning the change
// to log (false if none); bump bumps the room's version and logs the
// changes (see the keys above).
var luaMember = `local function member(key, user)
  local cur = redis.call('ZRANGEBYLEX', key, '[' .. user .. '\0', '(' .. user .. '\1', 'LIMIT', 0, 1)[1]
  if not cur then return nil, 0, '' end
  local rest = string.sub(cur, #user + 2)
  local p = string.find(rest, ':', 1, true)
  return cur, tonumber(string.sub(rest, 1, p - 1)), string.sub(rest, p + 1)
end
local function setMember(key, user, cur, total, info)
  local m = nil
  if total > 0 then m = user .. '\0' .. string.format('%d', total) .. ':' .. info end
  if m == cur then return false end
  if cur then redis.call('ZREM', key, cur) end
  if m then
    redis.call('ZADD', key, 0, m)
    return m
  end
  return user .. '\0' .. '0:'
end
local function bump(vkey, key, lkey, changes)
  local size = redis.call('ZCARD', key)
  if size == 0 then
    redis.call('DEL', vkey, lkey)
    return
  end
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local prev = tonumber(redis.call('GET', vkey) or '0')
  if v <= prev then v = prev + 1 end
  local vs = string.format('%d', v)
  redis.call('SET', vkey, vs)
  if size < ` + strconv.Itoa(minLoggedRoom) + ` then return end
  local cap = math.min(` + strconv.Itoa(maxPresenceLog) + `, math.floor(size / 4))
  if #changes > cap then
    redis.call('DEL', lkey)
    return
  end
  local p = string.format('%d', prev)
  for i, c in ipairs(changes) do
    changes[i] = p .. ' ' .. vs .. ' ' .. c
    p = vs
  end
  if redis.call('RPUSH', lkey, unpack(changes)) > cap + math.floor(cap / 8) then redis.call('LTRIM', lkey, -cap, -1) end
end
`

// presSet sets the node's count of a user in a room. KEYS: the room's
// sorted set, the node's hash of the room, the room's version and change
// log. ARGV:
// user, count, info (empty: keep the user's). Returns 1 (joined), 2
// (left) or 0.
var presSet = newScript(luaMember + `
local user, count = ARGV[1], tonumber(ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[2], user) or '0')
local cur, total, info = member(KEYS[1], user)
if ARGV[3] ~= '' then info = ARGV[3] end
local nt = total - old + count
if count > 0 then redis.call('HSET', KEYS[2], user, count) elseif old > 0 then redis.call('HDEL', KEYS[2], user) end
local change = setMember(KEYS[1], user, cur, nt, info)
if change then bump(KEYS[3], KEYS[1], KEYS[4], {change}) end
if total <= 0 and nt > 0 then return 1 end
if total > 0 and nt <= 0 then return 2 end
return 0
`)

// presOnline sets the node's count of a user's connections (room "").
// KEYS: p:nodes, the node's p:on hash. ARGV: user, count, the p:on key
// prefix, node. Returns like presSet; the total counts the registered
// nodes.
var presOnline = newScript(`
local user, count = ARGV[1], tonumber(ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[2], user) or '0')
if count > 0 then redis.call('HSET', KEYS[2], user, count) elseif old > 0 then redis.call('HDEL', KEYS[2], user) end
local others = 0
for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if n ~= ARGV[4] then others = others + tonumber(redis.call('HGET', ARGV[3] .. n, user) or '0') end
end
local before, after = others + old, others + count
if before <= 0 and after > 0 then return 1 end
if before > 0 and after <= 0 then return 2 end
return 0
`)

// presUserNodes returns {node, count, …} of a user on the live nodes.
// KEYS: p:nodes. ARGV: the p:on key prefix, user.
var presUserNodes = newScript(luaNow + `
local out = {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%d', now), '+inf')) do
  local c = redis.call('HGET', ARGV[1] .. n, ARGV[2])
  if c then
    out[#out + 1] = n
    out[#out + 1] = c
  end
end
return out
`)

// presBeat pushes the node's deadline, and records since when the node
// has been registered without a gap (its deadline never passed). KEYS:
// p:nodes, p:dead, p:since. ARGV: node, ttl (ms). Returns 0 (it was
// registered), 1 (it was not: a first beat, or its presence was removed
// or lost) or 2 (it is being cleaned up: not registered again until that
// ends).
var presBeat = newScript(luaNow + `
local status = 0
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline then
  if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 2 end
  status = 1
end
if not deadline or tonumber(deadline) < now then redis.call('HSET', KEYS[3], ARGV[1], now) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return status
`)

// presClaim claims a node to clean up: one whose deadline passed (not
// the caller: its next beat will do), or one whose cleaner's lease did
// (the caller too: were it alone, nobody else would). Only a caller whose
// own deadline has not passed and that has been registered without a gap
// for its ttl may claim: the claim of a node cut off from Redis, or one
// that runs after Redis itself stopped for a while (a command sent before
// the pause), when every deadline has passed, takes nobody. KEYS:
// p:nodes, p:dead, p:since. ARGV: lease (ms), the caller, its ttl (ms).
// Returns the node, or nil.
var presClaim = newScript(luaNow + `
local mine, since = redis.call('ZSCORE', KEYS[1], ARGV[2]), redis.call('HGET', KEYS[3], ARGV[2])
if not mine or tonumber(mine) < now or not since or now - tonumber(since) < tonumber(ARGV[3]) then return false end
local before = '(' .. string.format('%d', now)
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', before, 'LIMIT', 0, 2)
local n = stale[1]
if n == ARGV[2] then n = stale[2] end
if n then
  redis.call('ZREM', KEYS[1], n)
else
  n = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', before, 'LIMIT', 0, 1)[1]
end
if not n then return false end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), n)
return n
`)

// presLeave claims the node itself (LeavePresence). KEYS: p:nodes,
// p:dead, p:since. ARGV: node, lease (ms).
var presLeave = newScript(luaNow + `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
`)

// presRenew extends a cleanup's lease, if the node is still being
// cleaned up. KEYS: p:dead. ARGV: node, lease (ms).
var presRenew = newScript(luaNow + `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
`)

// presCleanRoom removes a node's entries from a room. KEYS: the room's
// sorted set, the node's hash of the room, the room's version and change
// log. Returns {user, info, …} of the users whose total fell to 0.
var presCleanRoom = newScript(luaMember + `
local e = redis.call('HGETALL', KEYS[2])
local left, changes = {}, {}
for i = 1, #e, 2 do
  local user = e[i]
  local cur, total, info = member(KEYS[1], user)
  if cur then
    local nt = total - tonumber(e[i + 1])
    local change = setMember(KEYS[1], user, cur, nt, info)
    if change then changes[#changes + 1] = change end
    if nt <= 0 then
      left[#left + 1] = user
      left[#left + 1] = info
    end
  end
end
redis.call('DEL', KEYS[2])
if #changes > 0 then bump(KEYS[3], KEYS[1], KEYS[4], changes) end
return left
`)

// presDelta reads a room's version and, if it is not since, the
// entries of the room's change log after since (the log's tail, found
// from its end in chunks). KEYS: the room's version and change log.
// ARGV: since, the most entries to return. Returns {} if the room has
// no version, {version} if it is since or more than that many entries
// are newer, else {version, entry, …}: every entry newer than since, in
// order (which the caller checks link from since to version: the log
// may not reach back that far).
var presDelta = newScript(`
local v = redis.call('GET', KEYS[1])
if not v then return {} end
if v == ARGV[1] then return {v} end
local since, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local function ver(e) return tonumber(string.match(e, '^%d+ (%d+) ') or '0') end
local n = redis.call('LLEN', KEYS[2])
local first, hi, step = n, n - 1, 8
while hi >= 0 and n - first <= limit do
  local lo = math.max(hi - step + 1, 0)
  local part = redis.call('LRANGE', KEYS[2], lo, hi)
  local j = #part
  while j > 0 and ver(part[j]) > since do j = j - 1 end
  first = lo + j
  if j > 0 then break end
  hi, step = lo - 1, step * 2
end
if n - first > limit then return {v} end
local out = redis.call('LRANGE', KEYS[2], first, -1)
table.insert(out, 1, v)
return out
`)

// presFinish ends a node's cleanup once its index is empty. KEYS:
// p:dead, its p:idx, its p:on, p:since. ARGV: node. Returns 1 if it
// ended.
var presFinish = newScript(`
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('UNLINK', KEYS[3])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`)

// presRooms returns the rooms in the indexes of the registered nodes and
// of those being cleaned up. KEYS: p:nodes, p:dead. ARGV: the p:idx key
// prefix.
var presRooms = newScript(`
local seen, out = {}, {}
for _, z in ipairs({KEYS[1], KEYS[2]}) do
  for _, n in ipairs(redis.call('ZRANGE', z, 0, -1)) do
    for _, r in ipairs(redis.call('SMEMBERS', ARGV[1] .. n)) do
      if not seen[r] then
        seen[r] = true
        out[#out + 1] = r
      end
    end
  end
end
return out
`)

var _ wsroom.PresenceBroker = (*Broker)(nil)

// Errors of the presence methods.
var (
	// ErrPresenceNotStarted is returned by the presence methods before
	// StartPresence.
	ErrPresenceNotStarted = errors.New("redisbroker: StartPresence was not called")
	// ErrPresenceSuspended is returned by SetPresence while the cluster
	// is removing this node's presence, having presumed the node dead
	// (no beat reached Redis for longer than its ttl). The node writes
	// its presence again, as it then stands, once that is over.
	ErrPresenceSuspended = errors.New("redisbroker: this node's presence is being removed by the cluster (presumed dead); it is written again afterwards")
	// ErrPresenceLeft is returned by SetPresence after LeavePresence.
	ErrPresenceLeft = errors.New("redisbroker: LeavePresence was called")
)

// registryTopic is the topic whose server (slot) holds the registry.
const registryTopic = "presence:registry"

// presence is a Broker's side of cluster presence.
type presence struct {
	node string
	ttl  time.Duration
	left func(room, user string, info []byte)

	regTag                       string
	nodesKey, deadKey, sinceKey  string
	idxKey, onKey                string // this node's
	idxPrefix, onPrefix, ttlArgs string // ttlArgs: ttl in ms

	kick chan struct{} // wakes the janitor: entries to write again

	// order serializes the writes of this node's entries (SetPresence,
	// writing failed ones again, LeavePresence), each to Redis and back,
	// so that a later one never lands before an earlier one. It is held
	// across Redis round trips, each bounded by PublishTimeout.
	order sync.Mutex

	// beatMu serializes beats, so that their replies are read in the
	// order Redis ran them.
	beatMu sync.Mutex

	cacheMu sync.Mutex
	cache   map[string]*cachedRoom // RoomPresence's kept answers, by room

	mu         sync.Mutex
	mirror     map[string]map[string]entry // room → user → this node's entry, as the Hub set it
	dirty      map[pair]struct{}           // entries Redis may not have as mirror does
	registered bool                        // a beat registered the node
	suspended  bool                        // the cluster is removing the node's presence
	leaving    bool                        // LeavePresence was called
	resyncAt   time.Time                   // when to write every entry again (zero: not planned)
}

type entry struct {
	count int
	info  []byte
}

type pair struct{ room, user string }

// StartPresence implements wsroom.PresenceBroker: the node beats every
// ttl/3 and looks for dead nodes to clean up every ttl/5, on two
// goroutines that Close joins. Call it once, after Start.
func (b *Broker) StartPresence(node string, ttl time.Duration, left func(room, user string, info []byte)) {
	if ttl <= 0 {
		ttl = wsroom.DefaultPresenceTimeout
	}
	ps := &presence{
		node: node, ttl: ttl, left: left,
		regTag: b.tagOf(registryTopic),
		kick:   make(chan struct{}, 1),
		mirror: make(map[string]map[string]entry),
		dirty:  make(map[pair]struct{}),
	}
	ps.nodesKey, ps.deadKey, ps.sinceKey = b.key(ps.regTag, "p:nodes"), b.key(ps.regTag, "p:dead"), b.key(ps.regTag, "p:since")
	ps.idxPrefix, ps.onPrefix = b.key(ps.regTag, "p:idx:"), b.key(ps.regTag, "p:on:")
	ps.idxKey, ps.onKey = ps.idxPrefix+node, ps.onPrefix+node
	ps.ttlArgs = strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)
	if !b.pres.CompareAndSwap(nil, ps) {
		panic("redisbroker: StartPresence called twice")
	}
	b.wg.Add(2)
	go b.beatLoop(ps)
	go b.janitor(ps)
}

// presence returns the presence state, or an error before StartPresence
// or after Close.
func (b *Broker) presence() (*presence, error) {
	if b.ctx.Err() != nil {
		return nil, ErrClosed
	}
	ps := b.pres.Load()
	if ps == nil {
		return nil, ErrPresenceNotStarted
	}
	return ps, nil
}

// opCtx bounds one presence step (a round trip or a pipelined batch)
// within parent.
func (b *Broker) opCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, 2*b.opts.PublishTimeout)
}

// SetPresence implements wsroom.PresenceBroker. It costs one script in
// the room's slot (for room "", in the registry's), and, when this node's
// first user enters a room or its last one leaves it, a command on the
// registry. An entry whose write fails is written again by the janitor
// (without reporting the transition that write makes).
func (b *Broker) SetPresence(ctx context.Context, room, user string, count int, info []byte) (wsroom.PresenceChange, error) {
	ps, err := b.presence()
	if err != nil {
		return wsroom.PresenceUnchanged, err
	}
	if len(room) > MaxTopicBytes || len(user) > MaxTopicBytes {
		return wsroom.PresenceUnchanged, ErrTopicTooLong
	}
	count = max(count, 0)
	ps.order.Lock()
	defer ps.order.Unlock()
	ps.mu.Lock()
	if ps.leaving {
		ps.mu.Unlock()
		return wsroom.PresenceUnchanged, ErrPresenceLeft
	}
	before := len(ps.mirror[room])
	users := ps.mirror[room]
	if count > 0 {
		if users == nil {
			users = make(map[string]entry)
			ps.mirror[room] = users
		}
		users[user] = entry{count, info}
	} else if users != nil {
		delete(users, user)
		if len(users) == 0 {
			delete(ps.mirror, room)
		}
	}
	after := len(ps.mirror[room])
	k := pair{room, user}
	if ps.suspended {
		ps.dirty[k] = struct{}{}
		ps.mu.Unlock()
		return wsroom.PresenceUnchanged, ErrPresenceSuspended
	}
	registered := ps.registered
	delete(ps.dirty, k)
	ps.mu.Unlock()
	if !registered {
		err = b.beat(ctx, ps)
	}
	var change wsroom.PresenceChange
	if err == nil {
		change, err = b.writeEntry(ctx, ps, room, user, count, info, before == 0 && after > 0, before > 0 && after == 0)
	}
	if err != nil {
		ps.mu.Lock()
		ps.dirty[k] = struct{}{}
		ps.mu.Unlock()
	}
	return change, err
}

// writeEntry writes this node's entry of user in room to Redis; with
// index, the room enters the node's index first, and with unindex it
// leaves it afterwards. Called with ps.order held.
func (b *Broker) writeEntry(ctx context.Context, ps *presence, room, user string, count int, info []byte, index, unindex bool) (wsroom.PresenceChange, error) {
	if room == "" {
		c := newCall(presOnline, 2, ps.nodesKey, ps.onKey, user, strconv.Itoa(count), ps.onPrefix, ps.node)
		if err := b.do(ctx, registryTopic, c); err != nil {
			return wsroom.PresenceUnchanged, err
		}
		return wsroom.PresenceChange(c.rep.n), nil
	}
	topic := "room:" + room
	var add *call
	if index {
		add = command("SADD", ps.idxKey, room)
		if err := b.send(registryTopic, add); err != nil {
			return wsroom.PresenceUnchanged, err
		}
		if !b.sameServer(registryTopic, topic) {
			// On another server: it must be in the index before the entry
			// is in the room.
			if err := add.wait(ctx); err != nil {
				return wsroom.PresenceUnchanged, err
			}
		}
	}
	rk, nk, vk := b.roomKeys(ps.node, room)
	c := newCall(presSet, 4, rk, nk, vk, b.logKey(room), user, strconv.Itoa(count), string(info))
	if err := b.do(ctx, topic, c); err != nil {
		return wsroom.PresenceUnchanged, err
	}
	if add != nil {
		if err := add.wait(ctx); err != nil {
			return wsroom.PresenceUnchanged, err
		}
	}
	if unindex {
		// Not waited for: a room left in the index costs the cleanup a
		// script that finds nothing.
		b.send(registryTopic, command("SREM", ps.idxKey, room))
	}
	return wsroom.PresenceChange(c.rep.n), nil
}

// roomKeys returns the keys of room's presence: its sorted set of
// users, node's hash of the room, and the set's version.
func (b *Broker) roomKeys(node, room string) (roomKey, nodeKey, versionKey string) {
	tag := b.tagOf("room:" + room)
	return b.key(tag, "p:r:"+room), b.key(tag, "p:n:"+strconv.Itoa(len(node))+":"+node+":"+room), b.key(tag, "p:v:"+room)
}

// logKey returns the key of room's change log.
func (b *Broker) logKey(room string) string {
	return b.key(b.tagOf("room:"+room), "p:l:"+room)
}

// beat pushes this node's deadline and acts on what Redis says: a node
// registered before that finds itself missing (presumed dead and cleaned
// up, or Redis lost its data) writes every entry again.
func (b *Broker) beat(ctx context.Context, ps *presence) error {
	ps.beatMu.Lock()
	defer ps.beatMu.Unlock()
	c := newCall(presBeat, 3, ps.nodesKey, ps.deadKey, ps.sinceKey, ps.node, ps.ttlArgs)
	if err := b.do(ctx, registryTopic, c); err != nil {
		return err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch c.rep.n {
	case 0:
		ps.registered, ps.suspended = true, false
	case 1:
		if ps.registered || ps.suspended {
			ps.markAllLocked()
			b.opts.Logger.Warn("redisbroker: this node's presence was missing from Redis; writing it again", "node", ps.node, "entries", len(ps.dirty))
			select {
			case ps.kick <- struct{}{}:
			default:
			}
		}
		ps.registered, ps.suspended = true, false
	case 2:
		if !ps.suspended {
			b.opts.Logger.Warn("redisbroker: the cluster presumed this node dead and is removing its presence", "node", ps.node)
		}
		ps.suspended = true
	}
	return nil
}

// markAllLocked marks every entry of the node to be written again.
// Called with ps.mu held.
func (ps *presence) markAllLocked() {
	for room, users := range ps.mirror {
		for user := range users {
			ps.dirty[pair{room, user}] = struct{}{}
		}
	}
}

// connectionLost is told that a connection to a Redis failed: a presence
// write whose outcome was unknown may still run after the node wrote that
// entry again (Redis runs what it had received, even from a connection
// the broker closed), so every entry is written again once that can no
// longer happen in the normal course: 2 × PublishTimeout later.
func (b *Broker) connectionLost() {
	ps := b.pres.Load()
	if ps == nil {
		return
	}
	ps.mu.Lock()
	if ps.resyncAt.IsZero() {
		ps.resyncAt = time.Now().Add(2 * b.opts.PublishTimeout)
	}
	ps.mu.Unlock()
}

// beatLoop beats every ttl/3 until Close or LeavePresence.
func (b *Broker) beatLoop(ps *presence) {
	defer b.wg.Done()
	t := time.NewTicker(max(ps.ttl/3, time.Millisecond))
	defer t.Stop()
	for {
		ps.mu.Lock()
		leaving := ps.leaving
		ps.mu.Unlock()
		if leaving {
			return
		}
		ctx, cancel := b.opCtx(b.ctx)
		if err := b.beat(ctx, ps); err != nil && b.ctx.Err() == nil {
			b.opts.Logger.Warn("redisbroker: presence beat failed", "node", ps.node, "err", err)
		}
		cancel()
		select {
		case <-t.C:
		case <-b.ctx.Done():
			return
		}
	}
}

// janitor writes failed entries again, and claims and cleans up dead
// nodes, every ttl/5, until Close or LeavePresence.
func (b *Broker) janitor(ps *presence) {
	defer b.wg.Done()
	t := time.NewTicker(max(ps.ttl/5, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ps.kick:
		case <-b.ctx.Done():
			return
		}
		ps.mu.Lock()
		leaving, suspended := ps.leaving, ps.suspended
		if !ps.resyncAt.IsZero() && time.Now().After(ps.resyncAt) {
			ps.resyncAt = time.Time{}
			ps.markAllLocked()
		}
		ps.mu.Unlock()
		if leaving {
			return
		}
		if suspended {
			continue
		}
		b.rewrite(ps)
		b.cleanDead(ps)
	}
}

// maxRewrite is the most entries written again in one batch.
const maxRewrite = 512

// rewrite writes the entries in ps.dirty again, a batch at a time, each
// batch pipelined: the rooms into the index, then the entries, then the
// rooms without entries out of the index.
func (b *Broker) rewrite(ps *presence) {
	for b.ctx.Err() == nil {
		ps.order.Lock()
		ps.mu.Lock()
		if ps.suspended || ps.leaving || len(ps.dirty) == 0 {
			ps.mu.Unlock()
			ps.order.Unlock()
			return
		}
		type todo struct {
			pair
			entry
			c *call
		}
		var batch []todo
		var index, unindex []string
		for k := range ps.dirty {
			e := ps.mirror[k.room][k.user]
			batch = append(batch, todo{pair: k, entry: e})
			if k.room != "" {
				if e.count > 0 {
					index = append(index, k.room)
				} else if len(ps.mirror[k.room]) == 0 {
					unindex = append(unindex, k.room)
				}
			}
			delete(ps.dirty, k)
			if len(batch) == maxRewrite {
				break
			}
		}
		ps.mu.Unlock()
		ctx, cancel := b.opCtx(b.ctx)
		err := ctx.Err()
		if len(index) > 0 {
			err = b.do(ctx, registryTopic, command(append([]string{"SADD", ps.idxKey}, slices.Compact(slices.Sorted(slices.Values(index)))...)...))
		}
		failed := batch[:0:0]
		for i := range batch {
			td := &batch[i]
			if err != nil {
				continue
			}
			if td.room == "" {
				td.c = newCall(presOnline, 2, ps.nodesKey, ps.onKey, td.user, strconv.Itoa(td.count), ps.onPrefix, ps.node)
				err = b.send(registryTopic, td.c)
			} else {
				rk, nk, vk := b.roomKeys(ps.node, td.room)
				td.c = newCall(presSet, 4, rk, nk, vk, b.logKey(td.room), td.user, strconv.Itoa(td.count), string(td.info))
				err = b.send("room:"+td.room, td.c)
			}
		}
		for _, td := range batch {
			if td.c == nil || td.c.wait(ctx) != nil {
				failed = append(failed, td)
			}
		}
		if len(unindex) > 0 && len(failed) == 0 {
			b.send(registryTopic, command(append([]string{"SREM", ps.idxKey}, unindex...)...))
		}
		cancel()
		ps.mu.Lock()
		for _, td := range failed {
			ps.dirty[td.pair] = struct{}{}
		}
		ps.mu.Unlock()
		ps.order.Unlock()
		if len(failed) > 0 {
			return // again at the next tick
		}
	}
}

// cleanDead claims dead nodes and removes their presence, reporting the
// users who left to ps.left, until none is left to claim.
func (b *Broker) cleanDead(ps *presence) {
	lease := ps.ttlArgs
	for range 1000 {
		ctx, cancel := b.opCtx(b.ctx)
		c := newCall(presClaim, 3, ps.nodesKey, ps.deadKey, ps.sinceKey, lease, ps.node, ps.ttlArgs)
		c.parse = parseOptString
		err := b.do(ctx, registryTopic, c)
		cancel()
		if err != nil || c.val == nil {
			return
		}
		dead := c.val.(string)
		b.opts.Logger.Info("redisbroker: removing the presence of a dead node", "node", dead, "cleaner", ps.node)
		if err := b.cleanNode(b.ctx, ps, dead, ps.left); err != nil {
			if b.ctx.Err() == nil {
				b.opts.Logger.Warn("redisbroker: removing a dead node's presence failed; it is retried when the lease ends", "node", dead, "err", err)
			}
			return
		}
		b.cleaned.Add(1)
	}
}

// cleanNode removes the presence of node (which this node claimed),
// room by room, reporting each user who left a room to report; then its
// online counts and its registration.
func (b *Broker) cleanNode(parent context.Context, ps *presence, node string, report func(room, user string, info []byte)) error {
	idx := ps.idxPrefix + node
	for range 16 { // the index may gain rooms meanwhile (a node that is not dead after all)
		cursor := "0"
		for range 1 << 20 {
			ctx, cancel := b.opCtx(parent)
			sc := command("SSCAN", idx, cursor, "COUNT", "256")
			sc.parse = parseScan
			err := b.do(ctx, registryTopic, sc)
			if err != nil {
				cancel()
				return err
			}
			res := sc.val.(scanResult)
			if len(res.items) > 0 {
				if err := b.cleanRooms(ctx, ps, node, res.items, report); err != nil {
					cancel()
					return err
				}
				renew := newCall(presRenew, 1, ps.deadKey, node, ps.ttlArgs)
				b.do(ctx, registryTopic, renew)
			}
			cancel()
			if cursor = res.cursor; cursor == "0" {
				break
			}
		}
		ctx, cancel := b.opCtx(parent)
		fin := newCall(presFinish, 4, ps.deadKey, idx, ps.onPrefix+node, ps.sinceKey, node)
		err := b.do(ctx, registryTopic, fin)
		cancel()
		if err != nil {
			return err
		}
		if fin.rep.n == 1 {
			return nil
		}
	}
	return errors.New("redisbroker: a dead node's index keeps growing")
}

// cleanRooms removes node's entries from rooms (pipelined, one atomic
// script per room), reports who left, and takes the rooms out of the
// node's index.
func (b *Broker) cleanRooms(ctx context.Context, ps *presence, node string, rooms []string, report func(room, user string, info []byte)) error {
	calls := make([]*call, len(rooms))
	for i, room := range rooms {
		rk, nk, vk := b.roomKeys(node, room)
		c := newCall(presCleanRoom, 4, rk, nk, vk, b.logKey(room))
		c.parse = b.parseLeft
		calls[i] = c
		if err := b.send("room:"+room, c); err != nil {
			return err
		}
	}
	var err error
	for i, c := range calls {
		if e := c.wait(ctx); e != nil {
			err = e
			rooms[i] = "" // stays in the index: cleaned again
			continue
		}
		if left, _ := c.val.([]userInfo); report != nil {
			for _, u := range left {
				report(rooms[i], u.user, u.info)
			}
		}
	}
	done := slices.DeleteFunc(rooms, func(r string) bool { return r == "" })
	if len(done) > 0 {
		if e := b.do(ctx, registryTopic, command(append([]string{"SREM", ps.idxPrefix + node}, done...)...)); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// LeavePresence implements wsroom.PresenceBroker: the node stops
// beating, claims itself and removes its presence as a cleaner would,
// returning the users who left a room. If it fails midway, the cluster
// finishes the cleanup once the node's ttl has passed.
func (b *Broker) LeavePresence(ctx context.Context) ([]wsroom.PresenceEvent, error) {
	ps, err := b.presence()
	if err != nil {
		return nil, err
	}
	ps.order.Lock()
	defer ps.order.Unlock()
	ps.mu.Lock()
	if ps.leaving {
		ps.mu.Unlock()
		return nil, nil
	}
	ps.leaving = true
	ps.mu.Unlock()
	if err := b.do(ctx, registryTopic, newCall(presLeave, 3, ps.nodesKey, ps.deadKey, ps.sinceKey, ps.node, ps.ttlArgs)); err != nil {
		return nil, err
	}
	var left []wsroom.PresenceEvent
	err = b.cleanNode(ctx, ps, ps.node, func(room, user string, info []byte) {
		left = append(left, wsroom.PresenceEvent{Room: room, UserID: user, Info: info})
	})
	ps.mu.Lock()
	clear(ps.mirror)
	clear(ps.dirty)
	ps.mu.Unlock()
	return left, err
}

// RoomPresence implements wsroom.PresenceBroker. A room not kept is
// read whole: one ZRANGE of its sorted set, which comes sorted by user
// ID, between two GETs of its version, all in one round trip on one
// connection. If both GETs find the same version, nothing changed the
// room in between: the members are exactly the room at that version,
// and a room of at least Options.PresenceCacheMin users is kept (at most
// maxCachedRooms rooms, any other room making way for a new one).
//
// A kept room (at version v0) is asked for its changes instead: one
// script (presDelta) reads the current version v1 and the entries of
// the room's change log newer than v0, atomically. If v1 is v0, the
// answer is a copy of the kept one. Otherwise the entries must link
// from v0 to v1 (each entry's prev is the version of the one before it,
// the first's is v0, the last's version is v1): then they are every
// change of the room from v0 to v1, and applying them to the kept answer
// (each user's last change wins: its new total and info, or its
// departure) gives exactly the room at v1, which is kept instead and
// copied to the caller (see cachedRoom). If they do not link (the log
// was trimmed past v0, or deleted: a script changed more members than
// the log keeps, the room emptied, Redis lost its data; or a change was
// not logged: the room had fewer than minLoggedRoom members), or more
// than maxPresenceLog are newer, the kept answer is dropped (the log
// will never reach back to it again) and the room read whole as above,
// in a second round trip. Every answer is thus the room
// exactly as it was at one moment during the call (unless a room's
// version went back to one a broker keeps: Redis's clock stepped back
// between the room emptying and filling again).
func (b *Broker) RoomPresence(ctx context.Context, room string) ([]wsroom.Presence, error) {
	return b.roomPresence(ctx, room, nil, false)
}

var _ wsroom.PresenceAppender = (*Broker)(nil)

// AppendRoomPresence implements wsroom.PresenceAppender: RoomPresence's
// answer appended to dst. An answer from a kept room (unchanged, or
// brought up to date from its change log) costs no allocation when dst
// has room for it, since its Infos are shared with the kept answer, which
// is never changed: the caller must not modify them.
func (b *Broker) AppendRoomPresence(ctx context.Context, dst []wsroom.Presence, room string) ([]wsroom.Presence, error) {
	return b.roomPresence(ctx, room, dst, true)
}

// roomPresence is RoomPresence appending to dst; shared: the answer may
// share its Infos with the kept one.
func (b *Broker) roomPresence(ctx context.Context, room string, dst []wsroom.Presence, shared bool) ([]wsroom.Presence, error) {
	ps, err := b.presence()
	if err != nil {
		return nil, err
	}
	if len(room) > MaxTopicBytes {
		return nil, ErrTopicTooLong
	}
	caching := b.opts.PresenceCacheMin > 0
	if caching {
		if ce := ps.cached(room); ce != nil {
			out, ok, err := b.roomDelta(ctx, ps, room, ce, dst, shared)
			if err != nil || ok {
				return out, err
			}
		}
	}
	topic := "room:" + room
	rk, _, vk := b.roomKeys("", room)
	var g1, g2 *call
	if caching {
		g1 = command("GET", vk)
		g1.parse = parseOptString
		if err := b.send(topic, g1); err != nil {
			return nil, err
		}
	}
	c := command("ZRANGE", rk, "0", "-1")
	c.parse = b.parseRoomPresence
	if err := b.send(topic, c); err != nil {
		return nil, err
	}
	if caching {
		g2 = command("GET", vk)
		g2.parse = parseOptString
		if err := b.send(topic, g2); err != nil {
			return nil, err
		}
	}
	for _, x := range []*call{g1, c, g2} {
		if x == nil {
			continue
		}
		if err := x.wait(ctx); err != nil {
			return nil, err
		}
	}
	out, _ := c.val.([]wsroom.Presence)
	if caching {
		v1, _ := g1.val.(string)
		v2, _ := g2.val.(string)
		switch {
		case v1 == "" || len(out) < b.opts.PresenceCacheMin:
			ps.drop(room, nil)
		case v1 == v2:
			ps.keep(room, &cachedRoom{version: v1, base: ownInfos(slices.Clone(out))})
		}
	}
	if dst != nil {
		return append(dst, out...), nil
	}
	return out, nil
}

// roomDelta answers from ce, the kept answer of room, and its changes
// since (see RoomPresence); !ok: the room must be read whole.
func (b *Broker) roomDelta(ctx context.Context, ps *presence, room string, ce *cachedRoom, dst []wsroom.Presence, shared bool) (out []wsroom.Presence, ok bool, err error) {
	_, _, vk := b.roomKeys("", room)
	d := newCall(presDelta, 2, vk, b.logKey(room), ce.version, maxPresenceLogArg)
	d.parse = b.parseDelta
	if err := b.do(ctx, "room:"+room, d); err != nil {
		return nil, false, err
	}
	res, _ := d.val.(roomDelta)
	if res.version == ce.version {
		b.cacheHits.Add(1)
		return ce.reply(dst, shared), true, nil
	}
	next, ok := ce.apply(res)
	if !ok {
		// The log will never reach back to ce again.
		ps.drop(room, ce)
		return nil, false, nil
	}
	b.deltaHits.Add(1)
	ps.keep(room, next)
	return next.reply(dst, shared), true, nil
}

var maxPresenceLogArg = strconv.Itoa(maxPresenceLog)

// roomDelta is presDelta's reply: the room's version ("": none) and the
// changes it returned, in order.
type roomDelta struct {
	version string
	changes []roomChange
}

// roomChange is an entry of a room's change log: user's new total
// (0: gone) and info, at version, after prev.
type roomChange struct {
	prev, version string
	user          string
	conns         int
	info          []byte
}

// maxCachedRooms bounds the rooms whose presence a broker keeps.
const maxCachedRooms = 64

// cachedRoom is a room's presence exactly as it was at version: base,
// sorted by user ID, with the changes since base applied (pending: each
// user's last change, sorted by user ID). An answer is one copy of base
// merged with pending, whether the room changed or not; pending becomes
// the base (one more copy) once it holds more than maxPending(len(base))
// users. Never changed once kept: readers use it without a lock.
type cachedRoom struct {
	version string
	base    []wsroom.Presence
	pending []roomChange
}

// maxPending is the most changes kept beside a base of n users.
func maxPending(n int) int { return min(256, max(n/8, 8)) }

// answer returns a copy of the room for a caller, the infos into one
// array (each capped at its length), so that nothing the caller changes
// reaches the cache.
func (ce *cachedRoom) answer() []wsroom.Presence {
	return ownInfos(mergePresence(ce.base, ce.pending))
}

// appendShared appends the room to dst, its infos shared with ce.
func (ce *cachedRoom) appendShared(dst []wsroom.Presence) []wsroom.Presence {
	return appendMerged(dst, ce.base, ce.pending)
}

// reply is ce's answer for RoomPresence (shared false, dst nil) or
// AppendRoomPresence (shared).
func (ce *cachedRoom) reply(dst []wsroom.Presence, shared bool) []wsroom.Presence {
	if shared {
		return ce.appendShared(dst)
	}
	return ce.answer()
}

// apply returns ce brought to d's version by d's changes, if they link
// from ce's version to d's; else false.
func (ce *cachedRoom) apply(d roomDelta) (*cachedRoom, bool) {
	if d.version == "" || len(d.changes) == 0 {
		return nil, false
	}
	at := ce.version
	for _, c := range d.changes {
		if c.prev != at {
			return nil, false
		}
		at = c.version
	}
	if at != d.version {
		return nil, false
	}
	// Each user's last change wins (pending's come first): sorted by
	// user, stable, the last of each run.
	ch := make([]roomChange, 0, len(ce.pending)+len(d.changes))
	ch = append(append(ch, ce.pending...), d.changes...)
	slices.SortStableFunc(ch, func(x, y roomChange) int { return strings.Compare(x.user, y.user) })
	net := ch[:0]
	for i := range ch {
		if i+1 < len(ch) && ch[i+1].user == ch[i].user {
			continue
		}
		net = append(net, ch[i])
	}
	if len(net) > maxPending(len(ce.base)) {
		return &cachedRoom{version: d.version, base: mergePresence(ce.base, net)}, true
	}
	return &cachedRoom{version: d.version, base: ce.base, pending: net}, true
}

// mergePresence returns a new slice of users (sorted by user ID) with
// net's changes (sorted by user ID, one per user) applied. It shares
// the IDs and infos of users and net.
func mergePresence(users []wsroom.Presence, net []roomChange) []wsroom.Presence {
	return appendMerged(make([]wsroom.Presence, 0, len(users)+len(net)), users, net)
}

// appendMerged is mergePresence appending to out.
func appendMerged(out, users []wsroom.Presence, net []roomChange) []wsroom.Presence {
	for _, c := range net {
		i, found := slices.BinarySearchFunc(users, c.user, func(p wsroom.Presence, u string) int { return strings.Compare(p.UserID, u) })
		out = append(out, users[:i]...)
		if found {
			i++
		}
		users = users[i:]
		if c.conns > 0 {
			out = append(out, wsroom.Presence{UserID: c.user, Conns: c.conns, Info: c.info})
		}
	}
	return append(out, users...)
}

func (ps *presence) cached(room string) *cachedRoom {
	ps.cacheMu.Lock()
	defer ps.cacheMu.Unlock()
	return ps.cache[room]
}

func (ps *presence) keep(room string, ce *cachedRoom) {
	ps.cacheMu.Lock()
	defer ps.cacheMu.Unlock()
	if ps.cache == nil {
		ps.cache = make(map[string]*cachedRoom)
	}
	if _, ok := ps.cache[room]; !ok && len(ps.cache) >= maxCachedRooms {
		for r := range ps.cache { // any other room makes way
			delete(ps.cache, r)
			break
		}
	}
	ps.cache[room] = ce
}

// drop forgets room's kept answer, if it is ce (any, if ce is nil).
func (ps *presence) drop(room string, ce *cachedRoom) {
	ps.cacheMu.Lock()
	if cur := ps.cache[room]; ce == nil || cur == ce {
		delete(ps.cache, room)
	}
	ps.cacheMu.Unlock()
}

// ownInfos copies the infos of users into one new array (each capped
// at its length), so that users no longer shares them.
func ownInfos(users []wsroom.Presence) []wsroom.Presence {
	n := 0
	for _, u := range users {
		n += len(u.Info)
	}
	if n == 0 {
		return users
	}
	infos := make([]byte, 0, n)
	for i := range users {
		if k := len(users[i].Info); k > 0 {
			infos = append(infos, users[i].Info...)
			users[i].Info = infos[len(infos)-k : len(infos) : len(infos)]
		}
	}
	return users
}

// UserNodes implements wsroom.PresenceBroker: one script on the
// registry reads the user's count on each live node.
func (b *Broker) UserNodes(ctx context.Context, user string) (map[string]int, error) {
	ps, err := b.presence()
	if err != nil {
		return nil, err
	}
	c := newCall(presUserNodes, 1, ps.nodesKey, ps.onPrefix, user)
	c.parse = parseCounts
	if err := b.do(ctx, registryTopic, c); err != nil {
		return nil, err
	}
	out, _ := c.val.(map[string]int)
	if out == nil {
		out = map[string]int{}
	}
	return out, nil
}

// PresenceRooms implements wsroom.PresenceBroker: one script on the
// registry gathers the rooms of the nodes' indexes, then one ZCARD per
// room (pipelined) counts its users.
func (b *Broker) PresenceRooms(ctx context.Context) ([]wsroom.RoomCount, error) {
	ps, err := b.presence()
	if err != nil {
		return nil, err
	}
	c := newCall(presRooms, 2, ps.nodesKey, ps.deadKey, ps.idxPrefix)
	c.parse = parseStrings
	if err := b.do(ctx, registryTopic, c); err != nil {
		return nil, err
	}
	rooms, _ := c.val.([]string)
	lens := make([]*call, len(rooms))
	for i, room := range rooms {
		rk, _, _ := b.roomKeys("", room)
		lens[i] = command("ZCARD", rk)
		if err := b.send("room:"+room, lens[i]); err != nil {
			return nil, err
		}
	}
	out := make([]wsroom.RoomCount, 0, len(rooms))
	for i, l := range lens {
		if err := l.wait(ctx); err != nil {
			return nil, err
		}
		if l.rep.n > 0 {
			out = append(out, wsroom.RoomCount{Room: rooms[i], Users: int(l.rep.n)})
		}
	}
	slices.SortFunc(out, func(a, b wsroom.RoomCount) int { return strings.Compare(a.Room, b.Room) })
	return out, nil
}

// Parsers of the presence replies.

type userInfo struct {
	user string
	info []byte
}

type scanResult struct {
	cursor string
	items  []string
}

// parseOptString reads a bulk string (val: string) or nil (val: nil).
func parseOptString(c *call, r *respReader, first []byte) (reply, error) {
	b, isNil, err := r.bulkAfter(first, maxSmallBulk)
	if err == nil && !isNil {
		c.val = string(b)
	}
	return reply{}, err
}

// parseStrings reads an array of bulk strings (val: []string).
func parseStrings(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	var out []string
	for range max(n, 0) {
		b, _, err := r.nextBulk(MaxTopicBytes)
		if err != nil {
			return reply{}, err
		}
		out = append(out, string(b))
	}
	c.val = out
	return reply{}, nil
}

// parseScan reads an SSCAN reply (val: scanResult).
func parseScan(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	if n != 2 {
		return reply{}, fmt.Errorf("%w: SSCAN reply of %d elements", errProtocol, n)
	}
	cur, _, err := r.nextBulk(32)
	if err != nil {
		return reply{}, err
	}
	res := scanResult{cursor: string(cur)}
	l, err := r.line()
	if err != nil {
		return reply{}, err
	}
	sub := &call{}
	if _, err := parseStrings(sub, r, l); err != nil {
		return reply{}, err
	}
	res.items, _ = sub.val.([]string)
	c.val = res
	return reply{}, nil
}

// parseLeft reads presCleanRoom's reply (val: []userInfo).
func (b *Broker) parseLeft(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	if n%2 != 0 {
		return reply{}, fmt.Errorf("%w: odd reply of %d elements", errProtocol, n)
	}
	var out []userInfo
	for i := int64(0); i < n; i += 2 {
		u, _, err := r.nextBulk(MaxTopicBytes)
		if err != nil {
			return reply{}, err
		}
		user := string(u)
		info, _, err := r.nextBulk(b.opts.MaxPayload)
		if err != nil {
			return reply{}, err
		}
		out = append(out, userInfo{user, cloneOrNil(info)})
	}
	c.val = out
	return reply{}, nil
}

// parseCounts reads {name, count, …} (val: map[string]int).
func parseCounts(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	if n%2 != 0 {
		return reply{}, fmt.Errorf("%w: odd reply of %d elements", errProtocol, n)
	}
	out := make(map[string]int, n/2)
	for i := int64(0); i < n; i += 2 {
		k, _, err := r.nextBulk(MaxTopicBytes)
		if err != nil {
			return reply{}, err
		}
		name := string(k)
		v, err := r.nextInt()
		if err != nil {
			return reply{}, err
		}
		if v > 0 {
			out[name] = int(v)
		}
	}
	c.val = out
	return reply{}, nil
}

// parseRoomPresence reads the ZRANGE of a room's sorted set (val:
// []wsroom.Presence, in the set's order). The user IDs are substrings of
// one string, and the infos sub-slices of few arrays, so that a room of
// many users costs few allocations.
func (b *Broker) parseRoomPresence(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	k := min(max(n, 0), 1<<16)
	out := make([]wsroom.Presence, 0, k)
	ends := make([]int32, 0, k)
	var ids strings.Builder
	ids.Grow(int(k) * 12)
	var infos []byte
	for range max(n, 0) {
		m, _, err := r.nextBulk(b.maxMember())
		if err != nil {
			return reply{}, err
		}
		user, count, info, err := parseMember(m)
		if err != nil {
			return reply{}, err
		}
		ids.Write(user)
		ends = append(ends, int32(ids.Len()))
		p := wsroom.Presence{Conns: int(count)}
		if len(info) > 0 {
			// A sub-slice stays valid when infos grows into a new array.
			infos = append(infos, info...)
			p.Info = infos[len(infos)-len(info) : len(infos) : len(infos)]
		}
		out = append(out, p)
	}
	all, start := ids.String(), int32(0)
	for i, end := range ends {
		out[i].UserID = all[start:end]
		start = end
	}
	c.val = out
	return reply{}, nil
}

// maxMember is the longest member of a room's sorted set (or entry of
// its change log) the broker reads.
func (b *Broker) maxMember() int { return 2*24 + MaxTopicBytes + 32 + b.opts.MaxPayload }

// parseMember splits a member of a room's sorted set,
// "<user>\x00<total>:<info>", or the member part of a change log entry
// (total 0: the user left).
func parseMember(m []byte) (user []byte, total int64, info []byte, err error) {
	nul := bytes.IndexByte(m, 0)
	colon := -1
	if nul >= 0 {
		colon = bytes.IndexByte(m[nul:], ':')
	}
	if colon <= 1 {
		return nil, 0, nil, fmt.Errorf("%w: presence member %q", errProtocol, clip(m))
	}
	total, err = parseInt(m[nul+1 : nul+colon])
	return m[:nul], total, m[nul+colon+1:], err
}

// parseDelta reads presDelta's reply (val: roomDelta).
func (b *Broker) parseDelta(c *call, r *respReader, first []byte) (reply, error) {
	n, err := arrayLen(first)
	if err != nil {
		return reply{}, err
	}
	var d roomDelta
	if n <= 0 {
		c.val = d
		return reply{}, nil
	}
	v, _, err := r.nextBulk(24)
	if err != nil {
		return reply{}, err
	}
	d.version = string(v)
	d.changes = make([]roomChange, 0, min(n-1, maxPresenceLog))
	for range n - 1 {
		e, _, err := r.nextBulk(b.maxMember())
		if err != nil {
			return reply{}, err
		}
		ch, err := parseChange(e)
		if err != nil {
			return reply{}, err
		}
		d.changes = append(d.changes, ch)
	}
	c.val = d
	return reply{}, nil
}

// parseChange parses an entry of a room's change log,
// "<prev> <version> <member>" (a total of 0 or less: the user left).
func parseChange(e []byte) (roomChange, error) {
	prev, rest, ok1 := bytes.Cut(e, []byte{' '})
	version, m, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(prev) == 0 || len(version) == 0 {
		return roomChange{}, fmt.Errorf("%w: presence change %q", errProtocol, clip(e))
	}
	user, total, info, err := parseMember(m)
	if err != nil {
		return roomChange{}, err
	}
	return roomChange{prev: string(prev), version: string(version), user: string(user), conns: int(total), info: cloneOrNil(info)}, nil
}

func cloneOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
