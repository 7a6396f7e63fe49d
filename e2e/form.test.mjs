// Browser end-to-end: the New-run form's optional sections (session model, variables,
// message and reply with captures) and every field error at once (issue 14's UI, issue
// 16 item 8). Screenshots of the form at 1,400 and 390 px and of a finished
// web-messaging run go to e2e/artifacts/ (and $SHOTS when set).
// Run: scripts/build.sh && node --test e2e/form.test.mjs   (needs /usr/bin/chromium)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, browser, api, artifacts, cspViolations, pageErrors } from './harness.mjs';

let srv;
let ctx;
const shots = process.env.SHOTS || artifacts;
mkdirSync(shots, { recursive: true });
before(async () => { srv = await startServer(); ctx = await browser(); });
after(async () => { await ctx?.close(); srv?.stop(); });

/** The New-run page, hydrated, with its optional sections open. */
async function openForm(page) {
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  for (const s of await page.locator('details.run-form__section').all()) {
    await s.locator('summary').click();
  }
}

const field = (page, name) => page.locator(`[name="form[${name}]"]`);

test('six bad values are six errors at once, then an open-model run with a var and captures completes', async () => {
  const page = await ctx.newPage();
  await openForm(page);
  const fill = (name, v) => field(page, name).fill(v);
  await fill('name', 'e2e open model');
  await field(page, 'model').selectOption('open');
  await field(page, 'stay').selectOption('uniform');
  await fill('stay_min_secs', '1');
  await fill('stay_max_secs', '2');
  await fill('vars', 'guest = guest-{{vu}}-{{uuid}}');
  await fill('message', '{"to":"{{var.guest}}","n":"{{now_ms}}","last":"{{var.n}}"}');
  await fill('expect_json_field', '$.to');
  await fill('expect_equals', '{{var.guest}}');
  await fill('captures', 'n = $.n\nto = /"to":"([^"]+)"/');

  // Six bad values: five the form cannot read, one (the scheme) the plan's validation rejects.
  const good = { target: await field(page, 'target').inputValue(), arrival_rate: '5', arrivals_secs: '3', message_every_secs: '0.5' };
  await fill('target', 'http://127.0.0.1:1/echo');
  await fill('arrival_rate', 'fast');
  await fill('arrivals_secs', '-3');
  await fill('message_every_secs', 'often');
  await fill('vars', 'guest = guest-{{vu}}-{{uuid}}\nno equals here');
  await fill('captures', 'n = $.n\nto = /unclosed');
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/api/launch_run')),
    page.getByRole('button', { name: 'Launch' }).click(),
  ]);
  assert.equal(answer.status(), 422);
  const errors = page.locator('.field__error');
  await page.waitForFunction(() => document.querySelectorAll('.field__error').length >= 6);
  const named = await errors.evaluateAll((es) => es.map((e) => e.dataset.field));
  assert.deepEqual([...named].sort(), ['arrival_rate', 'arrivals_secs', 'captures', 'message_every_secs', 'target', 'vars'], 'six errors after one submit');
  for (const f of ['target', 'arrival_rate', 'arrivals_secs', 'message_every_secs', 'vars', 'captures']) {
    assert.ok(named.includes(f), `${f} has its error: ${named}`);
    const input = field(page, f);
    assert.equal(await input.getAttribute('aria-invalid'), 'true', f);
    const by = await input.getAttribute('aria-describedby');
    assert.equal(await page.locator(`#${by}`).getAttribute('data-field'), f, `${f}'s aria-describedby names its error`);
  }
  assert.match(await page.locator('#vars-error').textContent(), /line 2: /);
  assert.match(await page.locator('#captures-error').textContent(), /line 2: /);
  // Focus is on the first invalid field, in page order: the target.
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-invalid') === 'true');
  assert.equal(await page.evaluate(() => document.activeElement.name), 'form[target]');
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.screenshot({ path: join(shots, 'form-errors-1400.png'), fullPage: true });

  // Fixed, it launches; the run completes with guests arriving and leaving.
  for (const [k, v] of Object.entries(good)) await fill(k, v);
  await fill('vars', 'guest = guest-{{vu}}-{{uuid}}');
  await fill('captures', 'n = $.n\nto = /"to":"([^"]+)"/');
  await page.getByRole('button', { name: 'Launch' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  const id = page.url().split('/').pop();
  await page.locator('.badge[data-status="completed"]').waitFor({ timeout: 30000 });
  const run = (await api(srv.base, `/api/runs/${id}`)).body;
  assert.equal(run.plan.sessions.arrivals[0].rate, 5, 'an open-model plan');
  assert.deepEqual(run.plan.stages, []);
  assert.equal(run.plan.vars.guest, 'guest-{{vu}}-{{uuid}}');
  const expect = run.plan.script[0].repeat.steps[1].expect;
  assert.equal(expect.equals, '{{var.guest}}', 'the reply is correlated');
  assert.deepEqual(Object.keys(expect.capture).sort(), ['n', 'to']);
  const t = run.summary.totals;
  assert.ok(t.arrivals >= 10 && t.opened >= 10, `guests arrived: ${JSON.stringify(t)}`);
  assert.equal(t.failed, 0, JSON.stringify(t));
  assert.equal(t.expect_timeouts, 0, `every correlated reply matched: ${JSON.stringify(t)}`);
  assert.equal(t.capture_misses, 0, `every capture found its value: ${JSON.stringify(t)}`);
  assert.ok(t.msgs_received > 0, JSON.stringify(t));
  await page.screenshot({ path: join(shots, 'open-run-finished.png'), fullPage: true });
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(cspViolations, []);
});

test('the form with its sections open at 1,400 and 390 px: labelled, no sideways scroll', async () => {
  const page = await ctx.newPage();
  for (const width of [1400, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await openForm(page);
    await field(page, 'model').selectOption('open');
    await field(page, 'vars').fill('guest = {{uuid}}');
    await field(page, 'captures').fill('id = $.body.id');
    await page.screenshot({ path: join(shots, `form-${width}.png`), fullPage: true });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(wide <= 0, `${width} px: the page is ${wide} px too wide`);
    // Every control has a label (it sits inside one).
    const unlabeled = await page.locator('.run-form input:not([type=hidden]), .run-form select, .run-form textarea')
      .evaluateAll((es) => es.filter((e) => !e.closest('label') && !(e.labels?.length) && !e.getAttribute('aria-label')).map((e) => e.name));
    assert.deepEqual(unlabeled, [], `${width} px`);
  }
});

test('a finished web-messaging run reads "concurrency cap 150"', async () => {
  const plan = JSON.parse(readFileSync('examples/web-messaging-guests.json', 'utf8'));
  plan.target = plan.target.replace('ws://127.0.0.1:9001', srv.sandbox);
  const { status, body } = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  assert.equal(status, 201, JSON.stringify(body));
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.goto(`${srv.base}${body.url}`);
  await page.locator('.badge[data-status="completed"], .badge[data-status="cancelled"]').waitFor({ timeout: 60000 });
  const diagnosis = page.locator('.diagnosis[data-kind="concurrency_cap"]');
  await diagnosis.waitFor({ timeout: 30000 });
  assert.ok(Math.abs(Number(await diagnosis.getAttribute('data-level')) - 150) <= 5, await diagnosis.getAttribute('data-level'));
  const said = await diagnosis.textContent();
  assert.match(said, /concurrency cap/i, said);
  assert.match(said, /150/, said);
  await page.screenshot({ path: join(shots, 'web-messaging-run.png'), fullPage: true });
});
