import { expect, test, type Page } from "@playwright/test";
import {
  enter,
  open,
  runItem,
  runStatus,
  runningSwitch,
  snap,
  startTwoRuns,
  trajectory,
  values,
  waitForValues,
} from "./helpers";

/**
 * Headless Chromium shows every tab as visible, so the tab is hidden by
 * the page's own `document.hidden` and `visibilityState` (what the app
 * reads), with the `visibilitychange` event a browser sends. Each
 * notification made is recorded before the browser's own is made.
 */
async function instrument(page: Page, permission: "grant" | "refuse"): Promise<void> {
  await page.addInitScript((refuse) => {
    let hidden = false;
    Object.defineProperty(document, "hidden", { get: () => hidden, configurable: true });
    Object.defineProperty(document, "visibilityState", {
      get: () => (hidden ? "hidden" : "visible"),
      configurable: true,
    });
    (window as any).setHidden = (value: boolean) => {
      hidden = value;
      document.dispatchEvent(new Event("visibilitychange"));
    };
    const made: { title: string; body?: string }[] = [];
    (window as any).notifications = made;
    const Real = window.Notification;
    let answer: NotificationPermission = refuse ? "default" : Real.permission;
    class Recorded extends Real {
      static get permission(): NotificationPermission {
        return refuse ? answer : Real.permission;
      }
      static requestPermission(): Promise<NotificationPermission> {
        // The visitor answers the browser's prompt with "Block".
        if (refuse) {
          answer = "denied";
          return Promise.resolve(answer);
        }
        return Real.requestPermission();
      }
      constructor(title: string, options?: NotificationOptions) {
        made.push({ title, body: options?.body });
        super(title, options);
      }
    }
    (window as any).Notification = Recorded;
  }, permission === "refuse");
}

const notifySwitch = (page: Page) => page.getByRole("switch", { name: "Notify when finished" });
const made = (page: Page) => page.evaluate(() => (window as any).notifications as { title: string; body?: string }[]);
const setHidden = (page: Page, hidden: boolean) => page.evaluate((h) => (window as any).setHidden(h), hidden);

test("with permission granted: a run finishing in a hidden tab notifies and marks the title", async ({
  page,
  context,
}) => {
  await context.grantPermissions(["notifications"]);
  await instrument(page, "grant");
  await open(page);
  const title = await page.title();
  await expect(notifySwitch(page)).toHaveAttribute("aria-checked", "false");
  await notifySwitch(page).click();
  await expect(notifySwitch(page)).toHaveAttribute("aria-checked", "true");
  await expect(page.locator("#notify-status")).toHaveText(
    "A notification comes when a run finishes while this tab is hidden.",
  );

  await enter(page, "27");
  await waitForValues(page, 3);
  await setHidden(page, true);
  await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.", { timeout: 30_000 });
  await expect(page).toHaveTitle(`✓ Finished · ${title}`);
  expect(await made(page)).toEqual([{ title: "Hailstone: 27 reached 1", body: "in 111 steps" }]);
  await setHidden(page, false);
  await expect(page).toHaveTitle(title);

  // A run finishing in a tab in view notifies no one.
  await enter(page, "6");
  await expect(runStatus(page)).toHaveText("Reached 1 in 8 steps.", { timeout: 30_000 });
  await expect(page).toHaveTitle(title);
  expect(await made(page)).toHaveLength(1);

  // Off again: remembered across a reload, and nothing is notified.
  await notifySwitch(page).click();
  await expect(notifySwitch(page)).toHaveAttribute("aria-checked", "false");
  await page.reload();
  await open(page);
  await expect(notifySwitch(page)).toHaveAttribute("aria-checked", "false");
  await enter(page, "7");
  await waitForValues(page, 2);
  await setHidden(page, true);
  await expect(runStatus(page)).toHaveText("Reached 1 in 16 steps.", { timeout: 30_000 });
  await expect(page).toHaveTitle(`✓ Finished · ${title}`);
  expect(await made(page)).toEqual([]);
});

test("with permission refused: the switch stays off, says why, and the page works", async ({ page }) => {
  await instrument(page, "refuse");
  await open(page);
  const title = await page.title();
  await notifySwitch(page).click();
  await expect(page.locator("#notify-status")).toHaveText(/^This browser blocks notifications for this site/);
  await expect(notifySwitch(page)).toHaveAttribute("aria-checked", "false");
  await snap(page, "notifications-refused");

  await enter(page, "27");
  await waitForValues(page, 3);
  await setHidden(page, true);
  await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.", { timeout: 30_000 });
  // The title still tells; no notification was made; every value is there.
  await expect(page).toHaveTitle(`✓ Finished · ${title}`);
  expect(await made(page)).toEqual([]);
  expect(await values(page)).toEqual(trajectory(27n));
  await setHidden(page, false);
  await expect(page).toHaveTitle(title);
  await runningSwitch(page).focus();
});

test("a run that finished while no page was open is shown as such on the next visit", async ({ page }) => {
  await open(page);
  await enter(page, "27");
  await waitForValues(page, 3);
  await page.goto("about:blank");
  // No page is open; the run goes on on the server. Its CSV ends with 1
  // once it has finished.
  await expect
    .poll(async () => (await (await page.request.get("/trajectory.csv")).text()).trim().split("\n").length, {
      timeout: 30_000,
    })
    .toBe(113);
  await open(page);
  await expect(page.getByRole("status").filter({ hasText: "while you were away" })).toHaveText(
    "27 reached 1 in 111 steps while you were away.",
  );
  // Seen now: the next visit says nothing of it.
  await page.reload();
  await open(page);
  await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.");
  await expect(page.getByText("while you were away")).toHaveCount(0);
});

test("a run not shown that finishes in a hidden tab notifies as the one shown does", async ({ page, context }) => {
  await context.grantPermissions(["notifications"]);
  await instrument(page, "grant");
  await open(page);
  const title = await page.title();
  await notifySwitch(page).click();
  await expect(notifySwitch(page)).toHaveAttribute("aria-checked", "true");
  // The page shows a second, longer run; the first goes on in the list.
  await startTwoRuns(page);
  await setHidden(page, true);
  await expect(runItem(page, "27")).toContainText("Finished", { timeout: 30_000 });
  await expect(page).toHaveTitle(`✓ Finished · ${title}`);
  await expect.poll(() => made(page)).toEqual([{ title: "Hailstone: 27 reached 1", body: "in 111 steps" }]);
  await expect(runStatus(page)).toHaveText("Reached 1 in 118 steps.", { timeout: 30_000 });
  await expect
    .poll(() => made(page))
    .toEqual([
      { title: "Hailstone: 27 reached 1", body: "in 111 steps" },
      { title: "Hailstone: 97 reached 1", body: "in 118 steps" },
    ]);
  await setHidden(page, false);
  await expect(page).toHaveTitle(title);
});

test("every run that finished while no page was open is named on the next visit", async ({ page }) => {
  await open(page);
  await startTwoRuns(page);
  const second = new URL(page.url()).searchParams.get("run");
  expect(second).toMatch(/^[0-9a-f]{32}\.\d+$/);
  await page.goto("about:blank");
  // No page is open; both go on on the server, and their CSVs end with 1.
  const rows = async (run?: string) =>
    (await (await page.request.get(`/trajectory.csv${run ? `?run=${run}` : ""}`)).text()).trim().split("\n").length;
  await expect.poll(() => rows(), { timeout: 30_000 }).toBe(113);
  await expect.poll(() => rows(second!), { timeout: 30_000 }).toBe(120);
  // The next visit shows the session's first run, and names both.
  await open(page);
  await expect(page.getByRole("status").filter({ hasText: "while you were away" })).toHaveText(
    "27 reached 1 in 111 steps; 97 reached 1 in 118 steps while you were away.",
  );
  await page.reload();
  await open(page);
  await expect(page.getByText("while you were away")).toHaveCount(0);
});
