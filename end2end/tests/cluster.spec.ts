import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { expect, test } from "@playwright/test";
import { enter, runStatus, trajectory, values, waitForValues } from "./helpers";

// This spec runs a cluster of its own (scripts/cluster.sh, as `make cluster`
// does): a Redis primary, its replica and three sentinels, three nodes of
// the binary cargo-leptos built for the suite, and haproxy in front, all on
// free ports of 127.0.0.1.
const root = resolve(__dirname, "../..");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache/hailstone/target");
const binary = process.env.HAILSTONE_SERVER_BIN ?? join(targetDir, "debug/server");

/** Whether `port` of 127.0.0.1 is free now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
  });
}

/** The first of `count` consecutive free ports at or above `from`. */
async function freePorts(from: number, count: number): Promise<number> {
  for (let base = from; base < from + 2000; base += count) {
    const free = await Promise.all([...Array(count).keys()].map((i) => isFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error("no free ports");
}

async function waitFor(what: string, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 60 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a run keeps going, with no gap, while the node serving its page is killed", async ({ page }) => {
  test.setTimeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), "hailstone-cluster-"));
  const port = await freePorts(3100, 4);
  // The Redis primary, its replica and three sentinels.
  const redisPort = await freePorts(6400, 5);
  const cluster: ChildProcess = spawn(join(root, "scripts/cluster.sh"), [], {
    cwd: root,
    env: {
      ...process.env,
      CLUSTER_PORT: String(port),
      CLUSTER_NODES: "3",
      CLUSTER_REDIS_PORT: String(redisPort),
      CLUSTER_BIN: binary,
      CLUSTER_DIR: dir,
      HAILSTONE_STEP_INTERVAL_MS: "100",
      HAILSTONE_LEASE_MS: "1000",
      HAILSTONE_SCAN_MS: "200",
      HAILSTONE_STREAM_LIFETIME_SECS: "0",
      HAILSTONE_NEW_SESSIONS_PER_MINUTE: "100000",
    },
    stdio: "ignore",
  });
  const exited = new Promise((r) => cluster.once("exit", r));
  try {
    await waitFor("the cluster is ready", () => existsSync(join(dir, "ready")));
    // Which node answers each event stream (nodes name themselves).
    const streamNodes: string[] = [];
    page.on("response", (response) => {
      if (new URL(response.url()).pathname === "/events") {
        const node = response.headers()["x-hailstone-node"];
        if (node) streamNodes.push(node);
      }
    });
    await page.goto(`http://127.0.0.1:${port}`);
    await expect(page.locator("main")).toHaveAttribute("data-hydrated", "true");
    await enter(page, "27");
    await waitForValues(page, 20);
    await expect(page.locator("[data-link]")).toHaveAttribute("data-link", "live");
    const serving = streamNodes[streamNodes.length - 1];
    expect(serving).toMatch(/^n[123]$/);

    // SIGKILL the node serving the page's stream, mid-run.
    const pid = Number(readFileSync(join(dir, `${serving}.pid`), "utf8"));
    process.kill(pid, "SIGKILL");
    const reopened = streamNodes.length;

    // The page resumes through the balancer on another node and the run
    // goes on to 1, every value in its place.
    await waitFor("the stream reopens", () => streamNodes.length > reopened);
    expect(streamNodes[streamNodes.length - 1]).not.toBe(serving);
    await expect(runStatus(page)).toHaveText("Reached 1 in 111 steps.", { timeout: 60_000 });
    await expect(page.locator("[data-link]")).toHaveAttribute("data-link", "live");
    expect(await values(page)).toEqual(trajectory(27n));
  } finally {
    cluster.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
