// The client against a real hub: hello, rooms, positions, binary data,
// join and leave requests, the relay and application messages.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, wsURL, record, client, seqs, range } from './helpers.js';

test('protocol', async t => {
  const srv = await startServer(t);

  await t.test('hello, joined rooms and positioned messages', async t => {
    const c = client(t, wsURL(srv, { user: 'alice', rooms: 'news,plain-a' }));
    const rec = record(c);
    await rec.wait(r => r.of('joined').length === 2, 'two joined');
    const [open] = rec.of('open');
    assert.equal(open.userId, 'alice');
    assert.equal(open.reconnected, false);
    assert.match(open.connId, /^[0-9a-f]{12}-[0-9a-z]+$/);
    assert.equal(c.connId, open.connId);
    assert.equal(c.state, 'open');
    assert.deepEqual(c.rooms().sort(), ['news', 'plain-a']);
    const joined = Object.fromEntries(rec.of('joined').map(j => [j.room, j]));
    assert.equal(joined.news.position.offset, 0, 'a new history: nothing sent yet');
    assert.equal(typeof joined.news.position.epoch, 'string');
    assert.equal(joined['plain-a'].position, undefined, 'a room without history has no position');
    assert.equal(joined.news.requested, false);

    await srv.ctl('broadcast', { room: 'news', n: 3 });
    await srv.ctl('broadcast', { room: 'news', n: 2, binary: 1 });
    await srv.ctl('broadcast', { room: 'plain-a', n: 2 });
    await rec.wait(r => r.messages('news').length === 5 && r.messages('plain-a').length === 2, 'the messages');
    const news = rec.messages('news');
    assert.deepEqual(seqs(news), range(1, 5));
    assert.deepEqual(news.map(m => m.position.offset), range(1, 5));
    assert.ok(news.every(m => m.position.epoch === joined.news.position.epoch));
    assert.deepEqual(news.map(m => m.binary), [false, false, false, true, true]);
    assert.ok(news[3].data instanceof Uint8Array);
    assert.equal(new TextDecoder().decode(news[3].data), '{"room":"news","seq":4}');
    assert.deepEqual(news.map(m => m.replayed), [false, false, false, false, false]);
    assert.deepEqual(c.position('news'), { epoch: joined.news.position.epoch, offset: 5 });
    const plain = rec.messages('plain-a');
    assert.deepEqual(seqs(plain), [1, 2]);
    assert.ok(plain.every(m => m.position === undefined && m.room === 'plain-a'));

    // A send to the user has no room and no position.
    await srv.ctl('send', { user: 'alice', text: 'to you' });
    await rec.wait(r => r.messages().some(m => m.data === 'to you'), 'the user message');
    const direct = rec.messages().find(m => m.data === 'to you');
    assert.equal(direct.room, undefined);
    assert.equal(direct.position, undefined);
  });

  await t.test('join and leave requests', async t => {
    const c = client(t, wsURL(srv, { user: 'bob' }));
    const rec = record(c);
    // Asked before the connection is open: sent after the hello.
    const joined = await c.join('extra');
    assert.equal(joined.room, 'extra');
    assert.equal(joined.requested, true);
    assert.equal(joined.position.offset, 0);
    assert.deepEqual(c.rooms(), ['extra']);

    await assert.rejects(c.join('secret-x'), err => {
      assert.match(err.message, /secret rooms are closed/);
      assert.equal(err.room, 'secret-x');
      return true;
    });
    assert.ok(rec.of('error').some(e => e.kind === 'join' && e.room === 'secret-x' && /secret/.test(e.error)));
    assert.deepEqual(c.rooms(), ['extra']);

    // Joining a room twice answers at once, without a second 'joined'.
    await c.join('extra');
    assert.equal(rec.of('joined').length, 1);

    await srv.ctl('broadcast', { room: 'extra', n: 2 });
    await rec.wait(r => r.messages('extra').length === 2, 'messages in the joined room');

    await c.leave('extra');
    assert.deepEqual(c.rooms(), []);
    assert.equal(c.position('extra'), undefined);
    assert.deepEqual(rec.of('left'), [{ room: 'extra' }]);

    // Leaving a room one is not in resolves too.
    await c.leave('nowhere');

    // A server-side Leave is reported, and the room is forgotten.
    await c.join('kicked');
    await srv.ctl('leave', { user: 'bob', room: 'kicked' });
    await rec.wait(r => r.of('left').some(l => l.room === 'kicked'), 'left kicked');
    assert.deepEqual(c.rooms(), []);
  });

  await t.test('relay: publish, sendTo, refusals and application messages', async t => {
    const a = client(t, wsURL(srv, { user: 'ann', rooms: 'relay-room' }), { relay: true });
    const b = client(t, wsURL(srv, { user: 'ben', rooms: 'relay-room' }), { relay: true });
    const ra = record(a), rb = record(b);
    await ra.wait(r => r.of('joined').length === 1, 'ann joined');
    await rb.wait(r => r.of('joined').length === 1, 'ben joined');

    const id = a.publish('relay-room', { text: 'hi', n: [1, 2] });
    assert.equal(typeof id, 'string');
    a.sendTo(['ben'], 'psst');
    await rb.wait(r => r.messages().length === 2, 'ben gets both');
    const [pub, dm] = rb.messages();
    assert.equal(pub.from, 'ann');
    assert.equal(pub.room, 'relay-room');
    assert.equal(pub.direct, false);
    assert.deepEqual(pub.data, { text: 'hi', n: [1, 2] });
    assert.equal(pub.position.offset, 1, 'a relayed room message enters the history');
    assert.equal(dm.from, 'ann');
    assert.equal(dm.direct, true);
    assert.equal(dm.room, undefined);
    assert.equal(dm.data, 'psst');
    assert.equal(dm.position, undefined);

    // Refusals come back as 'error' events carrying the envelope's id.
    const bad = a.publish('not-my-room', 1);
    const bad2 = a.sendTo(['nobody-here'], 1);
    await ra.wait(r => r.of('error').length === 2, 'two relay errors');
    assert.deepEqual(ra.of('error').map(e => [e.kind, e.id]), [['relay', bad], ['relay', bad2]]);
    assert.match(ra.of('error')[0].error, /not a member/);

    // send() reaches OnMessage (the relay, here) as the bare payload.
    a.send('not an envelope');
    a.send(new Uint8Array([1, 2, 3]));
    await ra.wait(r => r.of('error').length === 4, 'the relay answers the raw sends');
    assert.match(ra.of('error')[2].error, /not valid JSON/);
    assert.match(ra.of('error')[3].error, /JSON text/);
    // ann got no copy of her own room message.
    assert.equal(ra.messages().length, 0);
  });

  await t.test('a client without relay parsing gets the envelopes as text', async t => {
    const a = client(t, wsURL(srv, { user: 'cat', rooms: 'raw-room' }));
    const b = client(t, wsURL(srv, { user: 'dan', rooms: 'raw-room' }));
    const rb = record(b);
    const ra = record(a);
    await ra.wait(r => r.of('joined').length === 1, 'cat joined');
    await rb.wait(r => r.of('joined').length === 1, 'dan joined');
    a.publish('raw-room', 'x');
    await rb.wait(r => r.messages().length === 1, 'dan gets it');
    assert.deepEqual(JSON.parse(rb.messages()[0].data), { from: 'cat', room: 'raw-room', data: 'x' });
    assert.equal(rb.messages()[0].from, undefined);
  });

  await t.test('the client script served by the hub is this file', async () => {
    const res = await fetch(srv.url + '/wsroom.js');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/javascript/);
    const { readFile } = await import('node:fs/promises');
    const here = await readFile(new URL('../wsroom.js', import.meta.url), 'utf8');
    assert.equal(await res.text(), here);
    const again = await fetch(srv.url + '/wsroom.js', { headers: { 'If-None-Match': res.headers.get('etag') } });
    assert.equal(again.status, 304);
  });
});
