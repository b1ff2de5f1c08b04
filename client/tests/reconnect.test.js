// Reconnection: which close codes are retried, the backoff's bounds and
// jitter, its reset after a stable connection, connect timeouts, URL
// lists, and close().

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';

import { backoffDelay, shouldReconnect, RECONNECT_DEFAULTS, WsroomClient } from '../wsroom.js';
import { startServer, wsURL, record, client, WebSocket } from './helpers.js';

test('backoffDelay: exponential, capped, jittered within its bounds', () => {
  const o = { min: 100, max: 1000, factor: 2, jitter: 0.5 };
  // random() = 0: the bound itself; random() → 1: half of it.
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10].map(n => backoffDelay(n, o, () => 0)), [100, 200, 400, 800, 1000, 1000, 1000]);
  assert.deepEqual([0, 1, 2, 3, 4].map(n => backoffDelay(n, o, () => 0.999999)), [50, 100, 200, 400, 500]);
  // Full jitter: anything from 0 to the bound.
  assert.equal(backoffDelay(3, { ...o, jitter: 1 }, () => 0.999999), 0);
  assert.equal(backoffDelay(3, { ...o, jitter: 0 }, () => 0.7), 800);
  // With Math.random: always within [bound/2, bound], and spread out.
  for (let n = 0; n < 8; n++) {
    const bound = Math.min(1000, 100 * 2 ** n);
    const seen = new Set();
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(n, o);
      assert.ok(d >= bound / 2 && d <= bound, `attempt ${n}: ${d} not in [${bound / 2}, ${bound}]`);
      seen.add(d);
    }
    assert.ok(seen.size > 10, `attempt ${n}: only ${seen.size} distinct delays in 200`);
  }
  // Defaults.
  assert.equal(backoffDelay(0, undefined, () => 0), RECONNECT_DEFAULTS.min);
  assert.equal(backoffDelay(100, undefined, () => 0), RECONNECT_DEFAULTS.max);
});

test('shouldReconnect: the documented rule', () => {
  const yes = [1001, 1005, 1006, 1009, 1011, 1012, 1013, 1014, 3000, 3499, 4000, 4499];
  const no = [1000, 1002, 1003, 1007, 1008, 1010, 1015, 3500, 3999, 4500, 4999];
  for (const code of yes) assert.equal(shouldReconnect(code, ''), true, String(code));
  for (const code of no) assert.equal(shouldReconnect(code, ''), false, String(code));
  assert.equal(shouldReconnect(1008, 'slow consumer'), true);
  assert.equal(shouldReconnect(1008, 'too many connections for this user'), false);
});

test('close codes against a real hub', async t => {
  const srv = await startServer(t);
  const fast = { min: 20, max: 20, jitter: 0 };
  const cases = [
    { code: 1000, reason: 'bye', again: false },
    { code: 4500, reason: 'banned', again: false },
    { code: 1008, reason: 'not allowed', again: false },
    { code: 1008, reason: 'slow consumer', again: true },
    { code: 4000, reason: 'come back', again: true },
    { code: 1011, reason: 'oops', again: true },
  ];
  for (const [i, tc] of cases.entries()) {
    await t.test(`${tc.code} ${tc.reason}`, async t => {
      const user = `close-${i}`;
      const scheduled = []; // the timers the client sets: [delay, set after the close]
      let closed = false;
      const timers = {
        setTimeout(fn, ms) { scheduled.push([ms, closed]); return setTimeout(fn, ms); },
        clearTimeout(id) { clearTimeout(id); },
      };
      const c = client(t, wsURL(srv, { user }), { reconnect: fast, timers });
      const rec = record(c);
      c.on('close', () => { closed = true; });
      await rec.wait(r => r.of('open').length === 1, 'open');
      assert.equal((await srv.ctl('close', { user, code: tc.code, reason: tc.reason })).n, 1);
      await rec.wait(r => r.of('close').length === 1, 'close');
      const [ev] = rec.of('close');
      assert.deepEqual([ev.code, ev.reason, ev.wasClean, ev.willReconnect], [tc.code, tc.reason, true, tc.again]);
      if (tc.again) {
        await rec.wait(r => r.of('open').length === 2, 'reopened');
        assert.equal(rec.of('reconnecting').length, 1);
        assert.deepEqual(scheduled, [[10000, false], [20, false], [10000, true]]);
      } else {
        assert.equal(c.state, 'closed');
        assert.equal(rec.of('reconnecting').length, 0);
        // Only the first connect timeout was ever set: no reconnection timer.
        assert.deepEqual(scheduled, [[10000, false]]);
        assert.equal(rec.of('connecting').length, 1, 'no reconnection attempt');
        await assert.rejects(c.join('x'), /closed/);
        assert.throws(() => c.send('x'), /closed/);
      }
    });
  }

  await t.test('close() ends the client: no reconnection, pending requests rejected', async t => {
    const c = client(t, wsURL(srv, { user: 'closer' }), { reconnect: fast });
    const rec = record(c);
    await rec.wait(r => r.of('open').length === 1, 'open');
    c.close(1000, 'done');
    await rec.wait(r => r.of('close').length === 1, 'close');
    const [ev] = rec.of('close');
    assert.deepEqual([ev.code, ev.reason, ev.willReconnect], [1000, 'done', false]);
    assert.equal(c.state, 'closed');

    // Closing while waiting to reconnect cancels the attempt and rejects
    // what waits for a connection.
    const d = client(t, 'ws://127.0.0.1:9/ws', { reconnect: { min: 10000, max: 10000 } });
    const rd = record(d);
    const pending = d.join('r');
    await rd.wait(r => r.of('reconnecting').length === 1, 'waiting to reconnect');
    d.close();
    await assert.rejects(pending, /closed/);
    assert.equal(d.state, 'closed');
    assert.equal(rd.of('connecting').length, 1);
  });

  await t.test('the attempts reset after a stable connection', async t => {
    const c = client(t, wsURL(srv, { user: 'stable' }), { reconnect: { min: 10, max: 1000, jitter: 0, stable: 50 } });
    const rec = record(c);
    await rec.wait(r => r.of('open').length === 1, 'open');
    await new Promise(res => setTimeout(res, 60)); // outlast `stable` (the condition tested)
    for (let i = 2; i <= 3; i++) {
      await srv.ctl('cut', { user: 'stable' });
      await rec.wait(r => r.of('open').length === i, `open ${i}`);
      await new Promise(res => setTimeout(res, 60));
    }
    assert.deepEqual(rec.of('reconnecting').map(r => [r.attempt, r.delay]), [[0, 10], [0, 10]]);
  });
});

test('backoff against a port that refuses: the delays and their bounds', async t => {
  // Find a free port, then close it: connections are refused at once.
  const port = await new Promise(res => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
  const randoms = [0, 0.5, 0.25, 0.999, 0, 0.5];
  let i = 0;
  const o = { min: 20, max: 100, factor: 2, jitter: 0.5 };
  // The timers the client sets, with their delays (then really set).
  const scheduled = [];
  const timers = {
    setTimeout(fn, ms) { const id = setTimeout(fn, ms); scheduled.push([id, ms]); return id; },
    clearTimeout(id) { clearTimeout(id); },
  };
  const c = client(t, `ws://127.0.0.1:${port}/ws`, { reconnect: o, random: () => randoms[i++ % randoms.length], timers, connectTimeout: 60000 });
  const rec = record(c);
  await rec.wait(r => r.of('connecting').length === 7, 'seven attempts');
  c.close();
  const want = [20, 40 * 0.75, 80 * 0.875, Math.round(100 * (1 - 0.4995)), 100, 75];
  assert.deepEqual(rec.of('reconnecting').slice(0, 6).map(r => r.delay), want);
  assert.deepEqual(rec.of('reconnecting').slice(0, 6).map(r => r.attempt), [0, 1, 2, 3, 4, 5]);
  assert.ok(rec.of('close').every(e => e.code === 1006));
  // Each attempt sets its connect timeout, then, refused, the
  // reconnection timer with the delay reported.
  const delays = scheduled.map(([, ms]) => ms).filter(ms => ms !== 60000);
  assert.deepEqual(delays.slice(0, 6), want);
  // What the delays were in fact (not asserted: a busy event loop fires
  // timers late, and Node's loop clock can make them look early).
  const times = type => rec.events.filter(e => e[0] === type).map(e => e[2]);
  const closed = times('close'), started = times('connecting');
  t.diagnostic(`delays wanted ${want.join(' ')} ms; measured ${want.map((_, k) => (started[k + 1] - closed[k]).toFixed(1)).join(' ')} ms`);
});

test('connect timeout: a server that never answers the handshake', async t => {
  const sockets = new Set();
  const silent = createServer(s => { sockets.add(s); s.on('error', () => {}); });
  await new Promise(res => silent.listen(0, '127.0.0.1', res));
  t.after(() => { for (const s of sockets) s.destroy(); silent.close(); });
  const c = client(t, `ws://127.0.0.1:${silent.address().port}/ws`, { connectTimeout: 100, reconnect: { min: 10000, max: 10000 } });
  const rec = record(c);
  await rec.wait(r => r.of('close').length === 1, 'the timeout');
  const [ev] = rec.of('close');
  assert.deepEqual([ev.code, ev.reason, ev.willReconnect], [1006, 'connect timeout', true]);
});

test('a URL list is used in turn, and relative URLs need a page', async t => {
  const srv = await startServer(t);
  const port = await new Promise(res => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
  const dead = `ws://127.0.0.1:${port}/ws`;
  const live = wsURL(srv, { user: 'lister' });
  const c = client(t, [dead, live.replace(/^ws/, 'http')], { reconnect: { min: 5, max: 5, jitter: 0 } });
  const rec = record(c);
  await rec.wait(r => r.of('open').length === 1, 'open on the second URL');
  assert.deepEqual(rec.of('connecting').map(e => new URL(e.url).port), [String(port), new URL(srv.url).port]);
  assert.equal(new URL(rec.of('connecting')[1].url).protocol, 'ws:');

  assert.throws(() => new WsroomClient('/ws', { WebSocket }), /Invalid URL/);
  assert.throws(() => new WsroomClient([], { WebSocket }), /empty/);
});
