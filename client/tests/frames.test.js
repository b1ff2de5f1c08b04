// The client's handling of frames a correct hub never sends (duplicates,
// an epoch that changes under a member, malformed headers, unknown
// kinds) and of what it sends (the resume parameter, request headers):
// driven through a scripted WebSocket, since a real hub cannot be made to
// misbehave. Everything a real hub does is tested against one in the
// other files.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { WsroomClient, PROTOCOL, RESUME_PARAM } from '../wsroom.js';
import { record } from './helpers.js';

// ScriptedSocket is a WebSocket whose server side the test plays.
class ScriptedSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.protocol = '';
    this.sent = [];
    ScriptedSocket.all.push(this);
  }
  send(data) { this.sent.push(data); }
  close(code = 1005, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason, wasClean: true }));
  }
  // The server's side.
  accept(protocol = PROTOCOL) {
    this.readyState = 1;
    this.protocol = protocol;
    this.onopen?.({});
  }
  frame(header, data = '') { this.onmessage?.({ data: JSON.stringify(header) + '\n' + data }); }
  binary(header, bytes) {
    const h = new TextEncoder().encode(JSON.stringify(header) + '\n');
    const b = new Uint8Array(h.length + bytes.length);
    b.set(h);
    b.set(bytes, h.length);
    this.onmessage?.({ data: b.buffer });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '', wasClean: false });
  }
}

function scripted(t, options = {}) {
  ScriptedSocket.all = [];
  const c = new WsroomClient('ws://example.test/ws', { WebSocket: ScriptedSocket, reconnect: { min: 1, max: 1, jitter: 0 }, ...options });
  t.after(() => c.close());
  return c;
}

const nextSocket = async n => {
  while (ScriptedSocket.all.length < n) await new Promise(res => setTimeout(res, 1));
  return ScriptedSocket.all[n - 1];
};

function resumeOf(url) {
  const v = new URL(url).searchParams.get(RESUME_PARAM);
  if (v === null) return null;
  const b64 = v.replace(/-/g, '+').replace(/_/g, '/');
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), ch => ch.charCodeAt(0))));
}

test('positions: duplicates dropped, resume parameter, epoch change under a member', async t => {
  const c = scripted(t, { relay: true });
  const rec = record(c);
  const s1 = await nextSocket(1);
  assert.deepEqual(s1.protocols, [PROTOCOL]);
  assert.equal(resumeOf(s1.url), null, 'nothing to resume on the first connection');
  s1.accept();
  s1.frame({ t: 'hello', u: 'ü', c: 'n-1', future: true });
  s1.frame({ t: 'joined', r: 'a/ü', e: 'E1', o: 4 });
  s1.frame({ r: 'a/ü', e: 'E1', o: 5 }, 'five');
  s1.frame({ r: 'a/ü', e: 'E1', o: 5 }, 'five again');
  s1.frame({ r: 'a/ü', e: 'E1', o: 3 }, 'older');
  s1.frame({ r: 'a/ü', e: 'E1', o: 7 }, 'seven'); // 6 was someone's BroadcastExcept of us: a gap is normal
  s1.frame({ t: 'nextgen', r: 'a/ü' });           // unknown kinds are ignored
  assert.deepEqual(rec.messages().map(m => m.data), ['five', 'seven']);
  assert.deepEqual(c.position('a/ü'), { epoch: 'E1', offset: 7 });

  // The history starts anew while we are in the room.
  s1.frame({ r: 'a/ü', e: 'E2', o: 1 }, 'new one');
  assert.deepEqual(rec.of('lost'), [{ room: 'a/ü', reason: 'epoch', position: { epoch: 'E2', offset: 0 } }]);
  assert.deepEqual(c.position('a/ü'), { epoch: 'E2', offset: 1 });

  // Binary data keeps its bytes, after a header line.
  s1.binary({ r: 'a/ü', e: 'E2', o: 2 }, new Uint8Array([0, 10, 255]));
  const last = rec.messages().at(-1);
  assert.equal(last.binary, true);
  assert.deepEqual([...last.data], [0, 10, 255]);

  // Reconnect: the parameter names the previous connection and positions.
  const joinP = c.join('req');
  s1.drop();
  const s2 = await nextSocket(2);
  assert.deepEqual(resumeOf(s2.url), { c: 'n-1', r: { 'a/ü': ['E2', 2] } });
  s2.accept();
  s2.frame({ t: 'hello', u: 'ü', c: 'n-2' });
  // The request went out on the first connection, unanswered; it is asked
  // for again after the hello (no position yet).
  assert.deepEqual(s1.sent.map(f => JSON.parse(f.split('\n')[0])), [{ t: 'join', r: 'req', id: '1' }]);
  assert.deepEqual(s2.sent.map(f => JSON.parse(f.split('\n')[0])), [{ t: 'join', r: 'req', id: '2' }]);
  s2.frame({ r: 'a/ü', e: 'E2', o: 2 }, 'replayed duplicate');
  s2.frame({ r: 'a/ü', e: 'E2', o: 3 }, 'replayed');
  s2.frame({ t: 'joined', r: 'a/ü', e: 'E2', o: 3, resumed: 1 });
  s2.frame({ t: 'joined', r: 'req', e: 'R', o: 9, id: '2' });
  const joined = await joinP;
  assert.deepEqual(joined, { room: 'req', requested: true, position: { epoch: 'R', offset: 9 } });
  assert.deepEqual(rec.messages().slice(-1).map(m => [m.data, m.replayed]), [['replayed', true]]);
  assert.deepEqual(rec.of('recovered'), [{ room: 'a/ü', count: 1, position: { epoch: 'E2', offset: 3 } }]);

  // And again: the requested room goes with its position and connection.
  s2.drop();
  const s3 = await nextSocket(3);
  assert.deepEqual(resumeOf(s3.url), { c: 'n-2', r: { 'a/ü': ['E2', 3], req: ['R', 9] } });
  s3.accept();
  s3.frame({ t: 'hello', u: 'ü', c: 'n-3' });
  assert.deepEqual(JSON.parse(s3.sent[0].split('\n')[0]), { t: 'join', r: 'req', id: '3', e: 'R', o: 9, c: 'n-2' });
});

test('outgoing frames: a header line, queued while away', async t => {
  const c = scripted(t);
  c.send('early');
  c.send(new Uint8Array([1, 2]));
  const id = c.publish('r', { x: 1 });
  const s = await nextSocket(1);
  s.accept();
  assert.equal(s.sent.length, 0, 'nothing before the hello');
  s.frame({ t: 'hello', u: 'u', c: 'c1' });
  assert.equal(s.sent[0], '{}\nearly');
  assert.deepEqual([...s.sent[1]], [0x7b, 0x7d, 0x0a, 1, 2]);
  assert.deepEqual(JSON.parse(s.sent[2].slice(3)), { room: 'r', data: { x: 1 }, id });
  c.sendTo(['a', 'b'], null);
  assert.deepEqual(JSON.parse(s.sent[3].slice(3)), { to: ['a', 'b'], data: null, id: s.sent[3].match(/"id":"([^"]+)"/)[1] });
});

test('a bounded queue while away', async t => {
  const c = scripted(t, { maxQueued: 2 });
  c.send('1');
  c.send('2');
  assert.throws(() => c.send('3'), /2 messages are queued/);
});

test('a malformed frame or a server without the subprotocol ends the client', async t => {
  for (const bad of ['no newline', 'not json\n', '[1]\n', 'null\n']) {
    const c = scripted(t);
    const rec = record(c);
    const s = await nextSocket(1);
    s.accept();
    s.onmessage({ data: bad });
    await rec.wait(r => r.of('close').length === 1, 'close');
    assert.equal(rec.of('error')[0].kind, 'protocol');
    assert.deepEqual([rec.of('close')[0].code, rec.of('close')[0].willReconnect], [1002, false]);
    assert.equal(c.state, 'closed');
  }
  const c = scripted(t);
  const rec = record(c);
  const s = await nextSocket(1);
  s.accept('');
  await rec.wait(r => r.of('close').length === 1, 'close');
  assert.match(rec.of('error')[0].error, /did not accept wsroom\.v1/);
  assert.equal(rec.of('close')[0].willReconnect, false);
});

test('a listener that throws does not break the client', async t => {
  const thrown = [];
  const c = scripted(t, { onListenerError: (err, type) => thrown.push([err.message, type]) });
  const rec = record(c);
  c.on('message', () => { throw new Error('app bug'); });
  const s = await nextSocket(1);
  s.accept();
  s.frame({ t: 'hello', u: 'u', c: 'c1' });
  s.frame({}, 'x');
  s.frame({}, 'y');
  assert.deepEqual(thrown, [['app bug', 'message'], ['app bug', 'message']]);
  assert.deepEqual(rec.messages().map(m => m.data), ['x', 'y']);
  assert.equal(c.state, 'open');
});

test('a leave unanswered when the connection drops is done; a join is asked again', async t => {
  const c = scripted(t);
  const s1 = await nextSocket(1);
  s1.accept();
  s1.frame({ t: 'hello', u: 'u', c: 'c1' });
  const joinA = c.join('a');
  const joinB = c.join('b');
  s1.frame({ t: 'joined', r: 'a', e: 'E', o: 1, id: '1' });
  await joinA;
  const leaving = c.leave('a');
  s1.drop();
  assert.deepEqual(await leaving, { room: 'a' });
  const s2 = await nextSocket(2);
  assert.equal(resumeOf(s2.url).r, undefined, 'a is no longer resumed');
  s2.accept();
  s2.frame({ t: 'hello', u: 'u', c: 'c2' });
  assert.deepEqual(s2.sent.map(f => JSON.parse(f.split('\n')[0]).r), ['b'], 'only b is asked for again');
  const id = JSON.parse(s2.sent[0].split('\n')[0]).id;
  s2.frame({ t: 'joined', r: 'b', id });
  assert.equal((await joinB).room, 'b');
  // A frame sent while the socket is closing waits for the next connection.
  s2.readyState = 2;
  c.send('later');
  assert.equal(s2.sent.length, 1);
  s2.drop();
  const s3 = await nextSocket(3);
  s3.accept();
  s3.frame({ t: 'hello', u: 'u', c: 'c3' });
  assert.deepEqual(s3.sent.slice(-1), ['{}\nlater']);
});
