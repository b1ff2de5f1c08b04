// What the client's tests share: a real wsroom server (the Go program in
// internal/resumetest/server, built once per test file), a WebSocket
// implementation for Node, and a recorder of a client's events with
// waits on conditions (never a sleep used as synchronisation).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { WsroomClient, CONNECT_TIMEOUT } from '../wsroom.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// WebSocket is Node's own (Node 22+, or 20 with --experimental-websocket)
// unless WSROOM_TEST_WS=ws, and the ws package's when there is none.
export const WebSocket = process.env.WSROOM_TEST_WS !== 'ws' && globalThis.WebSocket
  ? globalThis.WebSocket
  : (await import('ws')).WebSocket;

/** How long any wait may take before the test fails. */
export const TIMEOUT = 15000;

/**
 * startServer builds and starts the test server; the returned object has
 * url (http://127.0.0.1:PORT), ws (its /ws URL), ctl(op, params) for the
 * control API and stop().
 */
export async function startServer(t, args = []) {
  const dir = mkdtempSync(join(tmpdir(), 'wsroom-resumetest-'));
  const bin = join(dir, 'server');
  execFileSync('go', ['build', '-o', bin, './internal/resumetest/server'], { cwd: repo, stdio: 'inherit' });
  const proc = spawn(bin, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise(res => proc.once('exit', res));
  const line = await new Promise((res, rej) => {
    const rl = createInterface({ input: proc.stdout });
    rl.once('line', l => { rl.close(); res(l); });
    proc.once('exit', code => rej(new Error(`the test server exited with ${code}`)));
  });
  const { url } = JSON.parse(line);
  const srv = {
    url,
    ws: url.replace(/^http/, 'ws') + '/ws',
    async ctl(op, params = {}) {
      const res = await fetch(`${url}/ctl/${op}?${new URLSearchParams(params)}`);
      const body = await res.json();
      if (!res.ok) throw new Error(`ctl ${op}: ${res.status} ${JSON.stringify(body)}`);
      return body;
    },
    async stop() {
      proc.stdin.end(); // the server shuts down when its input ends
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  t.after(() => srv.stop());
  return srv;
}

/** wsURL returns the server's /ws URL with the query parameters given. */
export function wsURL(srv, params = {}) {
  return `${srv.ws}?${new URLSearchParams(params)}`;
}

/**
 * record returns a recorder of every event of client: rec.events is the
 * list of [type, event, time]; rec.wait(pred) resolves once pred(rec) is
 * true, checked after every event.
 */
export function record(client, types = ['connecting', 'open', 'message', 'joined', 'left', 'recovered', 'lost', 'close', 'reconnecting', 'error']) {
  const rec = {
    events: [],
    waiters: [],
    of(type) { return this.events.filter(e => e[0] === type).map(e => e[1]); },
    messages(room) { return this.of('message').filter(m => room === undefined || m.room === room); },
    wait(pred, what = 'a condition') {
      if (pred(this)) return Promise.resolve();
      return new Promise((res, rej) => {
        const w = { pred, res };
        w.timer = setTimeout(() => {
          this.waiters = this.waiters.filter(x => x !== w);
          rej(new Error(`timed out waiting for ${what}; events: ${summary(this.events)}`));
        }, TIMEOUT);
        this.waiters.push(w);
      });
    },
  };
  for (const type of types) {
    client.on(type, ev => {
      rec.events.push([type, ev, performance.now()]);
      for (const w of rec.waiters.slice()) {
        if (w.pred(rec)) {
          clearTimeout(w.timer);
          rec.waiters = rec.waiters.filter(x => x !== w);
          w.res();
        }
      }
    });
  }
  return rec;
}

function summary(events) {
  return events.slice(-30).map(([type, ev]) => `${type} ${JSON.stringify(ev, (k, v) => v instanceof Uint8Array ? `<${v.length} bytes>` : v)}`).join('\n  ');
}

/** client returns a WsroomClient closed when the test ends. */
export function client(t, url, options = {}) {
  const c = new WsroomClient(url, { WebSocket, ...options });
  t.after(() => c.close());
  return c;
}

/** seqs returns the sequence numbers of the server's Broadcast payloads. */
export function seqs(messages) {
  return messages.map(m => JSON.parse(typeof m.data === 'string' ? m.data : new TextDecoder().decode(m.data)).seq);
}

/** range returns [from, …, to]. */
export function range(from, to) {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/**
 * gate returns timers for a client (options.timers) that hold its
 * reconnection until release(): a test can then do what it wants done
 * while the client is away, whatever the machine's load. Connect timeouts
 * run as usual.
 */
export function gate() {
  const held = [];
  return {
    timers: {
      setTimeout(fn, ms) {
        if (ms === CONNECT_TIMEOUT) return setTimeout(fn, ms);
        const h = { fn, cancelled: false };
        held.push(h);
        return h;
      },
      clearTimeout(id) {
        if (id && typeof id.fn === 'function') id.cancelled = true;
        else clearTimeout(id);
      },
    },
    /** release lets the held reconnections happen. */
    release() {
      for (const h of held.splice(0)) if (!h.cancelled) h.fn();
    },
  };
}
