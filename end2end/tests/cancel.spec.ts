import { expect, test } from "@playwright/test";
import { enter, open, runStatus, runningSwitch, stat, trajectory, values, waitForValues } from "./helpers";

const cancelButton = (page: import("@playwright/test").Page) => page.getByRole("button", { name: "Cancel run" });

test("Cancel run ends the run for good, unlike the switch; its values stay; a new number starts another", async ({
  page,
}) => {
  await open(page);
  await expect(cancelButton(page)).toBeDisabled();
  await enter(page, "27");
  await waitForValues(page, 4);
  await expect(cancelButton(page)).toBeEnabled();
  await cancelButton(page).click();
  await expect(runStatus(page)).toHaveText(/^Cancelled after [\d,]+ steps\.$/);
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
  await expect(cancelButton(page)).toBeDisabled();
  const steps = Number((await stat(page, "steps").textContent())!.replaceAll(",", ""));
  const kept = await values(page);
  expect(kept).toEqual(trajectory(27n).slice(0, steps + 1));

  // The switch does not bring it back.
  await runningSwitch(page).click();
  await expect(runStatus(page)).toHaveText(/^Cancelled after/);
  await expect(runningSwitch(page)).toHaveAttribute("aria-checked", "false");
  // A reload shows it as it was: cancelled, every value kept. (Nothing
  // steps it meanwhile: the page's stream would show the step.)
  await page.reload();
  await open(page);
  await expect(runStatus(page)).toHaveText(`Cancelled after ${steps} steps.`);
  expect(await values(page)).toEqual(kept);

  // A new number starts a new run, running.
  await enter(page, "6");
  await expect(runStatus(page)).toHaveText("Reached 1 in 8 steps.", { timeout: 20_000 });
  expect(await values(page)).toEqual(trajectory(6n));
});

test("a paused run can be cancelled too", async ({ page }) => {
  await open(page);
  await enter(page, "97");
  await waitForValues(page, 2);
  await runningSwitch(page).click();
  await expect(runStatus(page)).toHaveText("Paused");
  await cancelButton(page).focus();
  await page.keyboard.press("Enter");
  await expect(runStatus(page)).toHaveText(/^Cancelled after [\d,]+ steps\.$/);
});
