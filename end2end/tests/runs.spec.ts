import { expect, type Page, test } from "@playwright/test";
import {
  addRun,
  enter,
  newRun,
  open,
  runItem as item,
  runStatus,
  runningSwitch,
  startTwoRuns,
  trajectory,
  values,
  waitForValues,
} from "./helpers";

const runList = (page: Page) => page.getByRole("list", { name: "Runs" });
/** "2 Dec 2026, 05:14 UTC": how the list says when a run began. */
const utc = (ms: number) => {
  const d = new Date(ms);
  const month = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ")[d.getUTCMonth()];
  const hh = String(d.getUTCHours()).padStart(2, "0");
  const mm = String(d.getUTCMinutes()).padStart(2, "0");
  return `${d.getUTCDate()} ${month} ${d.getUTCFullYear()}, ${hh}:${mm} UTC`;
};
/** The start time of a run begun between `from` and now, as any minute between says it. */
const startedBetween = (from: number) => {
  const minutes = new Set<string>();
  for (let t = from - (from % 60_000); t <= Date.now(); t += 60_000) minutes.add(`started ${utc(t)}`);
  return new RegExp([...minutes].join("|"));
};

test("two runs at once: each steps alone, the list names them, and either opens in the main view", async ({
  page,
}) => {
  await open(page);
  const began = Date.now();
  await enter(page, "27");
  await waitForValues(page, 3);
  await expect(runList(page).getByRole("listitem")).toHaveCount(1);
  await expect(item(page, "27")).toContainText("Running");

  // A second run beside the first: the main view shows it, waiting for its number.
  await newRun(page).click();
  await expect(runStatus(page)).toHaveText("Enter a number to start.");
  await expect(page.getByLabel("Number", { exact: true })).toHaveValue("");
  await enter(page, "97");
  await waitForValues(page, 3);
  await expect(runList(page).getByRole("listitem")).toHaveCount(2);
  // Newest first; each names its start and its state.
  await expect(runList(page).getByRole("listitem").first()).toContainText("97");
  await expect(item(page, "27")).toContainText("Running");

  // Pausing the first from the list leaves the one shown running.
  await page.getByRole("button", { name: "Pause run 27" }).click();
  await expect(item(page, "27")).toContainText("Paused");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "true");
  await expect(runStatus(page)).toHaveText("Reached 1 in 118 steps.", { timeout: 30_000 });
  expect(await values(page)).toEqual(trajectory(97n));

  // Opening the first shows it whole, paused, with the controls the page always has.
  await page.getByRole("button", { name: "Open run 27" }).click();
  await expect(runStatus(page)).toHaveText("Paused");
  await expect(page.getByLabel("Number", { exact: true })).toHaveValue("27");
  const shown = await values(page);
  expect(shown).toEqual(trajectory(27n).slice(0, shown.length));
  await runningSwitch(page).click();
  await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.", { timeout: 30_000 });
  expect(await values(page)).toEqual(trajectory(27n));
  await expect(item(page, "97")).toContainText("Finished");

  // A reload keeps both, and shows the run opened (the address names it);
  // another tab of the session sees the same runs.
  await page.getByRole("button", { name: "Open run 97" }).click();
  await expect(runStatus(page)).toHaveText("Reached 1 in 118 steps.");
  await expect(page).toHaveURL(/\?run=[0-9a-f]{32}\.\d+$/);
  await page.reload();
  await expect(page.locator("main")).toHaveAttribute("data-hydrated", "true");
  await expect(runStatus(page)).toHaveText("Reached 1 in 118 steps.");
  await expect(runList(page).getByRole("listitem")).toHaveCount(2);
  // Each says when it began (in UTC, which the server renders as the browser does).
  await expect(item(page, "27")).toContainText(startedBetween(began));
  await expect(item(page, "97")).toContainText(startedBetween(began));
  const other = await page.context().newPage();
  await open(other);
  await expect(runList(other).getByRole("listitem")).toHaveCount(2);
  await other.close();
});

test("a command's answer that comes after its run's row has changed still lands, and the page goes on", async ({
  page,
}) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await open(page);
  await startTwoRuns(page);

  // The answer to "Pause run 27" is held until the stream has shown the run
  // paused, so the row is redrawn while the command is still in flight.
  await page.route(
    "**/api/command",
    async (route) => {
      const response = await route.fetch();
      await expect(item(page, "27")).toContainText("Paused");
      await route.fulfill({ response });
    },
    { times: 1 },
  );
  await page.getByRole("button", { name: "Pause run 27" }).click();
  // Commands leave one after the other: this one leaves once the held answer
  // has been handled, and only a page still alive sends it.
  await page.getByRole("button", { name: "Resume run 27" }).click();
  await expect(item(page, "27")).toContainText("Running");
  expect(errors).toEqual([]);
});

test("a run removed from the list is gone, and the page shows another", async ({ page }) => {
  await open(page);
  await enter(page, "6");
  await expect(runStatus(page)).toHaveText("Reached 1 in 8 steps.", { timeout: 20_000 });
  await addRun(page);
  await enter(page, "7");
  await expect(runStatus(page)).toHaveText("Reached 1 in 16 steps.", { timeout: 20_000 });
  await expect(runList(page).getByRole("listitem")).toHaveCount(2);
  await page.getByRole("button", { name: "Remove run 7" }).click();
  await expect(runList(page).getByRole("listitem")).toHaveCount(1);
  await expect(runStatus(page)).toHaveText("Reached 1 in 8 steps.");
  expect(await values(page)).toEqual(trajectory(6n));
});
