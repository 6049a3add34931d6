import { expect, type Locator, type Page } from "@playwright/test";

/** Opens the page and waits until the wasm runs and the stream is live. */
export async function open(page: Page): Promise<void> {
  await page.goto("/");
  await expect(page.locator("main")).toHaveAttribute("data-hydrated", "true");
  await expect(page.locator("[data-link]")).toHaveAttribute("data-link", "live");
}

export const numberInput = (page: Page): Locator => page.getByLabel("Number", { exact: true });
export const runningSwitch = (page: Page): Locator => page.getByRole("switch", { name: "Running" });
export const results = (page: Page): Locator => page.getByRole("list", { name: "Results" });
export const numberError = (page: Page): Locator => page.locator("#number-error");
export const stat = (page: Page, name: string): Locator => page.locator(`[data-stat="${name}"]`);
export const runStatus = (page: Page): Locator => page.locator("#run-status");

export const newRun = (page: Page): Locator => page.getByRole("button", { name: "New run", exact: true });
/** The item of the list "Runs" whose run started from `start`. */
export const runItem = (page: Page, start: string): Locator =>
  page
    .getByRole("list", { name: "Runs" })
    .getByRole("listitem")
    .filter({ has: page.locator(".run-start", { hasText: new RegExp(`^${start}$`) }) });

/** Types a number and commits it with Enter. */
export async function enter(page: Page, text: string): Promise<void> {
  await numberInput(page).fill(text);
  await numberInput(page).press("Enter");
}

/** Clicks "New run" and waits until the main view shows the new run (a
 * number typed before would go to the run shown until then). */
export async function addRun(page: Page): Promise<void> {
  await newRun(page).click();
  await expect(runStatus(page)).toHaveText("Enter a number to start.");
}

/** Starts 27, then a second run of 97 beside it (the one shown); both have stepped. */
export async function startTwoRuns(page: Page): Promise<void> {
  await enter(page, "27");
  await waitForValues(page, 3);
  await addRun(page);
  await enter(page, "97");
  await waitForValues(page, 3);
}

/** The values in the result list, in order. */
export async function values(page: Page): Promise<string[]> {
  return results(page).locator("li").allTextContents();
}

/** Waits until the list holds at least `count` values. */
export async function waitForValues(page: Page, count: number): Promise<string[]> {
  await expect.poll(async () => (await values(page)).length, { timeout: 30_000 }).toBeGreaterThanOrEqual(count);
  return values(page);
}

/** The Collatz trajectory of `start`, exactly. */
export function trajectory(start: bigint): string[] {
  const out = [start.toString()];
  let n = start;
  while (n !== 1n) {
    n = n % 2n === 0n ? n / 2n : 3n * n + 1n;
    out.push(n.toString());
  }
  return out;
}

/** Saves a screenshot among the test artifacts. */
export async function snap(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `artifacts/screenshots/${name}.png`, fullPage: true });
}
