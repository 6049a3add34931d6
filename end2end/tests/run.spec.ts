import { expect, test } from "@playwright/test";
import { numberInput, open, results, runningSwitch, snap, trajectory, values, waitForValues } from "./helpers";

test("typing a number starts the run and values appear in order", async ({ page }) => {
  await open(page);
  await snap(page, "idle");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
  // Typing alone (no Enter) sends the number once the debounce has passed.
  await numberInput(page).pressSequentially("27", { delay: 50 });
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "true");
  const seen = await waitForValues(page, 6);
  expect(seen).toEqual(trajectory(27n).slice(0, seen.length));
  await snap(page, "running");
  // The list keeps growing in order.
  const later = await waitForValues(page, seen.length + 3);
  expect(later).toEqual(trajectory(27n).slice(0, later.length));
  await expect(results(page).locator("li").first()).toHaveText("27");
});

test("a finished run shows every value of a short trajectory", async ({ page }) => {
  await open(page);
  await numberInput(page).fill("6");
  await expect.poll(() => values(page), { timeout: 20_000 }).toEqual(trajectory(6n));
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
});
