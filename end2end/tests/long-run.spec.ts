import { expect, test } from "@playwright/test";
import { enter, numberInput, open, runStatus, snap, stat } from "./helpers";

test("a run of 30,000+ values keeps the page small and every value reachable", async ({ page }) => {
  test.setTimeout(120_000);
  await open(page);
  await page.getByLabel("Step every").selectOption("0");
  await expect(page.getByLabel("Step every")).toHaveValue("0");
  // The largest number allowed: 1,000 nines take 30,578 steps to reach 1.
  const start = "9".repeat(1000);
  await enter(page, start);
  await expect(runStatus(page)).toHaveText(/^Reached 1 in [\d,]+ steps\.$/, { timeout: 100_000 });
  const steps = Number((await stat(page, "steps").textContent())!.replaceAll(",", ""));
  expect(steps).toBe(30_578);
  // The list says how many values there are, and holds only the rows near
  // its view: at the end, the last value, 1.
  await expect(page.locator(".count")).toHaveText(`${(steps + 1).toLocaleString("en-US")} values.`);
  const list = page.getByRole("list", { name: "Results" });
  await expect(list.locator(`li[data-step="${steps}"]`)).toHaveText("1");
  expect(await list.locator("li").count()).toBeLessThanOrEqual(300);
  // The first value is one scroll away, exact.
  await page.locator(".scroller").evaluate((el) => el.scrollTo(0, 0));
  await expect(list.locator('li[data-step="0"]')).toHaveText(start);
  expect(await list.locator("li").count()).toBeLessThanOrEqual(300);
  // The chart is downsampled to at most 1,024 points.
  const points = (await page.locator("figure.chart polyline").getAttribute("points"))!.split(" ");
  expect(points.length).toBeLessThanOrEqual(1024);
  expect(points.length).toBeGreaterThan(512);
  // The page still answers: the input takes a new number.
  await enter(page, "27");
  await expect(stat(page, "start")).toHaveText("27");
  await snap(page, "long-run");
});
