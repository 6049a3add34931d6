import { readFile } from "node:fs/promises";
import { expect, test, type Page } from "@playwright/test";
import { enter, open, results, runningSwitch, runStatus, snap, stat, trajectory } from "./helpers";

const scroller = (page: Page) => page.locator(".scroller");
const row = (page: Page, step: number) => results(page).locator(`li[data-step="${step}"]`);
const digits = (text: string | null) => (text ?? "").replaceAll(",", "");

/** Runs `start` as fast as possible to 1; returns its trajectory. */
async function runToOne(page: Page, start: string): Promise<string[]> {
  await page.getByLabel("Step every").selectOption("0");
  await expect(page.getByLabel("Step every")).toHaveValue("0");
  await enter(page, start);
  const all = trajectory(BigInt(start));
  await expect(runStatus(page)).toHaveText(`Reached 1 in ${(all.length - 1).toLocaleString("en-US")} steps.`, {
    timeout: 60_000,
  });
  return all;
}

/** Whether row `step` is inside the scroller's view. */
async function inView(page: Page, step: number): Promise<boolean> {
  const view = (await scroller(page).boundingBox())!;
  const box = await row(page, step).boundingBox();
  return box !== null && box.y >= view.y - 1 && box.y + box.height <= view.y + view.height + 1;
}

test("scrolling far back in a long run shows exact old values, with few rows in the page", async ({ page }) => {
  await open(page);
  // 100 nines: 3,274 steps, far more than the 256 newest values the page keeps.
  const all = await runToOne(page, "9".repeat(100));
  await expect(page.locator(".count")).toHaveText(`${all.length.toLocaleString("en-US")} values.`);
  // It follows the newest value: the last row is in view.
  await expect(row(page, all.length - 1)).toHaveText("1");
  expect(await inView(page, all.length - 1)).toBe(true);
  // Scroll to the top: the oldest values are fetched from the server.
  await scroller(page).evaluate((el) => el.scrollTo(0, 0));
  for (const step of [0, 1, 5, 17]) {
    await expect(row(page, step)).toHaveText(all[step]);
  }
  // Then to the middle.
  await scroller(page).evaluate((el) => el.scrollTo(0, el.scrollHeight / 2));
  // The list places its rows on the scroll event: wait for them to move.
  const placed = () => results(page).locator("li").nth(25).getAttribute("data-step").then(Number);
  await expect.poll(placed).toBeGreaterThan(1000);
  const middle = await placed();
  await expect(row(page, middle)).toHaveText(all[middle]);
  expect(await results(page).locator("li").count()).toBeLessThanOrEqual(300);
  await snap(page, "scrolled-back");
});

test("go to step, go to peak", async ({ page }) => {
  await open(page);
  const all = await runToOne(page, "9".repeat(100));
  await page.getByLabel("Go to step").fill("1,234");
  await page.getByRole("button", { name: "Go", exact: true }).click();
  await expect(row(page, 1234)).toHaveText(all[1234]);
  await expect(row(page, 1234)).toHaveAttribute("aria-current", "true");
  expect(await inView(page, 1234)).toBe(true);
  // A step the run does not have is refused with the range.
  await page.getByLabel("Go to step").fill("99999");
  await page.getByRole("button", { name: "Go", exact: true }).click();
  await expect(page.locator("#go-error")).toHaveText(`Enter a step from 0 to ${(all.length - 1).toLocaleString("en-US")}.`);
  // The peak: the largest value, at the first step it was reached.
  const peak = all.reduce((a, b) => (BigInt(b) > BigInt(a) ? b : a));
  const peakStep = all.indexOf(peak);
  await page.getByRole("button", { name: "Go to peak" }).click();
  await expect(row(page, peakStep)).toHaveText(peak);
  await expect(row(page, peakStep)).toHaveAttribute("aria-current", "true");
  expect(await inView(page, peakStep)).toBe(true);
  expect(digits(await stat(page, "peak").textContent())).toBe(peak);
});

test("new values do not move what the reader looks at; go to newest follows again", async ({ page }) => {
  await open(page);
  // A long run at the suite's interval (100 ms): it keeps running.
  await enter(page, "9".repeat(100));
  await expect.poll(async () => Number(digits(await stat(page, "steps").textContent())), { timeout: 60_000 }).toBeGreaterThan(40);
  await scroller(page).evaluate((el) => el.scrollTo(0, 0));
  await expect(row(page, 3)).toBeVisible();
  const before = await row(page, 3).boundingBox();
  const where = (box: { x: number; y: number } | null) => ({ x: box?.x, y: box?.y });
  const steps = Number(digits(await stat(page, "steps").textContent()));
  await expect.poll(async () => Number(digits(await stat(page, "steps").textContent()))).toBeGreaterThan(steps + 5);
  // Where it is on screen (its width follows the widest row in the page).
  expect(where(await row(page, 3).boundingBox())).toEqual(where(before));
  await expect(row(page, 3)).toHaveText(trajectory(10n ** 100n - 1n)[3]);
  await page.getByRole("button", { name: "Go to newest" }).click();
  // Following again: the newest row is in view as the run goes on.
  for (let i = 0; i < 2; i++) {
    const now = Number(digits(await stat(page, "steps").textContent()));
    await expect.poll(async () => Number(digits(await stat(page, "steps").textContent()))).toBeGreaterThan(now);
    const newest = Number(digits(await stat(page, "steps").textContent()));
    await expect.poll(() => inView(page, newest)).toBe(true);
  }
  await expect(page.getByRole("button", { name: "Go to newest" })).toBeDisabled();
  // Paused: the newest value itself is in view, not just the one before it.
  await runningSwitch(page).click();
  await expect(runStatus(page)).toHaveText("Paused");
  const last = Number(digits(await stat(page, "steps").textContent()));
  await expect(row(page, last)).toHaveText(trajectory(10n ** 100n - 1n)[last]);
  await expect.poll(() => inView(page, last)).toBe(true);
});

test("the CSV download is the whole run, exactly", async ({ page }) => {
  await open(page);
  const start = "9".repeat(100);
  const all = await runToOne(page, start);
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download CSV" }).click(),
  ]);
  expect(download.suggestedFilename()).toBe(`hailstone-${"9".repeat(20)}-100-digits.csv`);
  const text = await readFile((await download.path())!, "utf8");
  const expected = ["step,value", ...all.map((value, step) => `${step},${value}`)].join("\n") + "\n";
  expect(text).toBe(expected);
});

test("the chart's cursor reads exact values by keyboard", async ({ page }) => {
  await open(page);
  const all = await runToOne(page, "27");
  const chart = page.getByRole("slider");
  await expect(chart).toHaveAttribute("aria-label", "Chart of 112 values on a log scale, peak 9,232 at step 77");
  await expect(page.locator(".mark.peak")).toHaveAttribute("title", "Peak at step 77");
  await chart.focus();
  await chart.press("Home");
  await expect(page.locator(".readout")).toHaveText("Step 0: 27");
  for (let i = 0; i < 3; i++) await chart.press("ArrowRight");
  await expect(page.locator(".readout")).toHaveText(`Step 3: ${all[3]}`);
  await expect(chart).toHaveAttribute("aria-valuenow", "3");
  await expect(chart).toHaveAttribute("aria-valuetext", `Step 3: ${all[3]}`);
  await chart.press("End");
  await expect(page.locator(".readout")).toHaveText("Step 111: 1");
  await chart.press("ArrowLeft");
  await expect(page.locator(".readout")).toHaveAttribute("data-value", all[110]);
  // Step 77 is the peak: 9,232.
  await chart.press("Home");
  for (let i = 0; i < 77; i++) await chart.press("ArrowRight");
  await expect(page.locator(".readout")).toHaveText("Step 77: 9,232");
  await snap(page, "chart-cursor");
});
