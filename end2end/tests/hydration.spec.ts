import { expect, test } from "@playwright/test";

test("the page is rendered on the server", async ({ request }) => {
  const response = await request.get("/");
  expect(response.ok()).toBeTruthy();
  const html = await response.text();
  expect(html).toContain("Collatz Conjecture");
  // Before the wasm runs, the page says it is not hydrated yet.
  expect(html).toContain('data-hydrated="false"');
});

test("the page hydrates in the browser", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto("/");
  await expect(page.getByRole("heading", { name: "Collatz Conjecture" })).toBeVisible();
  // Only the running wasm flips this attribute.
  await expect(page.locator("main")).toHaveAttribute("data-hydrated", "true");
  await page.screenshot({ path: "artifacts/screenshots/hydrated.png", fullPage: true });
  expect(errors).toEqual([]);
});
