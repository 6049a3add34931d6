import { expect, test } from "@playwright/test";
import { enter, open, runningSwitch, stat, trajectory, values, waitForValues } from "./helpers";

test("changing the number while running continues from it", async ({ page }) => {
  await open(page);
  await enter(page, "27");
  await waitForValues(page, 3);
  await enter(page, "7");
  await expect(stat(page, "start")).toHaveText("7");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "true");
  await expect.poll(async () => (await values(page)).length, { timeout: 20_000 }).toBeGreaterThanOrEqual(4);
  const now = await values(page);
  expect(now).toEqual(trajectory(7n).slice(0, now.length));
});
