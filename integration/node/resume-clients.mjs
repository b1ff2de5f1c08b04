// resume-clients.mjs: N clients of client/wsroom.js (with the ws package
// as their WebSocket) in one room, for the AnyCable-style test
// (../resume_test.go). Each client reconnects with backoff, to the next URL
// of the list on every attempt, and resumes.
//
// Input (stdin, JSON): {urls: [...], clients, room, last, timeoutMs,
// reconnect: {min, max, jitter}}. The process prints {"ready":true} once
// every client has joined the room, then, when every client has received
// the broadcast numbered `last` (or at the timeout), one report line:
//
//   {"clients":[{"runs":[[1,4000]], "lost":[], "recovered":12,
//                "reconnects":12, "opens":13}], "resumeMs":[…]}
//
// runs lists the sequence numbers received, in arrival order, as runs of
// consecutive numbers: a client that got everything once and in order has
// exactly [[1, last]]. resumeMs has, for every reconnect that replayed
// messages, the time from creating the socket to the first replayed
// message, and openMs the time from creating the socket to the hub's
// hello. The Go test judges.

import { WebSocket } from 'ws';
import { WsroomClient } from '../../client/wsroom.js';

const input = JSON.parse(await new Promise((res, rej) => {
  let s = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', d => { s += d; });
  process.stdin.on('end', () => res(s));
  process.stdin.on('error', rej);
}));

const resumeMs = [];
const openMs = []; // from creating the socket to the hub's hello, on reconnects
const clients = [];
let joinedAll = false;

function report() {
  const out = {
    clients: clients.map(c => ({
      runs: c.runs, lost: c.lost, recovered: c.recovered, reconnects: c.reconnects, opens: c.opens, closeCodes: c.closeCodes,
    })),
    resumeMs,
    openMs,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  for (const c of clients) c.client.close();
  process.exit(0);
}

function check() {
  if (!joinedAll && clients.every(c => c.joined)) {
    joinedAll = true;
    process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  }
  if (clients.every(c => c.top >= input.last)) report();
}

for (let i = 0; i < input.clients; i++) {
  const st = { runs: [], lost: [], recovered: 0, reconnects: 0, opens: 0, closeCodes: {}, top: 0, joined: false, connectingAt: 0, awaitingReplay: false };
  const client = new WsroomClient(input.urls, {
    WebSocket,
    reconnect: input.reconnect,
    query: { user: `load-${i}`, rooms: input.room },
  });
  st.client = client;
  client.on('connecting', () => { st.connectingAt = performance.now(); st.awaitingReplay = st.opens > 0; });
  client.on('open', () => {
    if (st.opens > 0) openMs.push(+(performance.now() - st.connectingAt).toFixed(2));
    st.opens++;
  });
  client.on('close', ev => { st.reconnects += ev.willReconnect ? 1 : 0; st.closeCodes[ev.code] = (st.closeCodes[ev.code] || 0) + 1; });
  client.on('joined', ev => {
    if (ev.room === input.room) st.joined = true;
    st.awaitingReplay = false;
    check();
  });
  client.on('recovered', () => { st.recovered++; });
  client.on('lost', ev => { st.lost.push(ev.reason); });
  client.on('message', m => {
    if (m.replayed && st.awaitingReplay) {
      resumeMs.push(+(performance.now() - st.connectingAt).toFixed(2));
      st.awaitingReplay = false;
    }
    const seq = JSON.parse(m.data).seq;
    const run = st.runs.at(-1);
    if (run && seq === run[1] + 1) run[1] = seq;
    else st.runs.push([seq, seq]);
    st.top = Math.max(st.top, seq);
    if (seq >= input.last) check();
  });
  clients.push(st);
}

setTimeout(report, input.timeoutMs);
