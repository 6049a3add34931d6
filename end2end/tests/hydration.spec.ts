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

test("the wasm, script and style go compressed, under names that carry their hash, cached for good", async ({
  page,
}) => {
  const assets: { url: string; encoding?: string; cache?: string }[] = [];
  page.on("response", async (response) => {
    if (new URL(response.url()).pathname.startsWith("/pkg/")) {
      const headers = await response.allHeaders();
      assets.push({ url: response.url(), encoding: headers["content-encoding"], cache: headers["cache-control"] });
    }
  });
  const document = await page.goto("/");
  expect((await document!.allHeaders())["content-encoding"]).toBe("gzip");
  await expect(page.locator("main")).toHaveAttribute("data-hydrated", "true");
  const kinds = assets.map((a) => a.url.split(".").pop()).sort();
  expect(kinds).toEqual(["css", "js", "wasm"]);
  for (const asset of assets) {
    expect(asset.url, "the name holds the content's hash").toMatch(/\/pkg\/hailstone\.[A-Za-z0-9_-]{22}\.(css|js|wasm)$/);
    expect(["br", "gzip"], asset.url).toContain(asset.encoding);
    expect(asset.cache, asset.url).toBe("public, max-age=31536000, immutable");
  }
});
