// Browser end-to-end for issue 16, "steer a live run": a live run's level is raised
// from the run page's Steer panel; the swarm reaches the new level, the change shows as
// a marker on the connections chart and as a row of the Changes list, and the stored
// plan (GET /api/runs/{id}) records it. "End hold now" then finishes the run normally.
// Screenshots at 1,400 px and 390 px (live, and finished) go to e2e/artifacts/.
// Run: scripts/build.sh && node --test e2e/steer.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, browser, api, artifacts, pageErrors } from './harness.mjs';

let srv;
let ctx;
before(async () => { srv = await startServer(); ctx = await browser(); });
after(async () => { await ctx?.close(); srv?.stop(); });

/** Polls the API until the run's latest tick shows `open` connections (bounded). */
async function waitOpen(id, open) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const run = await api(srv.base, `/api/runs/${id}`);
    if (run.body.last?.open === open) return run.body;
    assert.ok(Date.now() < deadline, `never ${open} open: ${JSON.stringify(run.body.last?.open)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Screenshots at both widths; at 390 px nothing may scroll sideways. */
async function shots(page, name) {
  for (const width of [1400, 390]) {
    await page.setViewportSize({ width, height: 900 });
    // The chart redraws at its new width on resize.
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(artifacts, `${name}-${width}.png`), fullPage: true });
    if (width === 390) {
      await page.screenshot({ path: join(artifacts, `${name}-390-top.png`) });
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(wide <= 390, `run page scrolls sideways at 390 px: ${wide} px wide`);
    }
  }
  await page.setViewportSize({ width: 1400, height: 900 });
}

test('a live run is steered from its page: level, chart marker, changes list, stored plan', async () => {
  const launched = await api(srv.base, '/api/runs', {
    method: 'POST',
    body: JSON.stringify({
      name: 'steer me',
      target: `${srv.sandbox}/echo`,
      stages: [{ duration: '1s', connections: 10 }, { duration: '60s', connections: 10 }, { duration: '2s', connections: 0 }],
    }),
  });
  assert.equal(launched.status, 201, JSON.stringify(launched.body));
  const id = launched.body.id;
  await waitOpen(id, 10);

  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.goto(`${srv.base}/runs/${id}`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  const panel = page.locator('[data-steer]');
  await panel.getByLabel('Level (connections)').fill('30');
  await panel.getByRole('button', { name: 'Set level' }).click();
  await panel.locator('.steer__ok').filter({ hasText: 'level 10 → 30' }).waitFor();

  // On the page: a row of the Changes list and a marker on the connections chart.
  const row = page.locator('[data-steer-timeline] tr[data-steer-kind="level"]');
  await row.waitFor();
  assert.match(await row.textContent(), /level 10 → 30/);
  await page.locator('[data-chart="connections"] .chart__plot[data-marks="1"]').waitFor();

  // In the stored plan, while the run is live.
  const stored = (await api(srv.base, `/api/runs/${id}`)).body.plan;
  assert.equal(stored.steering.length, 1);
  assert.equal(stored.steering[0].kind, 'level');
  assert.equal(stored.steering[0].from, 10);
  assert.equal(stored.steering[0].to, 30);
  assert.deepEqual(stored.stages.map((s) => s.connections).slice(-2), [30, 0], JSON.stringify(stored.stages));

  // The swarm follows; the chart shows the climb after the marker.
  await waitOpen(id, 30);
  await page.waitForTimeout(2200);
  await shots(page, 'steer-live');

  // A bad value is refused with the field and the limit, and nothing changes.
  await panel.getByLabel('Connect rate (per second)').fill('0');
  await panel.getByRole('button', { name: 'Set rate' }).click();
  await panel.locator('.steer__error').filter({ hasText: 'rate' }).waitFor();
  assert.equal((await api(srv.base, `/api/runs/${id}`)).body.plan.steering.length, 1);

  // End the hold: the planned ramp-down, then a normal finish.
  await panel.getByRole('button', { name: 'End hold now' }).click();
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 20000 });
  const done = (await api(srv.base, `/api/runs/${id}`)).body;
  assert.equal(done.status, 'completed');
  assert.deepEqual(done.plan.steering.map((e) => e.kind), ['level', 'end_hold']);
  assert.ok(done.summary.duration_ms < 30000, `ended early: ${done.summary.duration_ms} ms`);
  assert.equal(done.summary.peak_open, 30);

  // The finished page (re-read from the store) keeps both changes, and no Steer panel.
  await page.locator('[data-steer-timeline] tbody tr').nth(1).waitFor();
  await page.locator('[data-chart="connections"] .chart__plot[data-marks="2"]').waitFor();
  assert.equal(await page.locator('[data-steer]').count(), 0);
  await shots(page, 'steer-finished');
  // The HTML report lists the same changes.
  const report = await api(srv.base, `/api/runs/${id}/report.html`);
  assert.equal(report.status, 200);
  assert.match(report.body, /<h2>Changes<\/h2>/);
  assert.match(report.body, /level 10 → 30/);
  assert.deepEqual(pageErrors, []);
});
