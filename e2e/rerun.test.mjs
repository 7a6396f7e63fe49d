// Browser end-to-end for issue 16 item 5 and the close reasons of "What the target
// said": a run with an OAuth client secret typed into the New-run form, against the
// sandbox's strict mock token endpoint (it accepts only `sandbox-client-secret`).
// "Run again…" asks for exactly that secret and the new run fetches its token and
// completes; "Edit and run again" opens the form prefilled, one value changes and the
// new run has it; a plan the form cannot show (a credential header) opens in the JSON
// editor with a password field for that header; a wrong secret ends as the token
// endpoint's 401 in "What the target said"; a sandbox that closes with a reason shows
// the reason under its close code.
// Screenshots of the prompt and the panel at 1,400 px and 390 px go to e2e/artifacts/.
// Run: scripts/build.sh && node --test --test-concurrency=1 e2e/rerun.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, browser, api, artifacts, pageErrors } from './harness.mjs';

const SECRET = 'sandbox-client-secret';
let srv;
let ctx;
before(async () => { srv = await startServer(); ctx = await browser(); });
after(async () => { await ctx?.close(); srv?.stop(); });

const tokenUrl = (tag) => `${srv.sandbox.replace('ws://', 'http://')}/oauth/token?strict_client=1&tag=${tag}`;

async function open(page, path) {
  await page.goto(`${srv.base}${path}`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
}

/** Waits until the run whose page we are on has finished (the API says so; the page
 * may still show the run we came from while the router moves on), then opens its page
 * afresh; returns its id and API view. */
async function finishedRun(page) {
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  const id = page.url().split('/').pop();
  let run;
  for (let i = 0; i < 150; i++) {
    run = (await api(srv.base, `/api/runs/${id}`)).body;
    if (run.summary) break;
    await page.waitForTimeout(200);
  }
  assert.equal(run.status, 'completed', JSON.stringify(run.error));
  await open(page, `/runs/${id}`);
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor();
  return { id, run };
}

/** Screenshots of `locator` (after `prepare`) at both widths; nothing scrolls sideways. */
async function shots(page, name, locator, prepare = async () => {}) {
  for (const width of [1400, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await prepare();
    await locator.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(artifacts, `${name}-${width}.png`) });
    if (width === 390) {
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(wide <= 390, `${name}: the page scrolls sideways at 390 px (${wide} px)`);
    }
  }
  await page.setViewportSize({ width: 1400, height: 900 });
}

/** A run launched from the New-run form with the client secret typed in. */
async function formRun(page, tag, connections) {
  await open(page, '/runs/new');
  await page.locator('input[name="form[name]"]').fill(`oauth ${tag}`);
  await page.locator('input[name="form[target]"]').fill(`${srv.sandbox}/echo?tag=${tag}`);
  await page.locator('input[name="form[connections]"]').fill(String(connections));
  await page.locator('input[name="form[ramp_secs]"]').fill('1');
  await page.locator('input[name="form[hold_secs]"]').fill('1');
  await page.locator('input[name="form[message_every_secs]"]').fill('0');
  await page.locator('input[name="form[token_url]"]').fill(tokenUrl(tag));
  await page.locator('input[name="form[client_id]"]').fill('loadtest');
  await page.locator('input[name="form[client_secret]"]').fill(SECRET);
  await page.getByRole('button', { name: 'Launch', exact: true }).click();
  return finishedRun(page);
}

test('run again asks for the secret the run did not keep, then runs with it', async () => {
  const page = await ctx.newPage();
  const first = await formRun(page, 'e1', 4);
  assert.equal(first.run.summary.totals.opened, 4);
  assert.equal(first.run.plan.auth.source.client_secret, '<redacted>');

  // The prompt: one password field, labelled with the field and its token endpoint.
  const prompt = page.locator('.run-actions__rerun');
  await shots(page, 'rerun-secret-prompt', prompt, async () => {
    if (!(await prompt.evaluate((d) => d.open))) await page.locator('[data-action="rerun-open"]').click();
  });
  const field = prompt.locator('input[type="password"][data-secret="auth.source.client_secret"]');
  await field.waitFor();
  assert.equal(await prompt.locator('input[type="password"]').count(), 1);
  assert.match(await prompt.locator('.field__label').innerText(), /^OAuth client secret for token endpoint http:\/\/.*strict_client=1&tag=e1$/);
  await field.fill(SECRET);
  await prompt.locator('[data-action="rerun"]').click();
  await page.waitForURL((u) => !u.pathname.endsWith(first.id) && /\/runs\/[0-9a-f]{32}$/.test(u.pathname));
  const again = await finishedRun(page);
  assert.equal(again.run.summary.totals.opened, 4);
  assert.equal(again.run.summary.latency.token_fetch.count, 1, 'the token was fetched');
  assert.deepEqual(again.run.plan, first.run.plan);
  assert.ok(!(await page.content()).includes(SECRET), 'the secret is echoed back');

  // A wrong secret: the token endpoint's refusal is what the target said; nothing crashed.
  await page.locator('[data-action="rerun-open"]').click();
  await page.locator('.run-actions__rerun input[type="password"]').fill('not-the-secret');
  await page.locator('.run-actions__rerun [data-action="rerun"]').click();
  await page.waitForURL((u) => !u.pathname.endsWith(again.id) && /\/runs\/[0-9a-f]{32}$/.test(u.pathname));
  const wrong = await finishedRun(page);
  assert.equal(wrong.run.summary.totals.opened, 0);
  const row = page.locator('#target-said tr[data-said="token_http_401"]');
  await row.waitFor();
  assert.match(await row.innerText(), /token endpoint: HTTP 401 Unauthorized/);
  assert.deepEqual(pageErrors, []);
});

test('edit and run again prefills the form; the new run has the changed value', async () => {
  const page = await ctx.newPage();
  const first = await formRun(page, 'e2', 3);
  await page.locator('[data-action="edit-rerun"]').click();
  await page.waitForURL(new RegExp(`/runs/new\\?from=${first.id}$`));
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  await page.locator(`.run-form__from[data-from="${first.id}"]`).waitFor();
  const value = (name) => page.locator(`input[name="form[${name}]"]`).inputValue();
  assert.equal(await value('name'), 'oauth e2');
  assert.equal(await value('target'), `${srv.sandbox}/echo?tag=e2`);
  assert.equal(await value('connections'), '3');
  assert.equal(await value('message_every_secs'), '0');
  assert.equal(await value('token_url'), tokenUrl('e2'));
  assert.equal(await value('client_id'), 'loadtest');
  assert.equal(await value('client_secret'), '', 'a secret the run did not keep is typed again');
  await page.screenshot({ path: join(artifacts, 'rerun-edit-form-1400.png'), fullPage: true });

  await page.locator('input[name="form[connections]"]').fill('5');
  await page.locator('input[name="form[client_secret]"]').fill(SECRET);
  await page.getByRole('button', { name: 'Launch', exact: true }).click();
  const edited = await finishedRun(page);
  assert.notEqual(edited.id, first.id);
  assert.equal(edited.run.plan.stages[1].connections, 5);
  assert.equal(edited.run.summary.totals.opened, 5);
  assert.equal(edited.run.plan.auth.source.client_secret, '<redacted>');
  assert.deepEqual(pageErrors, []);
});

test('a plan the form cannot show is edited as JSON, with its missing secrets asked for', async () => {
  const page = await ctx.newPage();
  const plan = {
    name: 'with a key header',
    target: `${srv.sandbox}/echo?tag=e4`,
    stages: [{ duration: '300ms', connections: 2 }, { duration: '500ms', connections: 2 }],
    headers: { 'X-Api-Key': 'typed-key-123' },
  };
  const launched = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  assert.equal(launched.status, 201, JSON.stringify(launched.body));
  await open(page, `/runs/${launched.body.id}`);
  const first = await finishedRun(page);
  await page.locator('[data-action="edit-rerun"]').click();
  await page.waitForURL(/\/runs\/new\?from=/);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  assert.match(await page.locator('.run-form__from').innerText(), /cannot show all of its plan/);
  const editor = page.locator('details.plan-json');
  assert.equal(await editor.evaluate((d) => d.open), true, 'the JSON editor opens by itself');
  const text = editor.locator('textarea[name="plan_json"]');
  const shown = JSON.parse(await text.inputValue());
  assert.equal(shown.headers['X-Api-Key'], '<redacted>');
  shown.stages[1].connections = 3;
  shown.stages[0].connections = 3;
  await text.fill(JSON.stringify(shown, null, 2));
  await editor.locator('input[type="password"][data-secret="headers.X-Api-Key"]').fill('typed-key-456');
  await editor.getByRole('button', { name: 'Launch this plan' }).click();
  await page.waitForURL((u) => /\/runs\/[0-9a-f]{32}$/.test(u.pathname) && !u.pathname.endsWith(first.id));
  const edited = await finishedRun(page);
  assert.equal(edited.run.plan.stages[1].connections, 3);
  assert.equal(edited.run.summary.totals.opened, 3);
  assert.equal(edited.run.plan.headers['X-Api-Key'], '<redacted>');
  assert.ok(!(await page.content()).includes('typed-key-456'));
  assert.deepEqual(pageErrors, []);
});

test('what the target said shows the reason of its close frames', async () => {
  const page = await ctx.newPage();
  const plan = {
    name: 'closes with a reason',
    target: `${srv.sandbox}/echo?close_cap=3&close_code=1008&tag=e3`,
    stages: [{ duration: '500ms', connections: 10 }, { duration: '1s', connections: 10 }],
  };
  const launched = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  assert.equal(launched.status, 201, JSON.stringify(launched.body));
  await open(page, `/runs/${launched.body.id}`);
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 30000 });
  await page.reload();
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  const row = page.locator('#target-said tr[data-said="server_1008"]');
  const reason = row.locator('[data-reason="too many concurrent connections"]');
  await reason.waitFor();
  const run = await api(srv.base, `/api/runs/${launched.body.id}`);
  const n = run.body.summary.evidence.close_reasons['1008']['too many concurrent connections'];
  assert.ok(n >= 7, JSON.stringify(run.body.summary.evidence));
  assert.match(await row.innerText(), /close 1008 policy violation/);
  assert.match(await reason.innerText(), new RegExp(`too many concurrent connections.*×${n}`));
  await shots(page, 'target-said-close-reason', page.locator('#target-said'));
  assert.deepEqual(pageErrors, []);
});
