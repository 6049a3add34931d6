import { expect, test } from "@playwright/test";
import { enter, open, runStatus, runningSwitch, snap, trajectory, values, waitForValues } from "./helpers";

test("the switch pauses the run and resumes it", async ({ page }) => {
  await open(page);
  await enter(page, "27");
  await waitForValues(page, 4);
  await runningSwitch(page).click();
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
  await expect(runStatus(page)).toHaveText("Paused");
  const paused = await values(page);
  // Ten intervals pass: nothing changes while off.
  await page.waitForTimeout(1000);
  expect(await values(page)).toEqual(paused);
  await snap(page, "paused");

  await runningSwitch(page).click();
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "true");
  const resumed = await waitForValues(page, paused.length + 3);
  expect(resumed).toEqual(trajectory(27n).slice(0, resumed.length));
});
