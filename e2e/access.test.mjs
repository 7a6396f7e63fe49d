// Browser end-to-end: an instance with an access token. The browser is asked for the
// token once (cookie), a share link opens in a fresh browser without it and shows only
// its run, and a page on another origin cannot make the browser launch a run.
// Run: scripts/build.sh && node --test e2e/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { startServer, browser, artifacts, cspViolations, pageErrors } from './harness.mjs';

const TOKEN = 'e2e-access-token-0123456789';
let srv;
let ctx;
let evil;
before(async () => {
  srv = await startServer(['--access-token', TOKEN]);
  ctx = await browser();
});
after(async () => { await ctx?.close(); srv?.stop(); evil?.close(); });

const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

test('log in once, share a run, open the link without the token', async () => {
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs`);
  await page.waitForURL(/\/login\?next=%2Fruns$/);
  await page.locator('input[name="token"]').fill('not-the-token-at-all');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('.error', { hasText: 'not this server' }).waitFor();
  await page.screenshot({ path: join(artifacts, '18-login.png'), fullPage: true });
  await page.locator('input[name="token"]').fill(TOKEN);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${srv.base}/runs`);
  await page.locator('h1', { hasText: 'Runs' }).waitFor();

  // A run via the API with the bearer token; the logged-in browser sees it.
  const plan = { name: 'behind a token', target: `${srv.sandbox}/echo`, stages: [{ duration: '300ms', connections: 3 }, { duration: '300ms', connections: 3 }] };
  const res = await fetch(`${srv.base}/api/runs`, { method: 'POST', headers: auth, body: JSON.stringify(plan) });
  assert.equal(res.status, 201);
  const { id } = await res.json();
  await page.goto(`${srv.base}/runs/${id}`);
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 20000 });
  await page.getByRole('button', { name: 'Share link' }).click();
  const share = await page.locator('input[data-share-url]').getAttribute('data-share-url');
  const sharePath = new URL(share, srv.base).pathname;

  const fresh = await browser();
  try {
    const sp = await fresh.newPage();
    await sp.goto(`${srv.base}${sharePath}`);
    await sp.locator(`.run-detail[data-run-id="${id}"] .badge[data-status="completed"]`).waitFor();
    assert.equal(await sp.locator('[data-action]').count(), 0);
    await sp.screenshot({ path: join(artifacts, '19-share-without-token.png'), fullPage: true });
    // The same fresh browser cannot reach the run itself, or anything else.
    await sp.goto(`${srv.base}/runs/${id}`);
    await sp.waitForURL(/\/login\?next=/);
    const api = await sp.goto(`${srv.base}/api/runs`);
    assert.equal(api.status(), 401);
    // Revoke it from the run page: the link is dead from then on.
    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.locator('[data-share-revoked]').waitFor();
    const gone = await sp.goto(`${srv.base}${sharePath}/report.html`);
    assert.equal(gone.status(), 404);
  } finally {
    await fresh.close();
  }
});

test('a share link of a live run follows it to the end without the token', async () => {
  const plan = { name: 'live share', target: `${srv.sandbox}/echo`, stages: [{ duration: '1s', connections: 5 }, { duration: '3s', connections: 5 }] };
  const res = await fetch(`${srv.base}/api/runs`, { method: 'POST', headers: auth, body: JSON.stringify(plan) });
  const { id } = await res.json();
  const link = await (await fetch(`${srv.base}/api/runs/${id}/share`, { method: 'POST', headers: auth })).json();
  const fresh = await browser();
  try {
    const sp = await fresh.newPage();
    await sp.goto(`${srv.base}${link.url}`);
    await sp.locator('.run-detail .badge[data-status="running"]').waitFor();
    // No reload: the page follows /share/{id}/events and swaps to the stored result.
    await sp.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 20000 });
    assert.equal(await sp.locator('[data-metric="opened"]').textContent(), '5');
    assert.equal(await sp.locator('[data-action]').count(), 0);
  } finally {
    await fresh.close();
  }
});

test('a page on another origin cannot launch a run through the browser', async () => {
  // The "attacker": a page on another local port that auto-posts a plan.
  const plan = JSON.stringify({ name: 'csrf', target: `${srv.sandbox}/echo`, stages: [{ duration: '1s', connections: 1 }] });
  evil = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form id="f" method="post" action="${srv.base}/api/runs" enctype="text/plain">
      <input name='${plan.slice(0, -1)}, "x": "' value='"}'></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  const evilUrl = `http://127.0.0.1:${evil.address().port}/`;
  const page = await ctx.newPage(); // this browser holds the login cookie
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().startsWith(`${srv.base}/api/runs`)),
    page.goto(evilUrl),
  ]);
  assert.equal(response.status(), 403);
  const list = await (await fetch(`${srv.base}/api/runs?q=csrf`, { headers: auth })).json();
  assert.deepEqual(list, [], 'nothing was launched');
});

test('no page had anything refused by its Content-Security-Policy', () => {
  assert.deepEqual(cspViolations, []);
});

test('no page hit an uncaught script error or a panic', () => {
  assert.deepEqual(pageErrors, []);
});
