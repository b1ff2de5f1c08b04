// Resume: after a cut, a server-side close or a restart the client gets
// what it missed, once, in order, before live messages; or is told it
// cannot ('lost').

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, wsURL, record, client, seqs, range, gate } from './helpers.js';

// The tests hold each client's reconnection (gate) until they have done
// what is to happen while it is away.

// closes counts the 'close' events so far.
const closes = r => r.of('close').length;

test('resume', async t => {
  const srv = await startServer(t);

  await t.test('after a server-side cut: no gap, no duplicate, replayed before live', async t => {
    const g = gate();
    const c = client(t, wsURL(srv, { user: 'u1', rooms: 'r1' }), { timers: g.timers });
    const rec = record(c);
    await rec.wait(r => r.of('joined').length === 1, 'joined');
    const firstConn = c.connId;
    await srv.ctl('broadcast', { room: 'r1', n: 50 });
    await rec.wait(r => r.messages('r1').length === 50, '50 live messages');

    assert.equal((await srv.ctl('cut', { user: 'u1' })).n, 1);
    await rec.wait(r => closes(r) === 1, 'the cut');
    const [closed] = rec.of('close');
    assert.equal(closed.code, 1006);
    assert.equal(closed.willReconnect, true);
    assert.equal(c.state, 'reconnecting');
    await srv.ctl('broadcast', { room: 'r1', n: 100 }); // while away
    g.release();
    await rec.wait(r => r.of('recovered').length === 1, 'recovered');
    const [rcv] = rec.of('recovered');
    assert.equal(rcv.room, 'r1');
    assert.equal(rcv.count, 100);
    assert.equal(rcv.position.offset, 150);
    assert.notEqual(c.connId, firstConn);
    assert.equal(rec.of('open')[1].reconnected, true);

    await srv.ctl('broadcast', { room: 'r1', n: 20 }); // live again
    await rec.wait(r => r.messages('r1').length === 170, 'all 170');
    const msgs = rec.messages('r1');
    assert.deepEqual(seqs(msgs), range(1, 170));
    assert.deepEqual(msgs.map(m => m.position.offset), range(1, 170));
    assert.deepEqual(msgs.map(m => m.replayed), [...Array(50).fill(false), ...Array(100).fill(true), ...Array(20).fill(false)]);
    // The replayed ones came before the recovered event, the live ones after.
    const order = rec.events.filter(([type]) => type === 'message' || type === 'recovered').map(([type]) => type);
    assert.equal(order.indexOf('recovered'), 150);
    assert.equal(rec.of('lost').length, 0);
  });

  await t.test('after a server-side close with a code that means come back', async t => {
    const g = gate();
    const c = client(t, wsURL(srv, { user: 'u2', rooms: 'r2' }), { timers: g.timers });
    const rec = record(c);
    await rec.wait(r => r.of('joined').length === 1, 'joined');
    await srv.ctl('broadcast', { room: 'r2', n: 10 });
    await rec.wait(r => r.messages('r2').length === 10, '10 messages');
    await srv.ctl('close', { user: 'u2', code: 4001, reason: 'please reconnect' });
    await rec.wait(r => closes(r) === 1, 'the close');
    assert.deepEqual([rec.of('close')[0].code, rec.of('close')[0].reason, rec.of('close')[0].wasClean], [4001, 'please reconnect', true]);
    await srv.ctl('broadcast', { room: 'r2', n: 10 });
    g.release();
    await rec.wait(r => r.of('recovered').length === 1, 'recovered');
    assert.equal(rec.of('recovered')[0].count, 10);
    assert.deepEqual(seqs(rec.messages('r2')), range(1, 20));
  });

  await t.test('a room joined by request is asked for again, from its position', async t => {
    const g = gate();
    const c = client(t, wsURL(srv, { user: 'u3' }), { timers: g.timers });
    const rec = record(c);
    await c.join('asked');
    await srv.ctl('broadcast', { room: 'asked', n: 5 });
    await rec.wait(r => r.messages('asked').length === 5, '5 messages');
    await srv.ctl('cut', { user: 'u3' });
    await rec.wait(r => closes(r) === 1, 'the cut');
    await srv.ctl('broadcast', { room: 'asked', n: 7 });
    g.release();
    await rec.wait(r => r.of('recovered').length === 1, 'recovered');
    assert.equal(rec.of('recovered')[0].count, 7);
    assert.equal(rec.of('joined').length, 2);
    assert.equal(rec.of('joined')[1].requested, true);
    assert.deepEqual(seqs(rec.messages('asked')), range(1, 12));
    assert.deepEqual(c.rooms(), ['asked']);
  });

  await t.test('the client\'s own room messages are not replayed to it', async t => {
    // ann's message skips ann (BroadcastExcept); after a cut her resume
    // names her previous connection, so the hub skips it again.
    const g = gate();
    const a = client(t, wsURL(srv, { user: 'own-a', rooms: 'own' }), { relay: true, timers: g.timers });
    const b = client(t, wsURL(srv, { user: 'own-b', rooms: 'own' }), { relay: true });
    // w watches: once it has b's message, the room's history holds it, so
    // the resume released after that must replay it.
    const w = client(t, wsURL(srv, { user: 'own-w', rooms: 'own' }));
    const ra = record(a), rb = record(b), rw = record(w);
    await ra.wait(r => r.of('joined').length === 1, 'a joined');
    await rb.wait(r => r.of('joined').length === 1, 'b joined');
    await rw.wait(r => r.of('joined').length === 1, 'w joined');
    a.publish('own', 'mine');
    await rb.wait(r => r.messages().length === 1, 'b has it');
    await srv.ctl('cut', { user: 'own-a' });
    await ra.wait(r => closes(r) === 1, 'the cut');
    b.publish('own', 'theirs');
    await rw.wait(r => r.messages().length === 2, 'the room has b\'s message');
    g.release();
    await ra.wait(r => r.of('recovered').length === 1, 'recovered');
    assert.equal(ra.of('recovered')[0].count, 1);
    assert.deepEqual(ra.messages().map(m => [m.from, m.data, m.position.offset]), [['own-b', 'theirs', 2]]);
  });

  await t.test('trimmed: the history no longer holds what was missed; what it holds is replayed', async t => {
    const g = gate();
    const c = client(t, wsURL(srv, { user: 'u4', rooms: 'small-r' }), { timers: g.timers });
    const rec = record(c);
    await rec.wait(r => r.of('joined').length === 1, 'joined');
    await srv.ctl('broadcast', { room: 'small-r', n: 2 });
    await rec.wait(r => r.messages().length === 2, '2 messages');
    await srv.ctl('cut', { user: 'u4' });
    await rec.wait(r => closes(r) === 1, 'the cut');
    await srv.ctl('broadcast', { room: 'small-r', n: 10 }); // the room keeps 5
    g.release();
    await rec.wait(r => r.of('lost').length === 1, 'lost');
    const [lost] = rec.of('lost');
    assert.equal(lost.room, 'small-r');
    assert.equal(lost.reason, 'trimmed');
    assert.equal(lost.position.offset, 12);
    assert.equal(rec.of('recovered').length, 0);
    assert.equal(rec.of('joined')[1].lost, 'trimmed');
    // The 5 kept (the newest, after the gap) came before the lost.
    assert.deepEqual(seqs(rec.messages()), [1, 2, 8, 9, 10, 11, 12]);
    assert.ok(rec.messages().slice(2).every(m => m.replayed));
    await srv.ctl('broadcast', { room: 'small-r', n: 1 });
    await rec.wait(r => r.messages().length === 8, 'the next live one');
    assert.deepEqual(seqs(rec.messages()), [1, 2, 8, 9, 10, 11, 12, 13]);
  });

  await t.test('a room without history has nothing to resume', async t => {
    const g = gate();
    const c = client(t, wsURL(srv, { user: 'u5', rooms: 'plain-r' }), { timers: g.timers });
    const rec = record(c);
    await rec.wait(r => r.of('joined').length === 1, 'joined');
    await srv.ctl('cut', { user: 'u5' });
    await rec.wait(r => closes(r) === 1, 'the cut');
    g.release();
    await rec.wait(r => r.of('joined').length === 2, 'joined again');
    assert.equal(rec.of('recovered').length + rec.of('lost').length, 0);
  });

  await t.test('a room the server joins after connecting is reported as not resumed', async t => {
    const g = gate();
    const c = client(t, wsURL(srv, { user: 'u6' }), { timers: g.timers });
    const rec = record(c);
    await rec.wait(r => r.of('open').length === 1, 'open');
    await srv.ctl('join', { user: 'u6', room: 'late' });
    await srv.ctl('broadcast', { room: 'late', n: 2 });
    await rec.wait(r => r.messages('late').length === 2, '2 messages');
    await srv.ctl('cut', { user: 'u6' });
    await rec.wait(r => closes(r) === 1, 'the cut');
    await srv.ctl('broadcast', { room: 'late', n: 3 });
    g.release();
    await rec.wait(r => r.of('open').length === 2, 'open again');
    await srv.ctl('join', { user: 'u6', room: 'late' });
    await rec.wait(r => r.of('lost').length === 1, 'lost');
    assert.equal(rec.of('lost')[0].reason, 'notresumed');
  });

  await t.test('a restart changes the epoch: lost, then live from the new one', async t => {
    for (const crash of [false, true]) {
      const user = crash ? 'u7c' : 'u7g';
      const room = crash ? 'restart-c' : 'restart-g';
      const g = gate();
      const c = client(t, wsURL(srv, { user, rooms: room }), { timers: g.timers });
      const rec = record(c);
      await rec.wait(r => r.of('joined').length === 1, 'joined');
      await srv.ctl('broadcast', { room, n: 3 });
      await rec.wait(r => r.messages().length === 3, '3 messages');
      const epoch = c.position(room).epoch;
      await srv.ctl('restart', crash ? { crash: 1 } : {});
      await rec.wait(r => closes(r) === 1, 'the restart');
      g.release();
      await rec.wait(r => r.of('lost').length === 1, 'lost');
      const [closed] = rec.of('close');
      assert.equal(closed.code, crash ? 1006 : 1001, 'crash: no close frame; otherwise the shutdown\'s');
      assert.equal(closed.willReconnect, true);
      const [lost] = rec.of('lost');
      assert.equal(lost.reason, 'epoch');
      assert.notEqual(lost.position.epoch, epoch);
      assert.equal(lost.position.offset, 0);
      await srv.ctl('broadcast', { room, n: 2 });
      await rec.wait(r => r.messages().length === 5, 'the new epoch\'s messages');
      assert.deepEqual(rec.messages().slice(3).map(m => m.position.offset), [1, 2]);
      assert.deepEqual(seqs(rec.messages()), [1, 2, 3, 4, 5]);
      c.close();
    }
  });

  await t.test('after a restart, what the new epoch kept is replayed', async t => {
    const g = gate();
    const c = client(t, wsURL(srv, { user: 'u8', rooms: 'restart-k' }), { timers: g.timers });
    const rec = record(c);
    await rec.wait(r => r.of('joined').length === 1, 'joined');
    await srv.ctl('broadcast', { room: 'restart-k', n: 3 });
    await rec.wait(r => r.messages().length === 3, '3 messages');
    await srv.ctl('restart', { crash: 1 });
    await rec.wait(r => closes(r) === 1, 'the crash');
    await srv.ctl('broadcast', { room: 'restart-k', n: 4 }); // kept by the new hub, before the client is back
    g.release();
    await rec.wait(r => r.of('lost').length === 1, 'lost');
    assert.equal(rec.of('lost')[0].reason, 'epoch');
    assert.deepEqual(seqs(rec.messages()), [1, 2, 3, 4, 5, 6, 7], 'the new epoch\'s 4 messages, replayed');
  });
});
