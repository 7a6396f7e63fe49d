// Browser end-to-end for issue 16: the report a user trusts. A run launched from the
// New-run form with reconnect on against a sandbox cap: it keeps retrying to the end (no
// one gives up), the run page shows "What the target said" (the 429 status line, its
// body, Retry-After) right below the verdict, and the downloadable HTML report lists the
// same sections. Screenshots of the run page, the runs list and the New-run form at
// 1,400 px and 390 px go to e2e/artifacts/.
// Run: scripts/build.sh && node --test e2e/report.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, browser, api, artifacts, pageErrors } from './harness.mjs';

let srv;
let ctx;
before(async () => { srv = await startServer(); ctx = await browser(); });
after(async () => { await ctx?.close(); srv?.stop(); });

/** Section titles in document order (the run page's and the report's must match). */
const sectionTitles = (page) => page.locator('.run-detail section > h2').allTextContents();

/** Screenshots of `path` at both widths, named `NN-name-WIDTH.png` (and the first
 * screen at 390 px as `-390-top`); at 390 px nothing may scroll sideways. */
async function shots(page, path, name) {
  for (const width of [1400, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(`${srv.base}${path}`);
    await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
    await page.screenshot({ path: join(artifacts, `${name}-${width}.png`), fullPage: true });
    if (width === 390) {
      await page.screenshot({ path: join(artifacts, `${name}-390-top.png`) });
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(wide <= 390, `${path} scrolls sideways at 390 px: ${wide} px wide`);
    }
  }
  await page.setViewportSize({ width: 1400, height: 900 });
}

test('reconnect keeps retrying; the run page and the report show what the target said', async () => {
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.goto(`${srv.base}/runs/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  await page.locator('input[name="form[name]"]').fill('cap 15, reconnect on');
  await page.locator('input[name="form[target]"]').fill(`${srv.sandbox}/echo?cap=15`);
  await page.locator('input[name="form[connections]"]').fill('40');
  await page.locator('input[name="form[ramp_secs]"]').fill('2');
  await page.locator('input[name="form[hold_secs]"]').fill('4');
  await page.locator('input[name="form[message_every_secs]"]').fill('0');
  await page.locator('input[name="form[reconnect]"]').check();
  await page.getByRole('button', { name: 'Launch' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  const id = page.url().split('/').pop();
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 30000 });

  // The form's reconnect never gives up: the plan says so, and no one gave up.
  const run = await api(srv.base, `/api/runs/${id}`);
  assert.equal(run.body.plan.reconnect.max_attempts, 'unlimited');
  assert.equal(run.body.summary.totals.gave_up, 0);
  assert.equal(await page.locator('[data-gave-up]').count(), 0);

  // What the target said, right below the verdict.
  const said = page.locator('section.said');
  await said.waitFor();
  const row = said.locator('tr[data-said="http_429"]');
  assert.match(await row.textContent(), /HTTP 429 Too Many Requests/);
  assert.match(await row.textContent(), /too many concurrent connections/);
  assert.match(await said.locator('.said__retry').textContent(), /Retry-After: 1 s ×/);
  const order = await page.locator('.run-detail > section, .run-detail > .diagnosis').evaluateAll(
    (els) => els.map((e) => e.className));
  const verdictAt = order.findIndex((c) => c.includes('diagnosis'));
  assert.ok(verdictAt >= 0 && order[verdictAt + 1]?.includes('said'), `said follows the verdict: ${order}`);
  const pageSections = await sectionTitles(page);

  // Chart legends read the latest values without hovering.
  const openLegend = page.locator('figure[data-chart="connections"] .u-legend .u-series').nth(1).locator('.u-value');
  await page.waitForFunction((el) => el && el.textContent !== '--', await openLegend.elementHandle());
  assert.match(await openLegend.textContent(), /^\d+/);

  // The HTML report: the same sections, the same evidence.
  const report = await ctx.newPage();
  const res = await fetch(`${srv.base}/api/runs/${id}/report.html`);
  assert.equal(res.status, 200);
  await report.setContent(await res.text());
  assert.deepEqual(await sectionTitles(report), pageSections);
  assert.match(await report.locator('section.said').textContent(), /too many concurrent connections/);
  await report.close();

  await page.screenshot({ path: join(artifacts, '20-run-said-1400.png'), fullPage: true });
  await shots(page, `/runs/${id}`, '21-run');
  await shots(page, '/runs', '22-runs');
  await shots(page, '/runs/new', '23-new-run');
  assert.deepEqual(pageErrors, []);
});
