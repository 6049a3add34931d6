import AxeBuilder from "@axe-core/playwright";
import { expect, type Page, test } from "@playwright/test";
import { numberInput, open } from "./helpers";

const region = (page: Page) => page.getByRole("region", { name: "Record search" });
const from = (page: Page) => region(page).getByLabel("From", { exact: true });
const to = (page: Page) => region(page).getByLabel("To", { exact: true });
const searching = (page: Page) => page.getByRole("switch", { name: "Searching" });
const progress = (page: Page) => page.getByRole("progressbar", { name: "Search progress" });
const table = (page: Page) => page.getByRole("table", { name: "Records" });
const status = (page: Page) => page.locator("#search-status");
const percent = async (page: Page) => Number(await progress(page).getAttribute("aria-valuenow"));

/** A start's steps to 1 and its peak, one step at a time (exact below 2^53). */
function walk(start: number): [number, number] {
  let [n, steps, peak] = [start, 0, start];
  while (n !== 1) {
    n = n % 2 === 0 ? n / 2 : 3 * n + 1;
    peak = Math.max(peak, n);
    steps += 1;
  }
  return [steps, peak];
}

/** The records of [first, last] as a plain loop finds them, as the CSV lists them. */
function plainCsv(first: number, last: number): string {
  const rows: [number, number, string][] = [];
  let [most, highest] = [-1, -1];
  for (let start = first; start <= last; start++) {
    const [steps, peak] = walk(start);
    if (steps > most) {
      most = steps;
      rows.push([start, 0, `delay,${start},${steps},${peak}`]);
    }
    if (peak > highest) {
      highest = peak;
      rows.push([start, 1, `peak,${start},${steps},${peak}`]);
    }
  }
  return ["kind,start,steps,peak", ...rows.map(([, , line]) => line)].join("\n") + "\n";
}

async function downloaded(page: Page): Promise<string> {
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    region(page).getByRole("link", { name: "Download records" }).click(),
  ]);
  const stream = await download.createReadStream();
  let text = "";
  for await (const chunk of stream) text += chunk;
  return text;
}

test("a record search: refused input, progress while searching, pause, a finished range, raised To, CSV, a record opened as a run", async ({
  page,
}) => {
  test.setTimeout(120_000);
  await open(page);
  await expect(table(page).getByRole("columnheader")).toHaveText(["Start", "Steps", "Peak", "Kind"]);

  // Bad input: a clear message, and nothing starts.
  await from(page).fill("0");
  await to(page).fill("1,000");
  await searching(page).click();
  await expect(region(page).getByRole("alert")).toHaveText("From: 0 has no Collatz sequence: enter 1 or more.");
  await expect(searching(page)).toHaveAttribute("aria-checked", "false");
  await from(page).fill("2,000");
  await searching(page).click();
  await expect(region(page).getByRole("alert")).toHaveText("From must not be above To.");

  // By keyboard alone: a long range, searched on every core, its progress shown as it goes.
  await from(page).fill("");
  await from(page).focus();
  await page.keyboard.type("1");
  await page.keyboard.press("Tab");
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("2,000,000,000");
  await page.keyboard.press("Tab");
  await expect(searching(page)).toBeFocused();
  await page.keyboard.press("Space");
  await expect(searching(page)).toHaveAttribute("aria-checked", "true");
  await expect(status(page)).toHaveText("Searching…");
  await expect.poll(() => percent(page), { timeout: 30_000 }).toBeGreaterThan(0);
  await expect(progress(page)).toHaveAttribute("aria-valuetext", /of 2,000,000,000 starts checked .* starts\/s · about .* left/);
  await expect(table(page).getByRole("row").nth(1)).toContainText("1");
  const { violations } = await new AxeBuilder({ page })
    .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"])
    .analyze();
  expect(violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)).toEqual([]);

  // Off: it stops where it is.
  await searching(page).click();
  await expect(status(page)).toHaveText("Paused.");
  const at = await progress(page).getAttribute("aria-valuetext");
  await page.waitForTimeout(1000);
  await expect(progress(page)).toHaveAttribute("aria-valuetext", at ?? "");

  // Another range starts over, and finishes exactly as a plain loop does.
  await to(page).fill("300,000");
  await searching(page).click();
  await expect(progress(page)).toHaveAttribute("aria-valuetext", /^300,000 of 300,000 starts checked/, { timeout: 30_000 });
  await expect(status(page)).toHaveText("Finished: every start of the range is checked.");
  await expect(progress(page)).toHaveAttribute("aria-valuenow", "100.0");
  expect(await downloaded(page)).toEqual(plainCsv(1, 300_000));
  const row27 = table(page).getByRole("row").filter({ has: page.getByRole("button", { name: "Open 27 as a run" }) });
  await expect(row27).toHaveCount(2); // a delay record and a peak record
  await expect(row27.first()).toContainText("111");
  await expect(row27.first()).toContainText("9,232");

  // Raised To goes on from where it was: the records so far stay, the new ones follow.
  const before = await table(page).getByRole("row").count();
  await to(page).fill("600,000");
  await searching(page).click();
  await expect(progress(page)).toHaveAttribute("aria-valuetext", /^600,000 of 600,000 starts checked/, { timeout: 30_000 });
  await expect(status(page)).toHaveText("Finished: every start of the range is checked.");
  expect(await table(page).getByRole("row").count()).toBeGreaterThan(before);
  expect(await downloaded(page)).toEqual(plainCsv(1, 600_000));

  // What happens while no page is open is the search's own; Cancel ends it for good.
  await region(page).getByLabel("While no page is open").selectOption("pause-10");
  await expect(region(page).getByLabel("While no page is open")).toHaveValue("pause-10");
  await to(page).fill("3,000,000,000");
  await searching(page).click();
  await expect(status(page)).toHaveText("Searching…");
  await region(page).getByRole("button", { name: "Cancel search" }).click();
  await expect(status(page)).toHaveText("Cancelled.");
  await expect(searching(page)).toHaveAttribute("aria-checked", "false");
  await expect(region(page).getByRole("button", { name: "Cancel search" })).toBeDisabled();
  await expect(page.getByRole("list", { name: "Runs" })).toContainText("Cancelled");

  // The session's list names the search; a record opens as a Collatz run.
  await expect(page.getByRole("list", { name: "Runs" })).toContainText("Search 1–3,000,000,000");
  await page.getByRole("button", { name: "Open 27 as a run" }).first().click();
  await expect(numberInput(page)).toHaveValue("27");
  await expect(page.getByRole("switch", { name: "Running" })).toHaveAttribute("aria-checked", "true");
});
