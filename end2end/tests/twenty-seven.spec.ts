import { expect, test } from "@playwright/test";
import { enter, open, runStatus, runningSwitch, snap, stat, trajectory, values } from "./helpers";

test("27 runs to 1 in 111 steps with peak 9,232", async ({ page }) => {
  test.setTimeout(90_000);
  await open(page);
  await enter(page, "27");
  await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.", { timeout: 60_000 });
  await expect(stat(page, "steps")).toHaveText("111");
  await expect(stat(page, "peak")).toHaveText("9,232");
  await expect(stat(page, "current")).toHaveText("1");
  await expect(page.locator(".count")).toHaveText("112 values.");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
  expect(await values(page)).toEqual(trajectory(27n));
  await expect(page.locator("figure.chart polyline")).toHaveAttribute("points", /^0,\d+ .* 1000,232$/);
  await snap(page, "finished");
});
