// Browser end-to-end: the history workflow. Write a plan, run it, make that run the
// baseline, change the plan, run again, see the difference, compare the two runs, share
// the comparison and a run, open the links in a fresh browser, download the HTML report
// and open it from file://, tag a run, filter by the tag, delete a run behind its
// confirmation.
// Run: scripts/build.sh && node --test e2e/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { startServer, browser, api, artifacts, cspViolations, pageErrors } from './harness.mjs';

let srv;
let ctx;
before(async () => { srv = await startServer(); ctx = await browser(); });
after(async () => { await ctx?.close(); srv?.stop(); });

const planToml = (sandbox, cap) => `# e2e plan
name = "tenant cap"
target = "${sandbox}/echo?cap=${cap}"

# 4 connections a second: the rejections span more than one second, so a cap is told
# apart from a rate limit.
[[stages]]
duration = "3s"
connections = 12

[[stages]]
duration = "1s"
connections = 12
`;

/** Waits until the page shows a finished run and returns its id. */
async function finished(page) {
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 30000 });
  return page.url().split('/').pop();
}

test('plan, run, baseline, change, run again, compare, share, download, tag, delete', async () => {
  const page = await ctx.newPage();

  // A new saved plan, imported from a TOML file on disk.
  const file = join(artifacts, 'tenant-cap.toml');
  writeFileSync(file, planToml(srv.sandbox, 4));
  await page.goto(`${srv.base}/plans/new`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  await page.locator('input[type="file"]').setInputFiles(file);
  await page.waitForFunction(() => document.querySelector('textarea[name="text"]')?.value.includes('cap=4'));
  await page.getByRole('button', { name: 'Save plan' }).click();
  await page.waitForURL(/\/plans\/[0-9a-f]{32}$/);
  const planUrl = page.url();
  assert.match(await page.locator('textarea[name="text"]').inputValue(), /# Ramp linearly/, 'the editor shows the commented TOML');

  // Run it; make the run the plan's baseline.
  await page.getByRole('button', { name: 'Run this plan' }).click();
  const first = await finished(page);
  await page.getByRole('button', { name: 'Set as plan baseline' }).click();
  await page.locator('.run-detail__meta .tag--baseline').waitFor();

  // Change the plan (the target's cap 4 -> 8) and run it again.
  await page.goto(planUrl);
  const editor = page.locator('textarea[name="text"]');
  await editor.fill((await editor.inputValue()).replace('cap=4', 'cap=8'));
  await page.getByRole('button', { name: 'Save plan' }).click();
  await page.waitForFunction(() => document.querySelector('textarea[name="text"]')?.value.includes('cap=8'));
  await page.getByRole('button', { name: 'Run this plan' }).click();
  const second = await finished(page);
  assert.notEqual(first, second);

  // The new run shows its difference from the baseline, in words.
  const panel = page.locator('section.baseline');
  await panel.waitFor();
  const changes = await panel.locator('.cmp__changes').textContent();
  assert.match(changes, /first 429 at 4 open connections → 8/);
  assert.match(changes, /peak open connections 4 → 8/);
  assert.equal(await panel.locator('.cmp__changes li').first().getAttribute('class'), 'cmp__behaviour', 'behaviour changes lead, latency shifts follow');
  await page.screenshot({ path: join(artifacts, '12-run-vs-baseline.png'), fullPage: true });

  // Compare from the runs list: tick both (baseline first), "Compare selected".
  await page.goto(`${srv.base}/runs`);
  // The verdict is in the list, and the list filters by it.
  const verdictCell = page.locator(`tr[data-run-id="${second}"] td.runs__verdict`);
  assert.equal(await verdictCell.getAttribute('data-verdict'), 'concurrency_cap');
  assert.equal(await verdictCell.textContent(), 'concurrency cap ≈ 8');
  await page.locator('select[name="verdict"]').selectOption('concurrency_cap');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/verdict=concurrency_cap/);
  const kinds = await page.locator('tbody td.runs__verdict').evaluateAll((tds) => tds.map((td) => td.dataset.verdict));
  assert.ok(kinds.length >= 2 && kinds.every((k) => k === 'concurrency_cap'), `only capped runs: ${kinds}`);
  await page.screenshot({ path: join(artifacts, '12b-runs-by-verdict.png'), fullPage: true });
  await page.goto(`${srv.base}/runs`);
  await page.locator(`tr[data-run-id="${first}"] input[type="checkbox"]`).check();
  await page.locator(`tr[data-run-id="${second}"] input[type="checkbox"]`).check();
  await page.getByRole('button', { name: 'Compare selected' }).click();
  await page.waitForURL(/\/compare\?/);
  await page.locator('.compare').waitFor();
  assert.equal(await page.locator('.compare').getAttribute('data-runs'), `${first},${second}`);
  const peak = page.locator('tr[data-metric="peak_open"] td');
  assert.match(await peak.nth(1).textContent(), /^4/);
  assert.match(await peak.nth(2).textContent(), /^8.*\+100\.0 %/);
  assert.match(await page.locator('.cmp__changes').textContent(), /first 429 at 4 open connections → 8/);
  await page.waitForFunction(() => document.querySelectorAll('.compare .chart__plot canvas').length >= 4);
  await page.screenshot({ path: join(artifacts, '13-compare.png'), fullPage: true });

  // Share the comparison; open the link in a fresh browser (no cookies, no history).
  await page.getByRole('button', { name: 'Share link' }).click();
  const shareInput = page.locator('input[data-share-url]');
  await shareInput.waitFor();
  const comparePath = new URL(await shareInput.getAttribute('data-share-url'), srv.base).pathname;
  assert.match(comparePath, /^\/share\/[0-9a-f]{32}$/);
  const fresh = await browser();
  try {
    const sp = await fresh.newPage();
    await sp.goto(`${srv.base}${comparePath}`);
    await sp.locator('.compare').waitFor();
    assert.match(await sp.locator('.cmp__changes').textContent(), /first 429 at 4 open connections → 8/);
    assert.equal(await sp.locator('.topbar__nav').count(), 0, 'a share page has no navigation');
    assert.equal(await sp.locator('a[href^="/runs"], a[href^="/plans"]').count(), 0, 'no links into the instance');
    assert.equal(await sp.locator('[data-action]').count(), 0, 'no actions on a share page');
    await sp.screenshot({ path: join(artifacts, '14-shared-compare.png'), fullPage: true });
  } finally {
    await fresh.close();
  }

  // Share the second run; in a fresh browser download its HTML report and open it from disk.
  await page.goto(`${srv.base}/runs/${second}`);
  await page.getByRole('button', { name: 'Share link' }).click();
  await page.locator('input[data-share-url]').waitFor();
  const runShare = new URL(await page.locator('input[data-share-url]').getAttribute('data-share-url'), srv.base).pathname;
  const fresh2 = await browser({ acceptDownloads: true });
  try {
    const sp = await fresh2.newPage();
    await sp.goto(`${srv.base}${runShare}`);
    await sp.locator(`.run-detail[data-run-id="${second}"]`).waitFor();
    assert.equal(await sp.locator('[data-action]').count(), 0, 'read-only');
    assert.equal(await sp.locator('.baseline').count(), 0, 'no baseline panel (it would name another run)');
    const csvHref = await sp.locator('a', { hasText: 'CSV (per second)' }).getAttribute('href');
    assert.equal(csvHref, `${runShare}/series.csv`);
    await sp.screenshot({ path: join(artifacts, '15-shared-run.png'), fullPage: true });
    const [download] = await Promise.all([
      sp.waitForEvent('download'),
      sp.locator('a', { hasText: 'Download HTML report' }).click(),
    ]);
    const file = join(artifacts, 'shared-report.html');
    await download.saveAs(file);
    assert.match(readFileSync(file, 'utf8'), /tenant cap/);
    const offline = await fresh2.newPage();
    await offline.goto(`file://${file}`);
    await offline.waitForFunction(() => document.querySelectorAll('canvas').length >= 2);
    assert.match(await offline.locator('body').textContent(), /Concurrency cap/);
    await offline.screenshot({ path: join(artifacts, '16-report-from-file.png'), fullPage: true });
    // The run's id does not open the instance: /runs/... is a normal page only because
    // this test instance has no access token; the share link itself names no run id.
    assert.ok(!runShare.includes(second));
  } finally {
    await fresh2.close();
  }

  // Tags and a note, then filter the list by the tag.
  await page.goto(`${srv.base}/runs/${second}`);
  await page.locator('summary', { hasText: 'Tags and note' }).click();
  await page.locator('input[name="tags"]').fill('cap8, e2e');
  await page.locator('textarea[name="note"]').fill('raised the tenant cap');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('.run-detail__note').waitFor();
  assert.equal(await page.locator('.run-detail__note').textContent(), 'raised the tenant cap');
  await page.goto(`${srv.base}/runs?tag=cap8`);
  const rows = page.locator('tbody tr');
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().getAttribute('data-run-id'), second);

  // Delete the first run: the button sits behind a confirmation.
  await page.goto(`${srv.base}/runs/${first}`);
  const del = page.getByRole('button', { name: 'Delete this run permanently' });
  assert.equal(await del.isVisible(), false, 'hidden until the user opens Delete…');
  await page.locator('summary', { hasText: 'Delete…' }).click();
  await del.click();
  await page.waitForURL(/\/runs$/);
  assert.equal((await api(srv.base, `/api/runs/${first}`)).status, 404);
  assert.equal((await api(srv.base, `/api/shares/${comparePath.split('/').pop()}`)).status, 404, 'its share links went with it');
  // The list it lands on (loaded in the browser, no filters) holds the run that is left.
  await page.locator('tbody tr').first().waitFor();
  assert.deepEqual(await page.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.runId)), [second]);
  assert.equal(await page.locator('.error').count(), 0, 'no error on the runs list');
  await page.screenshot({ path: join(artifacts, '17-after-delete.png'), fullPage: true });
});

test('the other buttons: save as plan, duplicate, run from the list, run again, delete a plan, filter', async () => {
  const page = await ctx.newPage();
  const failed = [];
  page.on('response', (r) => { if (r.url().includes('/api/') && r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  const plan = { name: 'buttons', target: `${srv.sandbox}/echo`, stages: [{ duration: '1s', connections: 3 }] };
  const { body: launched } = await api(srv.base, '/api/runs', { method: 'POST', body: JSON.stringify(plan) });
  await page.goto(`${srv.base}/runs/${launched.id}`);
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached' });
  await page.locator('.run-detail .badge[data-status="completed"]').waitFor({ timeout: 30000 });

  // Save as plan: the run's plan becomes a saved plan, opened in the editor.
  await page.getByRole('button', { name: 'Save as plan' }).click();
  await page.waitForURL(/\/plans\/[0-9a-f]{32}$/);
  const saved = page.url().split('/').pop();
  await page.locator('textarea[name="text"]').waitFor();
  assert.match(await page.locator('textarea[name="text"]').inputValue(), /name = "buttons"/);

  // Duplicate: a second plan with the same body, opened in turn.
  await page.getByRole('button', { name: 'Duplicate' }).click();
  await page.waitForURL((u) => /\/plans\/[0-9a-f]{32}$/.test(u.pathname) && !u.pathname.endsWith(saved));
  const copy = page.url().split('/').pop();
  await page.locator('textarea[name="text"]').waitFor();
  assert.match(await page.locator('textarea[name="text"]').inputValue(), /connections = 3/);

  // Delete the copy behind its confirmation: back on the plans list, without it.
  await page.locator('summary', { hasText: 'Delete…' }).click();
  await page.getByRole('button', { name: 'Delete this plan' }).click();
  await page.waitForURL(/\/plans$/);
  await page.locator(`tbody tr a[href="/plans/${saved}"]`).waitFor();
  assert.equal(await page.locator(`a[href="/plans/${copy}"]`).count(), 0);
  assert.equal((await api(srv.base, `/api/plans/${copy}`)).status, 404);

  // Run from the plans list: a new run of the saved plan.
  await page.locator('tr', { has: page.locator(`a[href="/plans/${saved}"]`) }).getByRole('button', { name: 'Run' }).click();
  const fromList = await finished(page);
  assert.notEqual(fromList, launched.id);
  assert.equal((await api(srv.base, `/api/runs/${fromList}`)).body.plan_id, saved);

  // Run again on that run: the same plan once more.
  await page.getByRole('button', { name: 'Run again' }).click();
  await page.waitForURL((u) => /\/runs\/[0-9a-f]{32}$/.test(u.pathname) && !u.pathname.endsWith(fromList));
  const again = await finished(page);
  assert.deepEqual((await api(srv.base, `/api/runs/${again}`)).body.plan, (await api(srv.base, `/api/runs/${fromList}`)).body.plan);

  // Filter the list by plan with the form: the saved plan's runs (the run it was saved
  // from counts as its first), nothing else.
  await page.goto(`${srv.base}/runs`);
  await page.locator('select[name="plan"]').selectOption(saved);
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(new RegExp(`plan=${saved}`));
  await page.locator('tbody tr').first().waitFor();
  const ids = await page.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.runId));
  assert.deepEqual(ids.sort(), [launched.id, fromList, again].sort());
  assert.deepEqual(failed, []);
});

test('no page had anything refused by its Content-Security-Policy', () => {
  assert.deepEqual(cspViolations, []);
});

test('no page hit an uncaught script error or a panic', () => {
  assert.deepEqual(pageErrors, []);
});
