// Browser end-to-end: the binary alone is the whole app (issue 15). A copy of it, and
// nothing else, in an empty directory serves a styled page that hydrates and runs a plan;
// the site's files come from the binary with cache headers.
// Run: scripts/build.sh && node --test e2e/standalone.test.mjs
//   (SOCKETSWARM_BIN=target/release/socketswarm to check the release binary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startServer, browser, api, serverBin, cspViolations, pageErrors } from './harness.mjs';

let srv;
let ctx;
let empty;
before(async () => {
  empty = mkdtempSync(join(tmpdir(), 'socketswarm-alone-'));
  copyFileSync(resolve(serverBin), join(empty, 'socketswarm'));
  // Started from the empty directory by a relative path: no target/site to fall back on.
  srv = await startServer([], { bin: './socketswarm', cwd: empty });
  ctx = await browser();
});
after(async () => { await ctx?.close(); srv?.stop(); });

test('the binary alone serves a styled page that hydrates and runs a plan', async () => {
  assert.deepEqual(readdirSync(empty).filter((f) => f !== 'socketswarm.db' && !f.startsWith('socketswarm.db-')), ['socketswarm'],
    'nothing but the binary (and the database it creates) is in its directory');
  const page = await ctx.newPage();
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  // The app's stylesheet applied: the top bar is laid out by main.css, not the browser default.
  const display = await page.locator('header.topbar').evaluate((el) => getComputedStyle(el).display);
  assert.equal(display, 'flex', 'main.css is applied');
  assert.equal(await page.locator('.site-missing').count(), 0, 'no "site not built" notice');
  assert.equal(await page.evaluate(() => typeof window.uPlot), 'function', 'uPlot loaded');

  // Hydrated, so the form validates and launches; the run completes.
  await page.locator('input[name="form[connections]"]').fill('5');
  await page.locator('input[name="form[ramp_secs]"]').fill('1');
  await page.locator('input[name="form[hold_secs]"]').fill('1');
  await page.getByRole('button', { name: 'Launch' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  await page.locator('.badge[data-status="completed"]').waitFor({ timeout: 20000 });
  assert.equal(await page.locator('[data-metric="opened"]').textContent(), '5');
  assert.deepEqual(failed, [], 'every request of the page succeeded');
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(cspViolations, []);
});

test('site files: hashed URLs are immutable, plain ones revalidate by ETag', async () => {
  const html = await (await fetch(`${srv.base}/runs`)).text();
  const linked = [...new Set(html.match(/\/pkg\/[A-Za-z0-9_.-]+/g))];
  for (const ext of ['js', 'wasm', 'css']) {
    assert.ok(linked.some((u) => new RegExp(`^/pkg/socketswarm\\.[0-9a-f]{16}\\.${ext}$`).test(u)), `the page links a hashed socketswarm .${ext}: ${linked}`);
  }
  const types = { js: /javascript/, wasm: /^application\/wasm$/, css: /^text\/css/, svg: /^image\/svg/ };
  for (const url of linked) {
    const res = await fetch(srv.base + url);
    assert.equal(res.status, 200, url);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable', url);
    assert.match(res.headers.get('content-type'), types[url.split('.').pop()], url);
    assert.equal(Number(res.headers.get('content-length')), (await res.arrayBuffer()).byteLength, url);
  }
  const plain = await fetch(`${srv.base}/pkg/socketswarm.css`);
  assert.equal(plain.status, 200);
  assert.equal(plain.headers.get('cache-control'), 'no-cache');
  const etag = plain.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{16}"$/);
  const again = await fetch(`${srv.base}/pkg/socketswarm.css`, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  assert.equal((await fetch(`${srv.base}/pkg/no-such-file.js`)).status, 404);
  const { status } = await api(srv.base, '/api/health');
  assert.equal(status, 200);
});
