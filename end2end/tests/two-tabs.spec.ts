import { expect, test } from "@playwright/test";
import { enter, open, runningSwitch, stat, trajectory, values, waitForValues } from "./helpers";

test("two tabs of one browser show the same run", async ({ context }) => {
  const first = await context.newPage();
  const second = await context.newPage();
  await open(first);
  await open(second);
  await enter(first, "27");
  await expect(stat(second, "start")).toHaveText("27");
  await expect(runningSwitch(second)).toHaveAttribute("aria-checked", "true");
  const seen = await waitForValues(second, 5);
  expect(seen).toEqual(trajectory(27n).slice(0, seen.length));
  // Pausing in one tab pauses the other.
  await runningSwitch(second).click();
  await expect(runningSwitch(first)).toHaveAttribute("aria-checked", "false");
  await expect.poll(() => values(first)).toEqual(await values(second));
});
