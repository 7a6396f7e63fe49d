// Times a page in headless chromium: navigation start -> every chart drawn (uPlot canvas
// in each .chart__plot). Prints the median of N loads in ms, as JSON.
//   node bench/browser_load.mjs URL [N]
import { chromium } from 'playwright-core';

const [url, n = '5'] = process.argv.slice(2);
const ctx = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const times = [];
for (let i = 0; i < Number(n); i++) {
  const page = await ctx.newPage({ viewport: { width: 1280, height: 900 } });
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => {
    const plots = [...document.querySelectorAll('.chart__plot')];
    return plots.length > 0 && plots.every((p) => p.querySelector('canvas'));
  }, null, { timeout: 30000 });
  times.push(Date.now() - t0);
  await page.close();
}
await ctx.close();
times.sort((a, b) => a - b);
console.log(JSON.stringify({ median: times[Math.floor(times.length / 2)], max: times[times.length - 1] }));
