// deflate-peer.mjs URL_A URL_B — two clients of Node's `ws` package in one
// wsroom room (driven by ../deflate_peers_test.go). Both keep ws's default
// perMessageDeflate offer. Once both are open it prints
// {"clients":[{"peer","extensions","header"}, ...]}: ws.extensions and the
// Sec-WebSocket-Extensions header of the 101 response. Then for each line
// {"type":"text"|"binary","data":base64} on stdin, A sends that message and
// the script prints {"a":msg,"b":msg}, the next message each client
// received, in the same form. At the end of stdin it closes both with 1000
// and prints {"closeCodes":[a,b]}, the codes of the server's close frames.
// On failure it prints {"error":...}. The Go test judges everything.
import readline from 'node:readline';
import WebSocket from 'ws';

const print = (obj) => new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));
const fail = (err) => print({ error: String((err && err.stack) || err) }).then(() => process.exit(1));
setTimeout(() => fail('timed out after 60 s'), 60000).unref();

// open connects a client; next(c) resolves to its next message and rejects
// if the connection closes first.
function open(peer, url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const c = { peer, ws, header: '', inbox: [], wake: null };
    ws.on('upgrade', (res) => { c.header = res.headers['sec-websocket-extensions'] ?? ''; });
    ws.on('message', (data, isBinary) => {
      c.inbox.push({ type: isBinary ? 'binary' : 'text', data: Buffer.from(data).toString('base64') });
      if (c.wake) c.wake();
    });
    c.closed = new Promise((resolveClose) => ws.on('close', (code) => resolveClose(code)));
    ws.on('open', () => resolve(c));
    ws.on('error', reject);
  });
}
async function next(c) {
  while (!c.inbox.length) {
    const code = await Promise.race([new Promise((resolve) => { c.wake = resolve; }), c.closed]);
    if (code !== undefined) throw new Error(`${c.peer} closed with ${code}`);
  }
  c.wake = null;
  return c.inbox.shift();
}

try {
  const a = await open('a', process.argv[2]);
  const b = await open('b', process.argv[3]);
  await print({ clients: [a, b].map((c) => ({ peer: c.peer, extensions: c.ws.extensions, header: c.header })) });
  for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    const m = JSON.parse(line);
    const bytes = Buffer.from(m.data, 'base64');
    a.ws.send(m.type === 'text' ? bytes.toString('utf8') : bytes, { binary: m.type !== 'text' });
    const [ma, mb] = await Promise.all([next(a), next(b)]);
    await print({ a: ma, b: mb });
  }
  a.ws.close(1000, 'done');
  b.ws.close(1000, 'done');
  await print({ closeCodes: await Promise.all([a.closed, b.closed]) });
  process.exit(0);
} catch (err) {
  await fail(err);
}
