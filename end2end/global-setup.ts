import { baseURL } from "./playwright.config";

/** Waits until the server answers `/healthz`: a readiness wait, never a fixed sleep. */
export default async function globalSetup(): Promise<void> {
  const deadline = Date.now() + 120_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${baseURL}/healthz`);
      if (response.ok) return;
      lastError = new Error(`/healthz answered ${response.status}`);
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`server at ${baseURL} not ready after 120 s: ${lastError}`);
}
