import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { expect, test } from "@playwright/test";
import { enter, runStatus, trajectory, values, waitForValues } from "./helpers";

// This spec runs a server of its own, so it can kill and restart it: the
// binary cargo-leptos built for the suite, on another port, with its own store.
const root = resolve(__dirname, "../..");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/hailstone/target");
const binary = process.env.HAILSTONE_SERVER_BIN ?? join(targetDir, "debug/server");
const addr = "127.0.0.1:3017";
const url = `http://${addr}`;

function startServer(store: string): ChildProcess {
  return spawn(binary, [], {
    cwd: root,
    env: {
      ...process.env,
      LEPTOS_SITE_ADDR: addr,
      HAILSTONE_STORE_PATH: store,
      HAILSTONE_STEP_INTERVAL_MS: "100",
      HAILSTONE_STREAM_LIFETIME_SECS: "0",
    },
    stdio: "ignore",
  });
}

async function waitReady(): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not yet listening
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server at ${url} not ready`);
}

async function kill(server: ChildProcess): Promise<void> {
  const exited = new Promise((r) => server.once("exit", r));
  server.kill("SIGKILL");
  await exited;
}

test("a server restarted under an open page comes back and the run continues", async ({ page }) => {
  test.setTimeout(90_000);
  const dir = mkdtempSync(join(tmpdir(), "hailstone-restart-"));
  let server = startServer(join(dir, "store.db"));
  try {
    await waitReady();
    await page.goto(url);
    await expect(page.locator("main")).toHaveAttribute("data-hydrated", "true");
    await expect(page.locator("[data-link]")).toHaveAttribute("data-link", "live");
    await enter(page, "27");
    await waitForValues(page, 10);

    await kill(server); // SIGKILL mid-run
    await expect(page.locator("[data-link]")).toHaveAttribute("data-link", "reconnecting");
    server = startServer(join(dir, "store.db"));
    await waitReady();

    // The page reconnects by itself and the run goes on to 1, whole.
    await expect(page.locator("[data-link]")).toHaveAttribute("data-link", "live", { timeout: 15_000 });
    await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.", { timeout: 60_000 });
    expect(await values(page)).toEqual(trajectory(27n));
  } finally {
    await kill(server);
    rmSync(dir, { recursive: true, force: true });
  }
});
