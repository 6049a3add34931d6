import { expect, test } from "@playwright/test";
import { enter, open, stat, trajectory, waitForValues } from "./helpers";

test("a 40-digit number shows exact values", async ({ page }) => {
  const start = "1234567890123456789012345678901234567891";
  await open(page);
  await enter(page, start);
  const seen = await waitForValues(page, 8);
  expect(seen[0]).toBe(start);
  // Exact, checked with the browser-independent BigInt of the test runner.
  expect(seen).toEqual(trajectory(BigInt(start)).slice(0, seen.length));
  await expect(stat(page, "start")).toHaveText("1,234,567,890,123,456,789,012,345,678,901,234,567,891");
  // Long values wrap inside the layout instead of overflowing it.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  expect(overflow).toBe(false);
});
