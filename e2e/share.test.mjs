// Browser end-to-end: share links colleagues can open. A server with --public-url builds
// its links on that name (not on the address the sharing browser used); a second
// browser that reaches the server only by that name opens the link. A loopback-only
// server without one warns that nobody else can open its links.
// Run: scripts/build.sh && node --test e2e/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, browser, freePort, artifacts, cspViolations, pageErrors } from './harness.mjs';

const NAME = 'swarm.e2e.test';
let srv;
let port;
let ctx;
before(async () => {
  port = await freePort();
  srv = await startServer(['--public-url', `http://${NAME}:${port}`], { listen: `127.0.0.1:${port}` });
  ctx = await browser();
});
after(async () => { await ctx?.close(); srv?.stop(); });

async function finishedRun(base, sandbox, name) {
  const plan = { name, target: `${sandbox}/echo`, stages: [{ duration: '300ms', connections: 3 }, { duration: '300ms', connections: 3 }] };
  const res = await fetch(`${base}/api/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(plan) });
  assert.equal(res.status, 201);
  return (await res.json()).id;
}

test('a share link uses the public URL and opens from a second browser by that name', async () => {
  const id = await finishedRun(srv.base, srv.sandbox, 'shared by its public name');
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs/${id}`);
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 20000 });
  await page.getByRole('button', { name: 'Share link' }).click();
  const share = await page.locator('input[data-share-url]').getAttribute('data-share-url');
  assert.match(share, new RegExp(`^http://${NAME.replaceAll('.', '\\.')}:${port}/share/[0-9a-f]{32}$`), 'the link names the public URL, not 127.0.0.1');
  assert.equal(await page.locator('[data-share-hint]').count(), 0, 'no warning: colleagues can reach the public name');
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.getByRole('button', { name: 'Copied' }).waitFor();
  await page.screenshot({ path: join(artifacts, '30-share-public-url.png'), fullPage: true });

  // A colleague's browser: it knows the server only by its public name.
  const colleague = await browser({ args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', `--host-resolver-rules=MAP ${NAME} 127.0.0.1`] });
  try {
    const sp = await colleague.newPage();
    const res = await sp.goto(share);
    assert.equal(res.status(), 200);
    await sp.locator(`.run-detail[data-run-id="${id}"] .badge[data-status="completed"]`).waitFor();
    assert.equal(await sp.locator('.run-detail h1').textContent(), 'shared by its public name');
    await sp.screenshot({ path: join(artifacts, '31-share-opened-by-name.png'), fullPage: true });
  } finally {
    await colleague.close();
  }
});

test('a loopback-only server without a public URL says its links work on this machine only', async () => {
  const local = await startServer();
  try {
    const id = await finishedRun(local.base, local.sandbox, 'local only');
    const page = await ctx.newPage();
    await page.goto(`${local.base}/runs/${id}`);
    await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 20000 });
    await page.getByRole('button', { name: 'Share link' }).click();
    const share = await page.locator('input[data-share-url]').getAttribute('data-share-url');
    assert.ok(share.startsWith(`${local.base}/share/`), share);
    assert.match(await page.locator('[data-share-hint]').textContent(), /Only this machine can open this link.*--public-url/);
    await page.screenshot({ path: join(artifacts, '32-share-local-only.png'), fullPage: true });
  } finally {
    local.stop();
  }
});

test('no page had anything refused by its Content-Security-Policy', () => {
  assert.deepEqual(cspViolations, []);
});

test('no page hit an uncaught script error or a panic', () => {
  assert.deepEqual(pageErrors, []);
});
