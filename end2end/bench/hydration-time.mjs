// Time from navigation to a hydrated page, in a fresh Chromium context each
// time: performance.now() when <main data-hydrated> turns "true".
// Usage: node bench/hydration-time.mjs http://127.0.0.1:3999/ [runs]
import { chromium } from "playwright-core";

const url = process.argv[2] ?? "http://127.0.0.1:3000/";
const runs = Number(process.argv[3] ?? 7);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
});
const times = [];
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(() => {
    new MutationObserver(() => {
      const main = document.querySelector("main");
      if (main?.dataset.hydrated === "true" && !window.__hydratedAt) window.__hydratedAt = performance.now();
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-hydrated"] });
  });
  await page.goto(url);
  await page.waitForFunction(() => window.__hydratedAt);
  times.push(await page.evaluate(() => window.__hydratedAt));
  await context.close();
}
await browser.close();
times.sort((a, b) => a - b);
const ms = (t) => t.toFixed(0);
console.log(`navigation_to_hydrated_ms  min ${ms(times[0])} median ${ms(times[Math.floor(runs / 2)])} max ${ms(times[runs - 1])} (${runs} runs)`);
