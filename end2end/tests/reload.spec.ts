import { expect, test } from "@playwright/test";
import { enter, open, results, runningSwitch, trajectory, values, waitForValues } from "./helpers";

test("a reload mid-run keeps the run, with the list in the first HTML", async ({ page }) => {
  await open(page);
  await enter(page, "27");
  const before = await waitForValues(page, 5);
  // The server's HTML already holds the list: no flash of an empty page.
  const html = await (await page.request.get("/")).text();
  // (Hydration markers may follow the text.)
  expect(html).toMatch(/<li value="0"[^>]*>27(<!>)?<\/li>/);
  expect(html).toContain(`aria-checked="true"`);

  await page.reload();
  await expect(results(page).locator("li").first()).toHaveText("27");
  await expect(page.locator("main")).toHaveAttribute("data-hydrated", "true");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "true");
  const after = await waitForValues(page, before.length + 3);
  expect(after).toEqual(trajectory(27n).slice(0, after.length));
});
