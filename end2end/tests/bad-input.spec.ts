import { expect, test } from "@playwright/test";
import { enter, numberError, open, runningSwitch, snap, stat, values, waitForValues } from "./helpers";

const cases: [string, string][] = [
  ["", "Enter a number."],
  ["abc", "That is not a number: use the digits 0 to 9."],
  ["-7", "Leave out the sign: enter a positive whole number such as 27."],
  ["1.5", "Enter a whole number, without a decimal point."],
  ["1e3", "Write the number out in full digits, without an exponent."],
  ["1_000", "Enter the digits without separators (no spaces, commas or _)."],
  ["0", "0 has no Collatz sequence: enter 1 or more."],
  ["9".repeat(1001), "That number has 1,001 digits; the most allowed is 1,000."],
];

test("every bad input shows its error while the list and switch stay as they were", async ({ page }) => {
  await open(page);
  await enter(page, "27");
  await waitForValues(page, 3);
  await runningSwitch(page).click();
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
  const before = await values(page);

  for (const [text, message] of cases) {
    // A change first, so even the empty input is an edit to send.
    await enter(page, "x");
    await enter(page, text);
    await expect(numberError(page)).toHaveText(message);
    await expect(page.getByLabel("Number", { exact: true })).toHaveAttribute("aria-invalid", "true");
    expect(await values(page)).toEqual(before);
    await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
    await expect(stat(page, "start")).toHaveText("27");
  }
  await snap(page, "error");
});

test("bad input while running leaves the run running", async ({ page }) => {
  await open(page);
  await enter(page, "27");
  await waitForValues(page, 2);
  await enter(page, "abc");
  await expect(numberError(page)).toHaveText("That is not a number: use the digits 0 to 9.");
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "true");
  await expect(stat(page, "start")).toHaveText("27");
  // Fixing the input clears the error and starts the new run.
  await enter(page, "9");
  await expect(numberError(page)).toHaveText("");
  await expect(stat(page, "start")).toHaveText("9");
});
