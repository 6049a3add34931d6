import { expect, test } from "@playwright/test";
import { numberInput, open, runningSwitch, stat, waitForValues } from "./helpers";

test("the page works with the keyboard alone", async ({ page }) => {
  await open(page);
  // Heading link first, then the number input.
  await page.keyboard.press("Tab");
  await expect(page.getByRole("link", { name: "Collatz Conjecture" })).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(numberInput(page)).toBeFocused();
  await page.keyboard.type("27");
  await page.keyboard.press("Enter");
  await expect(stat(page, "start")).toHaveText("27");
  await waitForValues(page, 2);

  await page.keyboard.press("Tab");
  await expect(runningSwitch(page)).toBeFocused();
  await page.keyboard.press("Space");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
  await page.keyboard.press("Space");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "true");

  await page.keyboard.press("Tab");
  await expect(page.getByRole("button", { name: "Cancel run" })).toBeFocused();
  await page.keyboard.press("Tab");
  const interval = page.getByLabel("Step every");
  await expect(interval).toBeFocused();
  await interval.selectOption("250");
  await expect(interval).toHaveValue("250");
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("When no page is open")).toBeFocused();
  await page.reload();
  await expect(page.getByLabel("Step every")).toHaveValue("250");
});
