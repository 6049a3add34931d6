import { expect, test } from "@playwright/test";
import { enter, open, runStatus, stat } from "./helpers";

test("a run left with no page open pauses after the wait chosen for it, and one set to keep running runs on", async ({
  browser,
}) => {
  test.setTimeout(180_000);
  const context = await browser.newContext();
  const page = await context.newPage();
  await open(page);
  // One step a second: 27 takes 111 s, longer than the wait below.
  await page.getByLabel("Step every").selectOption("1000");
  await enter(page, "27");
  await expect(stat(page, "steps")).toHaveText("1");
  const policy = page.getByLabel("When no page is open");
  await expect(policy).toHaveValue("keep");
  await policy.selectOption({ label: "Pause after 1 min" });
  await expect(policy).toHaveValue("pause-1");
  // A second run of the session, left to keep running.
  await page.getByRole("button", { name: "New run", exact: true }).click();
  await expect(runStatus(page)).toHaveText("Enter a number to start.");
  await page.getByLabel("Step every").selectOption("1000");
  await enter(page, "97");
  await expect(stat(page, "steps")).toHaveText("1");
  const address = page.url();
  await page.close();

  // No page of the session open for a minute and more. Nothing can be
  // asked meanwhile without counting as a visit, so the test waits the
  // wait itself (plus the server's 5 s check).
  const closed = Date.now();
  await new Promise((done) => setTimeout(done, 75_000));

  const again = await context.newPage();
  await again.goto(address);
  await expect(again.locator("main")).toHaveAttribute("data-hydrated", "true");
  // The one kept running ran all along: a step a second.
  const keptSteps = Number((await stat(again, "steps").textContent())!.replaceAll(",", ""));
  expect(keptSteps).toBeGreaterThanOrEqual(Math.floor((Date.now() - closed) / 1000) - 2);
  await again.getByRole("button", { name: "Open run 27" }).click();
  await expect(runStatus(again)).toHaveText("Paused");
  await expect(again.getByLabel("When no page is open")).toHaveValue("pause-1");
  // Paused about a minute after the page closed, not at once and not never.
  const steps = Number((await stat(again, "steps").textContent())!.replaceAll(",", ""));
  expect(steps).toBeGreaterThanOrEqual(55);
  expect(steps).toBeLessThan(keptSteps);
  await context.close();
});
