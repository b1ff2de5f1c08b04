// Compiled (not run) by types.test.js: the declarations describe the
// module, and a typical use type-checks under --strict.
import { WsroomClient, backoffDelay, shouldReconnect, PROTOCOL, type MessageEvent, type Position } from '../wsroom.js';

const c = new WsroomClient(['ws://a/ws', new URL('ws://b/ws')], { reconnect: { min: 100, jitter: 1 }, relay: true });
const off = c.on('message', (m: MessageEvent) => {
  const p: Position | undefined = m.position;
  if (p) console.log(m.room, p.epoch, p.offset, m.replayed, m.from);
});
off();
c.on('lost', ev => console.log(ev.room, ev.reason));
c.on('close', ev => console.log(ev.code, ev.reason, ev.willReconnect, ev.delay));
c.on('recovered', ev => console.log(ev.count));
c.join('room').then(j => console.log(j.position?.offset, j.resumed, j.lost));
c.leave('room').then(l => console.log(l.room));
c.send('text');
c.send(new Uint8Array([1]));
const id: string = c.publish('room', { text: 'hi' });
c.sendTo(['bob'], 1, { id });
console.log(backoffDelay(3), shouldReconnect(1006), PROTOCOL, c.state, c.connId, c.position('room'), c.rooms());
c.close(1000, 'bye');
// @ts-expect-error: not an event
c.on('nope', () => {});
// @ts-expect-error: rooms are strings
c.join(1);
new WsroomClient(n => `ws://h/${n}`, { reconnect: false, connect: false }).connect();
