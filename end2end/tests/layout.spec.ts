import { expect, test } from "@playwright/test";
import { enter, open, snap, waitForValues } from "./helpers";

test("phone width: nothing overflows", async ({ page }) => {
  await page.setViewportSize({ width: 375, height: 740 });
  await open(page);
  await enter(page, "9".repeat(60));
  await waitForValues(page, 3);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  expect(overflow).toBe(false);
  await snap(page, "phone");
});

test("dark mode", async ({ page }) => {
  await page.emulateMedia({ colorScheme: "dark" });
  await open(page);
  await enter(page, "27");
  await waitForValues(page, 3);
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background).toBe("rgb(18, 20, 22)");
  await snap(page, "dark");
});

test("the list does not move the page as it grows", async ({ page }) => {
  await open(page);
  const chart = page.locator("figure.chart");
  const before = await chart.boundingBox();
  await enter(page, "27");
  await waitForValues(page, 30);
  expect(await chart.boundingBox()).toEqual(before);
});
