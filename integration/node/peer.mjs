// peer.mjs URL — Node's `ws` package as a wsroom peer (driven by
// ../exec_peer_test.go). It reads a JSON spec from stdin, [{"type":"text"|"binary",
// "data":base64}, ...], sends each message to URL and waits for its echo, then
// closes with 1000 "done" and waits for the server's close frame. It prints
// one JSON report on stdout: {"received":[...same form...],"closeCode":N} and
// "error" if something went wrong. The Go test judges the report.
import WebSocket from 'ws';

const url = process.argv[2];
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const spec = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const report = { received: [], closeCode: 0 };
const finish = (err) => {
  if (err) report.error = String(err && err.stack || err);
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
};
setTimeout(() => finish('timed out after 20 s'), 20000).unref();

// perMessageDeflate stays at its default (offered); wsroom may decline it.
const ws = new WebSocket(url);
let next = 0;
const sendNext = () => {
  if (next === spec.length) { ws.close(1000, 'done'); return; }
  const m = spec[next++];
  const data = Buffer.from(m.data, 'base64');
  ws.send(m.type === 'text' ? data.toString('utf8') : data, { binary: m.type !== 'text' });
};
ws.on('open', sendNext);
ws.on('message', (data, isBinary) => {
  const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  report.received.push({ type: isBinary ? 'binary' : 'text', data: buf.toString('base64') });
  sendNext();
});
ws.on('error', (err) => finish(err));
ws.on('close', (code) => { report.closeCode = code; finish(); });
