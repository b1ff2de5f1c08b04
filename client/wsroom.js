// wsroom.js: the JavaScript client of wsroom's wsroom.v1 protocol
// (docs/protocol.md). An ES module without dependencies, for browsers and
// Node: Node 22+ has a global WebSocket; on Node 20 pass one in the
// options (the `ws` package's, or run node with --experimental-websocket).
//
//   import { WsroomClient } from './wsroom.js';
//   const c = new WsroomClient('wss://example.com/ws', { relay: true });
//   c.on('message', m => console.log(m.room, m.position, m.data));
//   c.on('lost', r => reloadRoom(r.room));
//
// What it does: connects with the wsroom.v1 subprotocol; reconnects with
// exponential backoff and jitter; on every reconnect names each room's last
// position (and its previous connection) so that the server replays what it
// missed, in order, before live messages; re-requests the rooms it joined
// by request; drops a positioned message it has already seen; reports per
// room whether a resume recovered everything ('recovered') or not
// ('lost'). See client/README.md for the API and the guarantee.

/** The subprotocol this client speaks. */
export const PROTOCOL = 'wsroom.v1';

/** The query parameter that carries resume positions in the handshake. */
export const RESUME_PARAM = 'wsroom_resume';

/** Reconnection defaults (milliseconds; jitter is a fraction of the delay). */
export const RECONNECT_DEFAULTS = Object.freeze({
  min: 250,      // the first delay's upper bound
  max: 5000,     // no delay is longer
  factor: 2,     // each failed attempt multiplies the delay's bound
  jitter: 0.5,   // a delay is drawn uniformly from [bound × (1 − jitter), bound]
  stable: 1000,  // a connection open this long resets the attempts to 0
});

/** Default for connectTimeout: from creating the socket to the server's hello. */
export const CONNECT_TIMEOUT = 10000;

/** Default bound of the messages queued while not connected. */
export const MAX_QUEUED = 1024;

/**
 * backoffDelay returns the delay before reconnection attempt `attempt`
 * (0 for the first after a stable connection): a bound of
 * min × factor^attempt, capped at max, of which a random fraction of up
 * to `jitter` is taken away. With jitter 1 this is "full jitter", with 0 no
 * jitter at all. random() must return a number in [0, 1).
 */
export function backoffDelay(attempt, opts = RECONNECT_DEFAULTS, random = Math.random) {
  const o = { ...RECONNECT_DEFAULTS, ...opts };
  const bound = Math.min(o.max, o.min * Math.pow(o.factor, Math.max(0, attempt)));
  return Math.round(bound * (1 - o.jitter * random()));
}

/**
 * shouldReconnect is the default rule for whether a connection that closed
 * with this code (and reason) is retried. Never after the app's own
 * close(). Otherwise retried: 1001 (going away, e.g. a server restart),
 * 1005 and 1006 (no close frame: a dropped connection or a refused
 * handshake), 1009 (the message that was too big is not sent again),
 * 1011–1014 (server error, restart, try again later, bad gateway),
 * 1008 only with the reason "slow consumer" (the hub's), 3000–3499 and
 * 4000–4499 (app codes meaning "come back"). Not retried: 1000 (the server
 * ended the session), 1002, 1003, 1007, 1010 (the client broke the
 * protocol: a retry would repeat it), 1008 with any other reason (refused
 * by OnConnect or a limit), 1015, 3500–3999 and 4500–4999 (app codes
 * meaning "stay away").
 */
export function shouldReconnect(code, reason = '') {
  if (code === 1008) return reason === 'slow consumer';
  if ((code >= 3000 && code <= 3499) || (code >= 4000 && code <= 4499)) return true;
  return [1001, 1005, 1006, 1009, 1011, 1012, 1013, 1014].includes(code);
}

const NL = 0x0a;
const APP_HEADER = '{}';
const APP_HEADER_BYTES = new Uint8Array([0x7b, 0x7d, NL]);
const utf8 = new TextDecoder('utf-8');

// toWebSocketURL resolves url against the page's location (browsers) and
// turns http(s) into ws(s).
function toWebSocketURL(url) {
  const base = typeof location !== 'undefined' ? location.href : undefined;
  const u = new URL(String(url), base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u;
}

// base64url encodes a string's UTF-8 bytes without padding.
function base64url(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// toBytes returns binary data as a Uint8Array (a view, not a copy).
function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('wsroom: data must be a string, an ArrayBuffer or a typed array');
}

function parseHeader(text) {
  const h = JSON.parse(text);
  if (h === null || typeof h !== 'object' || Array.isArray(h)) throw new Error('header is not a JSON object');
  return h;
}

/**
 * WsroomClient is one logical connection to a wsroom hub, kept up across
 * reconnects. See wsroom.d.ts for every option, event and method.
 */
export class WsroomClient {
  /**
   * @param {string|URL|Array<string|URL>|function(number):(string|URL)} url
   *   the hub's URL (ws:, wss:, http:, https:, or relative to the page); a
   *   list is used in turn, one URL per connection attempt; a function gets
   *   the attempt's number (0, 1, …) and returns the URL.
   * @param {object} [options] see wsroom.d.ts
   */
  constructor(url, options = {}) {
    if (Array.isArray(url)) {
      if (url.length === 0) throw new TypeError('wsroom: the URL list is empty');
      const urls = url.slice();
      this._url = n => urls[n % urls.length];
    } else if (typeof url === 'function') {
      this._url = url;
    } else {
      toWebSocketURL(url); // throws now for a URL that cannot work
      this._url = () => url;
    }
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('wsroom: no WebSocket: pass options.WebSocket (e.g. the ws package\'s) on Node before 22');
    }
    this._reconnect = options.reconnect === false ? null : { ...RECONNECT_DEFAULTS, ...(options.reconnect || {}) };
    this._shouldReconnect = options.shouldReconnect || shouldReconnect;
    this._random = options.random || Math.random;
    this._connectTimeout = options.connectTimeout ?? CONNECT_TIMEOUT;
    this._maxQueued = options.maxQueued ?? MAX_QUEUED;
    this._relay = !!options.relay;
    this._query = options.query || null;
    // The timers of connect timeouts and reconnection delays.
    const timers = options.timers || globalThis;
    this._setTimeout = (fn, ms) => timers.setTimeout(fn, ms);
    this._clearTimeout = id => timers.clearTimeout(id);
    // By default a listener's exception is rethrown asynchronously, as an
    // uncaught error of its own.
    this._onListenerError = options.onListenerError || (err => setTimeout(() => { throw err; }, 0));

    this._handlers = new Map(); // event type → Set of listeners
    this._rooms = new Map();    // room → {epoch, offset, conn, joined, requested, joinWaiters, leaveWaiters}
    this._requests = new Map(); // request id → {kind: 'join'|'leave', room}
    this._outbox = [];          // frames to send once connected
    this._seq = 0;              // request and relay ids
    this._connects = 0;         // connection attempts so far (the URL list's index)
    this._attempt = 0;          // failed attempts since the last stable connection
    this._ws = null;
    this._timer = null;         // reconnection or connect timeout timer
    this._state = 'idle';
    this._userId = '';
    this._connId = '';
    this._prevConnId = '';
    this._openedAt = 0;
    this._closed = false;
    // Connect on the next microtask, so that listeners added right after
    // construction see the first 'connecting'.
    if (options.connect !== false) queueMicrotask(() => { if (this._state === 'idle' && !this._closed) this._open(); });
  }

  /** 'idle', 'connecting', 'open', 'reconnecting' (waiting to) or 'closed'. */
  get state() { return this._state; }
  /** The user ID the hub gave this client (from the last hello), or ''. */
  get userId() { return this._userId; }
  /** The current connection's ID (from its hello), or '' when not connected. */
  get connId() { return this._state === 'open' ? this._connId : ''; }

  /** on adds a listener and returns a function that removes it. */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /** off removes a listener added with on. */
  off(type, fn) {
    this._handlers.get(type)?.delete(fn);
  }

  _emit(type, ev) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(ev);
      } catch (err) {
        // A listener's exception must not break the connection's state.
        this._onListenerError(err, type);
      }
    }
  }

  /** position returns the room's last position {epoch, offset}, or undefined. */
  position(room) {
    const r = this._rooms.get(room);
    return r && r.epoch !== undefined ? { epoch: r.epoch, offset: r.offset } : undefined;
  }

  /** rooms returns the names of the rooms the current connection is in. */
  rooms() {
    return [...this._rooms].filter(([, r]) => r.joined).map(([name]) => name);
  }

  /** connect starts connecting if the client is idle (constructed with connect: false). */
  connect() {
    if (this._closed) throw new Error('wsroom: the client is closed');
    if (this._state !== 'idle') return;
    this._open();
  }

  _open() {
    this._timer = null;
    const attempt = this._connects++;
    this._state = 'connecting';
    let sock;
    try {
      const url = toWebSocketURL(this._url(attempt));
      if (this._query) for (const [k, v] of Object.entries(this._query)) url.searchParams.set(k, v);
      const resume = this._resumeParam();
      if (resume) url.searchParams.set(RESUME_PARAM, resume);
      else url.searchParams.delete(RESUME_PARAM);
      this._emit('connecting', { attempt, url: url.href });
      sock = new this._WebSocket(url.href, [PROTOCOL]);
    } catch (err) {
      // A malformed URL, a blocked port: nothing a retry can change.
      this._emit('error', { kind: 'connect', error: String(err && err.message || err) });
      this._finish({ code: 1006, reason: String(err && err.message || err), wasClean: false }, false);
      return;
    }
    sock.binaryType = 'arraybuffer';
    this._ws = sock;
    this._hello = false;
    this._timer = this._setTimeout(() => {
      if (this._ws !== sock) return;
      this._drop(sock, { code: 1006, reason: 'connect timeout', wasClean: false });
    }, this._connectTimeout);
    sock.onmessage = ev => { if (this._ws === sock) this._receive(sock, ev.data); };
    sock.onclose = ev => {
      if (this._ws !== sock) return;
      this._drop(sock, { code: ev.code, reason: ev.reason || '', wasClean: !!ev.wasClean });
    };
    // An error is followed by a close event, which says more; but some
    // implementations (Node 20's experimental WebSocket) fire no close when
    // the connection is refused, and a socket still connecting after an
    // error never will: it failed.
    sock.onerror = () => {
      if (this._ws !== sock) return;
      if (sock.readyState === 0) {
        this._drop(sock, { code: 1006, reason: '', wasClean: false });
        return;
      }
      setTimeout(() => {
        if (this._ws === sock) this._drop(sock, { code: 1006, reason: '', wasClean: false });
      }, 1000);
    };
    sock.onopen = () => {
      if (this._ws !== sock) return;
      if (sock.protocol !== PROTOCOL) {
        this._emit('error', { kind: 'protocol', error: `the server did not accept ${PROTOCOL}` });
        this._drop(sock, { code: 1002, reason: `no ${PROTOCOL}`, wasClean: false }, false);
      }
    };
  }

  // _resumeParam encodes every room's position and the previous connection.
  _resumeParam() {
    const r = {};
    let any = false, conn = this._prevConnId;
    for (const [name, room] of this._rooms) {
      if (room.epoch === undefined) continue;
      r[name] = [room.epoch, room.offset];
      any = true;
    }
    if (!any && !conn) return '';
    const o = {};
    if (conn) o.c = conn;
    if (any) o.r = r;
    return base64url(JSON.stringify(o));
  }

  // _drop ends the connection sock: detaches it, then closes or retries.
  _drop(sock, info, retry = true) {
    sock.onopen = sock.onmessage = sock.onclose = null;
    sock.onerror = () => {};
    if (sock.readyState === 0 || sock.readyState === 1) {
      try { sock.close(); } catch { /* a socket that never opened */ }
    }
    this._finish(info, retry);
  }

  // _finish handles the end of the current connection: everything it was in
  // is left, pending requests stay pending until the next connection
  // answers them (or close rejects them), and a reconnection is scheduled
  // if the rule allows it.
  _finish(info, retry) {
    this._clearTimeout(this._timer);
    this._timer = null;
    const wasOpen = this._state === 'open';
    this._ws = null;
    if (this._connId) this._prevConnId = this._connId;
    this._connId = '';
    for (const [name, room] of this._rooms) {
      room.joined = false;
      if (room.leaveWaiters.length > 0) {
        // A leave asked for on this connection: with it gone, the client
        // is out of the room, and will not ask for it again.
        this._rooms.delete(name);
        for (const w of room.leaveWaiters.splice(0)) w.resolve({ room: name });
      }
    }
    this._requests.clear();
    if (wasOpen && performance.now() - this._openedAt >= (this._reconnect ? this._reconnect.stable : 0)) {
      this._attempt = 0;
    }
    const again = retry && !this._closed && this._reconnect !== null && this._shouldReconnect(info.code, info.reason);
    let delay;
    if (again) {
      delay = backoffDelay(this._attempt++, this._reconnect, this._random);
      this._state = 'reconnecting';
      this._timer = this._setTimeout(() => this._open(), delay);
    } else {
      this._state = 'closed';
      this._closed = true;
      this._rejectAll(new Error(`wsroom: closed (${info.code}${info.reason ? ' ' + info.reason : ''})`));
    }
    this._emit('close', { code: info.code, reason: info.reason, wasClean: info.wasClean, willReconnect: again, delay });
    if (again) this._emit('reconnecting', { attempt: this._attempt - 1, delay });
  }

  _rejectAll(err) {
    for (const room of this._rooms.values()) {
      for (const w of room.joinWaiters.splice(0)) w.reject(err);
      for (const w of room.leaveWaiters.splice(0)) w.reject(err);
    }
    this._requests.clear();
    this._outbox = [];
  }

  /** close ends the client for good: no reconnection after it. */
  close(code = 1000, reason = '') {
    if (this._closed) return;
    this._closed = true;
    this._clearTimeout(this._timer);
    this._timer = null;
    const sock = this._ws;
    if (sock) {
      sock.onopen = sock.onmessage = null;
      sock.onerror = () => {}; // ws reports closing a socket that is still connecting as an error
      // Report the close when it completes (or at once if it never opened),
      // with the code and reason given here.
      sock.onclose = ev => this._finish({ code, reason, wasClean: !!ev.wasClean }, false);
      try {
        sock.close(code, reason);
      } catch {
        sock.close();
      }
      if (sock.readyState === 3) sock.onclose({ code, reason, wasClean: false });
    } else {
      this._finish({ code, reason, wasClean: true }, false);
    }
  }

  // _receive handles one frame from the hub.
  _receive(sock, raw) {
    let header, data, binary = false;
    try {
      if (typeof raw === 'string') {
        const i = raw.indexOf('\n');
        if (i < 0) throw new Error('a frame without a header line');
        header = parseHeader(raw.slice(0, i));
        data = raw.slice(i + 1);
      } else {
        const u8 = toBytes(raw);
        const i = u8.indexOf(NL);
        if (i < 0) throw new Error('a frame without a header line');
        header = parseHeader(utf8.decode(u8.subarray(0, i)));
        data = u8.subarray(i + 1);
        binary = true;
      }
    } catch (err) {
      this._emit('error', { kind: 'protocol', error: `unreadable frame from the server: ${err.message}` });
      this._drop(sock, { code: 1002, reason: 'unreadable frame', wasClean: false }, false);
      return;
    }
    if (typeof header.t === 'string') {
      this._control(sock, header);
      return;
    }
    this._message(header, data, binary);
  }

  _room(name) {
    let r = this._rooms.get(name);
    if (!r) {
      r = { epoch: undefined, offset: 0, conn: '', joined: false, requested: false, joinWaiters: [], leaveWaiters: [] };
      this._rooms.set(name, r);
    }
    return r;
  }

  _message(h, data, binary) {
    const m = { data, binary };
    if (typeof h.r === 'string') {
      m.room = h.r;
      if (typeof h.e === 'string' && typeof h.o === 'number') {
        const r = this._room(h.r);
        if (r.epoch === h.e && h.o <= r.offset) return; // seen already
        if (r.epoch !== undefined && r.epoch !== h.e && r.joined) {
          // The history started anew while we were in the room.
          this._emit('lost', { room: h.r, reason: 'epoch', position: { epoch: h.e, offset: h.o - 1 } });
        }
        r.epoch = h.e;
        r.offset = h.o;
        m.position = { epoch: h.e, offset: h.o };
        m.replayed = !r.joined;
      }
    }
    if (this._relay && !binary) {
      let env;
      try { env = JSON.parse(data); } catch { env = null; }
      if (env !== null && typeof env === 'object' && !Array.isArray(env)) {
        if (typeof env.from === 'string' && 'data' in env) {
          m.from = env.from;
          m.data = env.data;
          m.direct = typeof env.room !== 'string';
          if (!m.direct) m.room = env.room;
        } else if (typeof env.error === 'string' && m.room === undefined) {
          this._emit('error', { kind: 'relay', error: env.error, id: typeof env.id === 'string' ? env.id : undefined });
          return;
        }
      }
    }
    this._emit('message', m);
  }

  _control(sock, h) {
    switch (h.t) {
      case 'hello':
        this._onHello(sock, h);
        return;
      case 'joined': {
        if (typeof h.r !== 'string') return;
        const r = this._room(h.r);
        const req = typeof h.id === 'string' ? this._requests.get(h.id) : undefined;
        if (req) this._requests.delete(h.id);
        const wasJoined = r.joined;
        // A room we had a position in, joined anew without a resume (the
        // server joined it after OnConnect, say): what came in between is
        // not coming.
        let notResumed = false;
        if (!wasJoined && r.epoch !== undefined && typeof h.e === 'string' && typeof h.o === 'number' &&
            h.resumed === undefined && h.lost === undefined && (h.e !== r.epoch || h.o > r.offset)) {
          notResumed = true;
        }
        r.joined = true;
        r.conn = this._connId;
        if (typeof h.e === 'string' && typeof h.o === 'number') {
          // The position the server vouches for: everything up to it was
          // sent before this frame (replayed) or came before we joined.
          r.epoch = h.e;
          r.offset = h.o;
        }
        const ev = { room: h.r, requested: !!req };
        if (r.epoch !== undefined) ev.position = { epoch: r.epoch, offset: r.offset };
        if (typeof h.resumed === 'number') ev.resumed = h.resumed;
        if (typeof h.lost === 'string') ev.lost = h.lost;
        else if (notResumed) ev.lost = 'notresumed';
        if (!wasJoined) this._emit('joined', ev);
        if (ev.resumed !== undefined) {
          this._emit('recovered', { room: h.r, count: ev.resumed, position: ev.position });
        } else if (ev.lost !== undefined) {
          this._emit('lost', { room: h.r, reason: ev.lost, position: ev.position });
        }
        for (const w of r.joinWaiters.splice(0)) w.resolve(ev);
        this._flush();
        return;
      }
      case 'left': {
        if (typeof h.r !== 'string') return;
        const r = this._rooms.get(h.r);
        if (typeof h.id === 'string') this._requests.delete(h.id);
        if (!r) return;
        this._rooms.delete(h.r);
        for (const w of r.leaveWaiters.splice(0)) w.resolve({ room: h.r });
        const err = new Error(`wsroom: left ${h.r}`);
        for (const w of r.joinWaiters.splice(0)) w.reject(err);
        if (r.joined) this._emit('left', { room: h.r });
        return;
      }
      case 'error': {
        const req = typeof h.id === 'string' ? this._requests.get(h.id) : undefined;
        const error = typeof h.error === 'string' ? h.error : 'refused';
        if (!req) {
          this._emit('error', { kind: 'request', error, id: h.id });
          return;
        }
        this._requests.delete(h.id);
        const r = this._rooms.get(req.room);
        if (!r) return;
        const err = Object.assign(new Error(`wsroom: ${req.kind} ${req.room}: ${error}`), { room: req.room, reason: error });
        if (req.kind === 'join') {
          r.requested = false;
          if (!r.joined) this._rooms.delete(req.room);
          for (const w of r.joinWaiters.splice(0)) w.reject(err);
          this._emit('error', { kind: 'join', room: req.room, error, id: h.id });
        } else {
          for (const w of r.leaveWaiters.splice(0)) w.reject(err);
          this._emit('error', { kind: 'leave', room: req.room, error, id: h.id });
        }
        return;
      }
      default:
        return; // a kind this client does not know: ignored (forward compatible)
    }
  }

  _onHello(sock, h) {
    if (this._hello) return;
    this._hello = true;
    this._clearTimeout(this._timer);
    this._timer = null;
    const reconnected = this._userId !== '' || this._prevConnId !== '';
    this._userId = typeof h.u === 'string' ? h.u : '';
    this._connId = typeof h.c === 'string' ? h.c : '';
    this._state = 'open';
    this._openedAt = performance.now();
    // Rooms joined by request are asked for again, from their position.
    for (const [name, r] of this._rooms) {
      if (r.requested) this._sendJoin(name, r);
    }
    this._emit('open', { userId: this._userId, connId: this._connId, reconnected });
    this._flush();
  }

  _sendJoin(name, r) {
    const id = String(++this._seq);
    const req = { t: 'join', r: name, id };
    if (r.epoch !== undefined) {
      req.e = r.epoch;
      req.o = r.offset;
      const prev = r.conn || this._prevConnId;
      if (prev) req.c = prev;
    }
    this._requests.set(id, { kind: 'join', room: name });
    this._ws.send(JSON.stringify(req) + '\n');
  }

  /**
   * join asks the hub to let this client into room (Options.AuthorizeJoin
   * decides). It resolves with the 'joined' event once in, rejects with
   * the hub's reason if refused. The room is asked for again, from its
   * last position, on every reconnect until leave().
   */
  join(room) {
    if (this._closed) return Promise.reject(new Error('wsroom: the client is closed'));
    if (typeof room !== 'string' || room === '') return Promise.reject(new TypeError('wsroom: a room name is a non-empty string'));
    const r = this._room(room);
    r.requested = true;
    return new Promise((resolve, reject) => {
      r.joinWaiters.push({ resolve, reject });
      if (this._state === 'open') this._sendJoin(room, r);
      // else: sent with the other requested rooms once the hello arrives.
    });
  }

  /**
   * leave asks the hub to take this client out of room (always allowed).
   * It resolves once out. The room is no longer resumed nor re-requested.
   */
  leave(room) {
    if (this._closed) return Promise.reject(new Error('wsroom: the client is closed'));
    const r = this._rooms.get(room);
    if (!r) return Promise.resolve({ room });
    r.requested = false;
    if (this._state !== 'open') {
      this._rooms.delete(room);
      return Promise.resolve({ room });
    }
    return new Promise((resolve, reject) => {
      r.leaveWaiters.push({ resolve, reject });
      const id = String(++this._seq);
      this._requests.set(id, { kind: 'leave', room });
      this._ws.send(JSON.stringify({ t: 'leave', r: room, id }) + '\n');
    });
  }

  /**
   * send sends an application message (string: text; ArrayBuffer or typed
   * array: binary) to the hub's OnMessage. While not connected it is
   * queued (at most maxQueued messages) and sent after the next hello.
   */
  send(data) {
    let frame;
    if (typeof data === 'string') {
      frame = APP_HEADER + '\n' + data;
    } else {
      const bytes = toBytes(data);
      frame = new Uint8Array(APP_HEADER_BYTES.length + bytes.length);
      frame.set(APP_HEADER_BYTES);
      frame.set(bytes, APP_HEADER_BYTES.length);
    }
    this._enqueue(frame);
  }

  // _writable reports whether frames can go out now: after the hello, on
  // a socket that is not closing (a frame sent on a closing socket would be
  // dropped silently; queued, it goes out after the next hello).
  _writable() {
    return this._state === 'open' && this._ws.readyState === 1;
  }

  _enqueue(frame) {
    if (this._closed) throw new Error('wsroom: the client is closed');
    if (this._writable() && this._outbox.length === 0) {
      this._ws.send(frame);
      return;
    }
    if (this._outbox.length >= this._maxQueued) {
      throw new Error(`wsroom: not connected and ${this._maxQueued} messages are queued already`);
    }
    this._outbox.push(frame);
    this._flush();
  }

  _flush() {
    while (this._outbox.length > 0 && this._writable()) this._ws.send(this._outbox.shift());
  }

  /**
   * sendTo relays data (any JSON value) to every connection of the named
   * users (the hub's Relay handler must be installed). It returns the
   * envelope's id; a refusal comes back as an 'error' event of kind
   * 'relay' with that id.
   */
  sendTo(users, data, opts = {}) {
    if (!Array.isArray(users) || users.length === 0) throw new TypeError('wsroom: sendTo needs a non-empty array of user IDs');
    return this._relayEnvelope({ to: users, data }, opts);
  }

  /**
   * publish relays data (any JSON value) to everyone else in room, which
   * this client must be in. In a room with history the message gets a
   * position and is replayed to those who missed it. Returns the id.
   */
  publish(room, data, opts = {}) {
    if (typeof room !== 'string' || room === '') throw new TypeError('wsroom: publish needs a room name');
    const env = { room, data };
    if (opts.to) env.to = opts.to;
    return this._relayEnvelope(env, opts);
  }

  _relayEnvelope(env, opts) {
    const id = opts.id !== undefined ? String(opts.id) : 'r' + (++this._seq);
    env.id = id;
    if (env.data === undefined) env.data = null;
    this.send(JSON.stringify(env));
    return id;
  }
}
