import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";
import { enter, numberError, open, runStatus, runningSwitch, waitForValues } from "./helpers";

/** WCAG 2.0–2.2, levels A and AA: the rules the page is held to. */
const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"];

/** Runs axe on the whole page and fails listing every violation found. */
async function expectNoViolations(page: Page, state: string): Promise<void> {
  const { violations } = await new AxeBuilder({ page }).withTags(TAGS).analyze();
  const found = violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  expect(found, `axe violations while ${state}`).toEqual([]);
}

for (const [width, height] of [
  [1280, 800],
  [390, 844],
] as const) {
  test.describe(`at ${width} px`, () => {
    test.use({ viewport: { width, height } });

    test("axe finds no violation idle, running, paused, with an error, after a long run, cancelled, and with several runs", async ({ page }) => {
      test.setTimeout(120_000);
      await open(page);
      await expectNoViolations(page, "idle");

      await enter(page, "27");
      await waitForValues(page, 4);
      await expectNoViolations(page, "running");

      await runningSwitch(page).click();
      await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
      await expectNoViolations(page, "paused");

      await enter(page, "abc");
      await expect(numberError(page)).toHaveText("That is not a number: use the digits 0 to 9.");
      await expectNoViolations(page, "showing an error");

      // A long run, finished: thousands of values, the list windowed, the
      // chart downsampled, and a step chosen on the chart.
      await page.getByLabel("Step every").selectOption("0");
      await enter(page, "9".repeat(200));
      await expect(page.locator('[data-stat="start"]')).toHaveText(/^9/);
      // Paused before, so still paused: switch it on.
      await runningSwitch(page).click();
      await expect(runStatus(page)).toHaveText(/^Reached 1 in [\d,]+ steps\.$/, { timeout: 60_000 });
      await expectNoViolations(page, "after a long run");
      await page.getByRole("slider").focus();
      await page.keyboard.press("End");
      await expect(page.getByRole("slider")).toHaveAttribute("aria-valuetext", /^Step [\d,]+: 1$/);
      await expectNoViolations(page, "with a step chosen on the chart");

      await page.getByLabel("Step every").selectOption("100");
      await enter(page, "27");
      await waitForValues(page, 3);
      await page.getByRole("button", { name: "Cancel run" }).click();
      await expect(runStatus(page)).toHaveText(/^Cancelled after/);
      await expectNoViolations(page, "cancelled");

      // Several runs: a new one running beside the cancelled one.
      await page.getByRole("button", { name: "New run", exact: true }).click();
      await expect(runStatus(page)).toHaveText("Enter a number to start.");
      await expectNoViolations(page, "with a new run beside another");
      await enter(page, "97");
      await waitForValues(page, 3);
      await expect(page.getByRole("list", { name: "Runs" }).getByRole("listitem")).toHaveCount(2);
      await expectNoViolations(page, "with several runs");
    });
  });
}
