// Browser end-to-end for issue 16, "a probe you can follow": a probe against a sandbox
// cap of 40 and a handshake rate limit of 20/s, watched live on its run page. The
// experiment indicator moves on ("Experiment 1 of N: ramp to …" then the rate steps),
// the tiles name the experiment and never fall back to small numbers, the cap found by
// the ramp is drawn on the connections chart while the probe still runs, and the
// finished page (and its share link) lists every experiment with its reading and a
// latency table over the whole probe. Screenshots at 1,400 and 390 px go to
// e2e/artifacts/ (probe-live-*, probe-finished-*).
// Run: scripts/build.sh && node --test e2e/probe.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, browser, api, artifacts, pageErrors } from './harness.mjs';

let srv;
let ctx;
before(async () => { srv = await startServer(); ctx = await browser(); });
after(async () => { await ctx?.close(); srv?.stop(); });

/** The number a tile shows, as an integer (`1,234` → 1234; `12 / 80` → 12). */
const tileNumber = async (page, metric) => {
  const text = await page.locator(`.tile__value[data-metric="${metric}"]`).textContent();
  return Number(text.split('/')[0].replace(/[^0-9]/g, ''));
};

/** Screenshots of the current page at 1,400 and 390 px; at 390 nothing scrolls sideways. */
async function shots(page, name) {
  for (const width of [1400, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: join(artifacts, `${name}-${width}.png`), fullPage: true });
    await page.locator('section.probe').screenshot({ path: join(artifacts, `${name}-${width}-experiments.png`) });
    await page.locator('section.run-detail__charts').screenshot({ path: join(artifacts, `${name}-${width}-charts.png`) });
    await page.locator('.tiles').screenshot({ path: join(artifacts, `${name}-${width}-tiles.png`) });
    if (width === 390) {
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(wide <= 390, `${name} scrolls sideways at 390 px: ${wide} px wide`);
    }
  }
  await page.setViewportSize({ width: 1400, height: 900 });
}

test('a live probe says which experiment runs, draws what it found, and keeps it all', async () => {
  const plan = {
    name: 'probe: cap 40, 20 connects/s',
    target: `${srv.sandbox}/echo?cap=40&rate=20&burst=5&tag=e2e-probe`,
    stages: [],
    probe: { max_connections: 80, max_connect_rate: 40, max_duration: '20s' },
  };
  const launched = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  assert.equal(launched.status, 201, JSON.stringify(launched.body));
  const id = launched.body.id;
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.goto(`${srv.base}/runs/${id}`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });

  // Experiment 1, named in words, and the tile says it is that experiment's.
  const now = page.locator('.probe__now');
  await now.waitFor({ timeout: 15000 });
  const first = Number(await now.getAttribute('data-probe-current'));
  assert.match(await now.textContent(), /^Experiment \d+ of \d+: /);
  assert.match(await page.locator('.tile__sub[data-tile-experiment]').textContent(), /^experiment \d+ · probe peak \d+/);

  // The ramp ends: its reading appears, with the cap drawn on the connections chart
  // while the probe goes on with the rate steps.
  const capRow = page.locator('tr[data-probe-result="1"]');
  await capRow.waitFor({ timeout: 20000 });
  assert.match(await capRow.textContent(), /concurrency cap|plateau at 4\d open/);
  const found = Number(await capRow.getAttribute('data-found'));
  assert.ok(found >= 36 && found <= 44, `cap found ${found}`);
  await page.locator('.probe__now[data-probe-current="2"], .probe__now[data-probe-current="3"]').waitFor({ timeout: 10000 });
  const later = Number(await now.getAttribute('data-probe-current'));
  assert.ok(later > first, `the indicator moved on: ${first} -> ${later}`);
  assert.match(await now.textContent(), /connects\/s for [\d.]+ s/);
  const legend = page.locator('figure[data-chart="connections"] .u-legend');
  await page.waitForFunction((el) => el && /found ≈ 4\d \(exp 1\)/.test(el.textContent), await legend.elementHandle());

  // Tiles across experiments: the counters only grow and the peak stays the probe's.
  const attempted = await tileNumber(page, 'opened');
  const peakText = await page.locator('.tile__sub[data-tile-experiment]').textContent();
  const probePeak = Number(peakText.match(/probe peak (\d+)/)[1]);
  assert.ok(probePeak >= 36, `the probe's peak, not the experiment's: ${peakText}`);
  await shots(page, 'probe-live');
  await page.waitForFunction((n) => {
    const v = document.querySelector('.tile__value[data-metric="opened"]');
    return v && Number(v.textContent.replace(/[^0-9]/g, '')) > n;
  }, attempted, { timeout: 10000 });

  // Finished: every experiment and its reading, nothing running, the whole probe's
  // latency table, the found levels on the charts.
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 30000 });
  await page.locator('tr[data-probe-result]').first().waitFor();
  assert.equal(await page.locator('.probe__now').count(), 0);
  const run = await api(srv.base, `/api/runs/${id}`);
  const done = run.body.summary.probe.done;
  assert.equal(await page.locator('tr[data-probe-result]').count(), done.length);
  assert.ok(done.length >= 3, JSON.stringify(done));
  const latencyCount = await page.locator('table.latency tr', { hasText: 'ws_connecting' }).locator('td').nth(1).textContent();
  assert.equal(Number(latencyCount.replace(/[^0-9]/g, '')), run.body.summary.totals.opened,
    'the latency table counts every opened connection of every experiment');
  assert.match(await page.locator('h2', { hasText: 'Latency (whole run)' }).textContent(), /all experiments/);
  await page.waitForFunction((el) => el && /found ≈ /.test(el.textContent), await legend.elementHandle());
  await page.locator('section.probe').scrollIntoViewIfNeeded();
  await shots(page, 'probe-finished');

  // The share page shows the same experiments.
  await page.getByRole('button', { name: 'Share link' }).click();
  await page.locator('input[data-share-url]').waitFor();
  const share = new URL(await page.locator('input[data-share-url]').getAttribute('data-share-url'), srv.base).pathname;
  const sp = await ctx.newPage();
  await sp.goto(`${srv.base}${share}`);
  await sp.locator(`.run-detail[data-run-id="${id}"]`).waitFor();
  assert.equal(await sp.locator('tr[data-probe-result]').count(), done.length);
  assert.deepEqual(pageErrors, []);
});
