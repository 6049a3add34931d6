// Rows in the page while the Results list shows a long run: 1,000 nines
// (30,578 steps) run to 1 as fast as possible, then the list is read at its
// end, in the middle (by "Go to step") and at its start.
// Usage: node bench/dom-rows.mjs http://127.0.0.1:3999/
import { chromium } from "playwright-core";

const url = process.argv[2] ?? "http://127.0.0.1:3000/";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
});
const page = await browser.newPage();
await page.goto(url);
await page.waitForSelector('main[data-hydrated="true"]');
await page.waitForSelector('[data-link="live"]');
await page.selectOption("#interval", "0");
await page.fill("#number", "9".repeat(1000));
await page.press("#number", "Enter");
await page.waitForFunction(() => document.querySelector("#run-status")?.textContent?.startsWith("Reached 1"), null, { timeout: 120_000 });
const steps = Number((await page.textContent('[data-stat="steps"]')).replaceAll(",", ""));
const rows = () => page.locator(".results li").count();
const atEnd = await rows();
const middle = Math.floor(steps / 2);
const asked = Date.now();
await page.fill("#go-step", String(middle));
await page.click('.go button[type="submit"]');
await page.waitForFunction((step) => {
  const li = document.querySelector(`.results li[data-step="${step}"]`);
  return li && li.getAttribute("aria-busy") !== "true";
}, middle);
const shownIn = Date.now() - asked;
const atMiddle = await rows();
await page.locator(".scroller").evaluate((el) => el.scrollTo(0, 0));
await page.waitForFunction(() => document.querySelector('.results li[data-step="0"]')?.getAttribute("aria-busy") !== "true");
const atStart = await rows();
await browser.close();
console.log(`dom_rows  ${steps + 1} values: ${atEnd} rows at the end, ${atMiddle} at step ${middle} (shown ${shownIn} ms after "Go"), ${atStart} at the start`);
