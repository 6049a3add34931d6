import { expect, test } from "@playwright/test";
import { enter, open, runStatus, trajectory, values } from "./helpers";

// The test server ends every event stream after a few seconds
// (HAILSTONE_STREAM_LIFETIME_SECS in scripts/test.sh).
test("the stream reconnects after the server drops it, losing nothing", async ({ page }) => {
  test.setTimeout(90_000);
  await open(page);
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as any).linkStates = seen;
    const indicator = document.querySelector("[data-link]")!;
    new MutationObserver(() => seen.push(indicator.getAttribute("data-link")!)).observe(indicator, {
      attributes: true,
      attributeFilter: ["data-link"],
    });
  });
  await enter(page, "27");
  await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.", { timeout: 60_000 });
  const states: string[] = await page.evaluate(() => (window as any).linkStates);
  const dropped = states.indexOf("reconnecting");
  expect(dropped, `link states: ${states}`).toBeGreaterThanOrEqual(0);
  expect(states.slice(dropped)).toContain("live");
  await expect(page.locator("[data-link]")).toHaveAttribute("data-link", "live");
  expect(await values(page)).toEqual(trajectory(27n));
});
