// The TypeScript declarations: tsc --strict compiles types-check.ts, a
// typical use of the client, against wsroom.d.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
const file = fileURLToPath(new URL('./types-check.ts', import.meta.url));

test('wsroom.d.ts type-checks a typical use', { skip: !existsSync(tsc) && process.env.CI !== 'true' && 'typescript is not installed (npm ci)' }, async () => {
  const out = await new Promise(res => execFile(process.execPath, [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022,dom', file],
    (err, stdout, stderr) => res({ code: err ? err.code : 0, text: stdout + stderr })));
  assert.equal(out.code, 0, out.text);
});
