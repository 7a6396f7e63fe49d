// Browser end-to-end: the walking skeleton as a user drives it.
// Run: scripts/build.sh && node --test e2e/   (needs /usr/bin/chromium; scripts/setup.sh --browser)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, browser, api, artifacts, cspViolations, pageErrors } from './harness.mjs';

let srv;
let ctx;
before(async () => { srv = await startServer(); ctx = await browser(); });
after(async () => { await ctx?.close(); srv?.stop(); });

test('fill the form, launch, watch live numbers, see it completed in the list', async () => {
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs/new`);
  const target = page.locator('input[name="form[target]"]');
  assert.equal(await target.inputValue(), `${srv.sandbox}/echo`, 'target is prefilled with the sandbox');
  const current = () => page.locator('.topbar__nav a[aria-current="page"]').allTextContents();
  assert.deepEqual(await current(), ['New run'], 'the top bar highlights one section');
  await page.locator('input[name="form[name]"]').fill('e2e smoke');
  await page.locator('input[name="form[connections]"]').fill('30');
  await page.locator('input[name="form[ramp_secs]"]').fill('2');
  await page.locator('input[name="form[hold_secs]"]').fill('4');
  await page.locator('input[name="form[message_every_secs]"]').fill('0.5');
  await page.screenshot({ path: join(artifacts, '01-new-run.png'), fullPage: true });
  await page.getByRole('button', { name: 'Launch' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  const id = page.url().split('/').pop();

  // Live numbers arrive over SSE and change while the run goes on.
  const elapsed = page.locator('[data-metric="elapsed"]');
  await page.waitForFunction(() => /s$/.test(document.querySelector('[data-metric="elapsed"]')?.textContent ?? ''));
  const first = await elapsed.textContent();
  await page.waitForFunction((f) => document.querySelector('[data-metric="elapsed"]')?.textContent !== f, first);
  await page.waitForFunction(() => document.querySelector('[data-metric="open"]')?.textContent === '30 / 30');
  // Progress against the planned 6 s, and the per-second CSV so far while live.
  assert.match(await page.locator('[data-progress] .run-progress__text').textContent(), /^0:0\d of 0:06 planned · \d{1,3} %$/);
  const csvHref = await page.locator('[data-download="live-csv"]').getAttribute('href');
  const csv = await page.evaluate(async (u) => (await fetch(u)).text(), csvHref);
  const lines = csv.trim().split('\n');
  assert.match(lines[0], /^t_s,/, 'the live CSV has its header');
  assert.ok(lines.length >= 2, `the live CSV has the seconds so far: ${lines.length - 1}`);
  await page.screenshot({ path: join(artifacts, '02-run-live.png'), fullPage: true });

  // When the run ends the page swaps to the stored summary.
  await page.locator('.badge[data-status="completed"]').waitFor({ timeout: 20000 });
  assert.equal(await page.locator('[data-progress]').count(), 0, 'a finished run shows no progress bar');
  assert.equal(await page.locator('[data-metric="opened"]').textContent(), '30');
  assert.equal(await page.locator('[data-metric="failed"]').textContent(), '0');
  await page.screenshot({ path: join(artifacts, '03-run-completed.png'), fullPage: true });

  // The list shows it, newest first, completed.
  await page.goto(`${srv.base}/runs`);
  const row = page.locator('tbody tr').first();
  assert.equal(await row.getAttribute('data-run-id'), id);
  assert.equal(await row.getAttribute('data-status'), 'completed');
  assert.deepEqual(await current(), ['Runs']);
  await page.screenshot({ path: join(artifacts, '04-runs-list.png'), fullPage: true });

  // The API agrees with what the page showed.
  const { body } = await api(srv.base, `/api/runs/${id}`);
  assert.equal(body.summary.totals.opened, 30);
  assert.equal(body.summary.peak_open, 30);
});

test('a bad field gets an error beside it and nothing is launched', async () => {
  const before = (await api(srv.base, '/api/runs')).body.length;
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  await page.locator('input[name="form[connections]"]').fill('5o');
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/api/launch_run')),
    page.getByRole('button', { name: 'Launch' }).click(),
  ]);
  assert.equal(answer.status(), 422, 'bad input is a 422, not a server failure');
  assert.doesNotMatch(srv.log(), /500 Internal Server Error/, 'nor logged as one');
  const err = page.locator('.field__error[data-field="connections"]');
  await err.waitFor();
  assert.match(await err.textContent(), /`5o` is not a whole number/);
  await page.screenshot({ path: join(artifacts, '05-form-error.png'), fullPage: true });
  assert.equal((await api(srv.base, '/api/runs')).body.length, before);
});

test('Cancel stops a running run', async () => {
  const plan = { name: 'to cancel', target: `${srv.sandbox}/echo`, stages: [{ duration: '1s', connections: 10 }, { duration: '60s', connections: 10 }] };
  const { status, body } = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  assert.equal(status, 201);
  const page = await ctx.newPage();
  await page.goto(`${srv.base}${body.url}`);
  await page.waitForFunction(() => document.querySelector('[data-metric="open"]')?.textContent === '10 / 10');
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.locator('.badge[data-status="cancelled"]').waitFor({ timeout: 20000 });
  const run = (await api(srv.base, `/api/runs/${body.id}`)).body;
  assert.equal(run.status, 'cancelled');
  assert.equal(run.summary.totals.opened, 10);
  assert.equal(run.summary.totals.closes.client, 10);
});

test('a queued run waits visibly, then its open page follows it running to completed', async () => {
  // One run at a time (the default): the second waits for the first.
  const plan = (name) => ({ name, target: `${srv.sandbox}/echo`, stages: [{ duration: '1s', connections: 5 }, { duration: '1s', connections: 5 }] });
  const first = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan('runs first')) });
  const second = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan('waits')) });
  assert.equal(first.status, 201);
  assert.equal(second.body.status, 'queued');
  const page = await ctx.newPage();
  await page.goto(`${srv.base}${second.body.url}`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  assert.equal(await page.locator('.run-detail__head .badge').getAttribute('data-status'), 'queued');
  await page.locator('.run-detail__head .badge[data-status="running"]').waitFor({ timeout: 15000 });
  await page.locator('.run-detail__head .badge[data-status="completed"]').waitFor({ timeout: 15000 });
  assert.equal(await page.locator('[data-metric="opened"]').textContent(), '5');
});

test('a finished run page reads without JavaScript', async () => {
  const list = (await api(srv.base, '/api/runs')).body;
  const done = list.find((r) => r.status === 'completed');
  assert.ok(done, 'a completed run exists');
  const noJs = await browser({ javaScriptEnabled: false });
  try {
    const page = await noJs.newPage();
    await page.goto(`${srv.base}/runs/${done.id}`);
    assert.equal(await page.locator('.badge').first().getAttribute('data-status'), 'completed');
    assert.equal(await page.locator('[data-metric="opened"]').textContent(), String(done.opened));
    await page.screenshot({ path: join(artifacts, '06-no-js.png'), fullPage: true });
  } finally {
    await noJs.close();
  }
});

test('a capped run shows 429s in the stacked connect chart and the failure table', async () => {
  // Refusals over two seconds (cap reached after 1 s of a 3 s ramp): with all of them
  // inside one tick the verdict rightly says it cannot tell a cap from a rate limit.
  const plan = { name: 'capped', target: `${srv.sandbox}/echo?cap=15&tag=e2e`, stages: [{ duration: '3s', connections: 45 }, { duration: '2s', connections: 45 }],
    script: [{ repeat: { every: '250ms', steps: [{ send: 'x' }, { expect: { timeout: '2s' } }] } }] };
  const { body } = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  const page = await ctx.newPage();
  await page.goto(`${srv.base}${body.url}`);
  await page.locator('.badge[data-status="completed"]').waitFor({ timeout: 20000 });
  const row = page.locator('tr[data-outcome="http_429"] td.num');
  assert.equal(await row.textContent(), '30');
  // uPlot drew every chart, and the 429 band is in the connect-rate legend.
  for (const id of ['connections', 'connect-rate', 'latency', 'messages']) {
    await page.locator(`.chart[data-chart="${id}"] canvas`).waitFor();
  }
  assert.match(await page.locator('.chart[data-chart="connect-rate"] .u-legend').textContent(), /http_429/);
  // The diagnosis names the cap and its level, and the cap is drawn on the chart.
  const diag = page.locator('.diagnosis');
  assert.equal(await diag.getAttribute('data-kind'), 'concurrency_cap');
  assert.equal(await diag.getAttribute('data-level'), '15');
  assert.match(await page.locator('.chart[data-chart="connections"] .u-legend').textContent(), /cap ≈ 15/);
  await page.screenshot({ path: join(artifacts, '07-capped-run.png'), fullPage: true });
  // The HTML report downloads and opens from disk with its charts, no server needed.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByText('Download HTML report').click()]);
  const file = join(artifacts, 'capped-report.html');
  await download.saveAs(file);
  const offline = await ctx.newPage();
  await offline.goto(`file://${file}`);
  await offline.locator('.chart canvas').nth(3).waitFor();
  assert.equal(await offline.locator('.chart canvas').count() >= 4, true);
  assert.equal(await offline.locator('.diagnosis').getAttribute('data-kind'), 'concurrency_cap');
  await offline.screenshot({ path: join(artifacts, '09-report-from-file.png'), fullPage: true });
  const sandboxStats = await (await fetch(`${srv.sandbox.replace('ws:', 'http:')}/stats`)).json();
  assert.equal(sandboxStats.profiles['/echo?cap=15&tag=e2e'].rejected['429'], 30);
});

test('a run that hits a cap and also sees drops gets both named', async () => {
  // 429s at a cap of 40 while the target drops sessions after 2 s and reconnects refill
  // the freed slots: the verdict is the cap, the drops are "also found".
  const plan = { name: 'cap and drops', target: `${srv.sandbox}/echo?cap=40&drop_after=2s&tag=e2e-also`,
    stages: [{ duration: '3s', connections: 120 }, { duration: '4s', connections: 120 }],
    reconnect: { mode: 'backoff', initial: '200ms', max: '1s', max_attempts: 1000 },
    script: [{ repeat: { every: '100ms', steps: [{ send: 'x' }, { expect: {} }] } }] };
  const { body } = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  const page = await ctx.newPage();
  await page.goto(`${srv.base}${body.url}`);
  await page.locator('.badge[data-status="completed"]').waitFor({ timeout: 30000 });
  const diag = page.locator('.diagnosis');
  assert.equal(await diag.getAttribute('data-kind'), 'concurrency_cap');
  assert.equal(await diag.getAttribute('data-level'), '40');
  const also = page.locator('.diagnosis__also li[data-kind]');
  assert.deepEqual(await also.evaluateAll((lis) => lis.map((li) => li.dataset.kind)), ['server_drops']);
  assert.match(await also.first().textContent(), /Server-side drops: .*server_1001/);
  await diag.screenshot({ path: join(artifacts, '20-cap-and-drops.png') });
  // Compared with the plain capped run, its card says both.
  const capped = (await api(srv.base, '/api/runs')).body.find((r) => r.name === 'capped');
  await page.goto(`${srv.base}/compare?runs=${capped.id},${body.id}`);
  const cards = page.locator('.cmp__run');
  assert.equal(await cards.nth(0).locator('.cmp__also').count(), 0);
  assert.match(await cards.nth(1).locator('.cmp__also').textContent(), /^Also: Server-side drops: .*server_1001/);
});

test('OAuth tokens from the form: a per-token cap is named, the typed secret is stored redacted', async () => {
  const http = srv.sandbox.replace('ws:', 'http:');
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  const fill = (name, v) => page.locator(`input[name="form[${name}]"]`).fill(v);
  await fill('name', 'form tokens');
  await fill('target', `${srv.sandbox}/echo?auth=bearer&token_cap=5&tag=form-tokens`);
  await fill('connections', '30');
  await fill('ramp_secs', '3');
  await fill('hold_secs', '1');
  await fill('message_every_secs', '0');
  await fill('token_url', `${http}/oauth/token?tag=form-tokens`);
  await fill('client_id', 'loadtest');
  await fill('client_secret', 'typed-client-secret');
  await fill('connections_per_token', '10');
  assert.equal(await page.locator('input[name="form[client_secret]"]').getAttribute('type'), 'password');
  await page.screenshot({ path: join(artifacts, '21-form-tokens.png'), fullPage: true });
  await page.getByRole('button', { name: 'Launch' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  await page.locator('.badge[data-status="completed"]').waitFor({ timeout: 30000 });
  const diag = page.locator('.diagnosis');
  assert.equal(await diag.getAttribute('data-kind'), 'concurrency_cap');
  assert.equal(await diag.getAttribute('data-per'), 'token');
  assert.equal(await diag.getAttribute('data-level'), '5');
  const run = (await api(srv.base, `/api/runs/${page.url().split('/').pop()}`)).body;
  assert.equal(run.summary.totals.opened, 15);
  assert.deepEqual(run.plan.auth.policy, { mode: 'per_connections', connections: 10 });
  assert.equal(run.plan.auth.source.client_secret, '<redacted>');
  assert.doesNotMatch(await page.content(), /typed-client-secret/);
});

test('a token field that cannot apply gets an error beside it', async () => {
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  await page.locator('input[name="form[client_id]"]').fill('loadtest');
  await page.getByRole('button', { name: 'Launch' }).click();
  const err = page.locator('.field__error[data-field="client_id"]');
  await err.waitFor();
  assert.match(await err.textContent(), /needs a token URL/);
});

test('a whole plan as JSON: OAuth tokens against a per-token cap, diagnosed per token', async () => {
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('details.plan-json summary').click();
  const text = page.locator('textarea[name="plan_json"]');
  const plan = JSON.parse(await text.inputValue());
  assert.equal(plan.auth.source.type, 'oauth2', 'the example uses the mock OAuth endpoint');
  plan.name = 'e2e tokens';
  // A secret kept in the server's environment, which this server lets plans read.
  plan.auth.source.client_secret = { env: 'LOADTEST_CLIENT_SECRET' };
  plan.stages = [{ duration: '3s', connections: 60 }, { duration: '2s', connections: 60 }];
  await text.fill(JSON.stringify(plan, null, 2));
  await page.getByRole('button', { name: 'Launch this plan' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  await page.locator('.badge[data-status="completed"]').waitFor({ timeout: 30000 });
  const diag = page.locator('.diagnosis');
  assert.equal(await diag.getAttribute('data-kind'), 'concurrency_cap');
  assert.equal(await diag.getAttribute('data-per'), 'token');
  assert.equal(await diag.getAttribute('data-level'), '20');
  assert.equal(await page.locator('table.tokens tbody tr').count(), 2);
  await page.screenshot({ path: join(artifacts, '08-per-token.png'), fullPage: true });
  // The secret reference is stored, never a value.
  const id = page.url().split('/').pop();
  const run = (await api(srv.base, `/api/runs/${id}`)).body;
  assert.deepEqual(run.plan.auth.source.client_secret, { env: 'LOADTEST_CLIENT_SECRET' });
});

test('a malformed JSON plan gets an error that says where', async () => {
  const page = await ctx.newPage();
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('details.plan-json summary').click();
  await page.locator('textarea[name="plan_json"]').fill('{"target": "ws://127.0.0.1:1/", "stages": [], "conections": 5}');
  await page.getByRole('button', { name: 'Launch this plan' }).click();
  const err = page.locator('.plan-json__error');
  await err.waitFor();
  assert.match(await err.textContent(), /unknown field `conections`/);
});

test('moving between pages inside the app (no reloads) loads each one without an error', async () => {
  const plan = { name: 'to browse', target: `${srv.sandbox}/echo`, stages: [{ duration: '1s', connections: 2 }] };
  const launched = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  assert.equal(launched.status, 201);
  const page = await ctx.newPage();
  const problems = [];
  page.on('response', (r) => { if (r.url().includes('/api/') && r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  const loads = [];
  page.on('request', (r) => { if (r.url().includes('/api/')) loads.push(new URL(r.url()).pathname); });
  const nav = page.locator('.topbar__nav');
  const noError = async (where) => assert.equal(await page.locator('.error').count(), 0, `no error on ${where}`);

  await nav.getByRole('link', { name: 'Runs' }).click();
  await page.waitForURL(/\/runs$/);
  await page.locator('tbody tr, .error').first().waitFor();
  await noError('the runs list');
  await page.locator('a.runs__sort').filter({ hasText: /^Run$/ }).click();
  await page.waitForURL(/sort=name/);
  await page.locator('a.runs__sort').filter({ hasText: /^Run ▾$/ }).waitFor();
  await noError('the sorted runs list');
  await page.locator('tbody tr a[href^="/runs/"]').first().click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  await page.locator('.badge[data-status]').waitFor();
  await noError('a run');
  await nav.getByRole('link', { name: 'Plans' }).click();
  await page.locator('h1', { hasText: 'Plans' }).waitFor();
  await noError('the plans list');
  await page.getByRole('link', { name: 'New plan' }).click();
  await page.locator('textarea[name="text"]').waitFor();
  await noError('a new plan');
  await page.locator('.topbar__brand').click();
  await page.waitForURL(`${srv.base}/`);
  await page.locator('tbody tr, .error').first().waitFor();
  await noError('the start page');

  assert.ok(loads.length >= 5, `the pages loaded their data from the browser: ${loads.join(', ')}`);
  assert.deepEqual(problems, []);
});

test('no page had anything refused by its Content-Security-Policy', () => {
  assert.deepEqual(cspViolations, []);
});

test('no page hit an uncaught script error or a panic', () => {
  assert.deepEqual(pageErrors, []);
});
