import { expect, test } from "@playwright/test";
import { enter, numberInput, open, runStatus, snap, stat } from "./helpers";

test("a run of 20,000+ values keeps the page small", async ({ page }) => {
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
  // The list holds the newest values only, and says how many there are.
  expect(await page.getByRole("list", { name: "Results" }).locator("li").count()).toBe(256);
  await expect(page.locator(".count")).toHaveText(`The newest 256 of ${(steps + 1).toLocaleString("en-US")} values.`);
  // The chart is downsampled to at most 1,024 points.
  const points = (await page.locator("figure.chart polyline").getAttribute("points"))!.split(" ");
  expect(points.length).toBeLessThanOrEqual(1024);
  expect(points.length).toBeGreaterThan(512);
  // The page still answers: the input takes a new number.
  await enter(page, "27");
  await expect(stat(page, "start")).toHaveText("27");
  await snap(page, "long-run");
});
