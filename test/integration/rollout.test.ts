/**
 * Rolling rollouts (issue #11), real engine, 3 lab hosts under steady load, `backlog:rollout`
 * `{ maxParallel: 1 }`: a change that needs a restart (the php-fpm socket's `listen.mode`) goes one
 * host at a time, so at no moment are two hosts failing requests; and when the second host's
 * restart fails, the rollout stops there: the third host is not touched (same files, same php-fpm
 * and nginx processes, no failed request). The error names the failed host, and that host's own
 * message ends with the hosts it leaves untouched (its place in the batches, input rolloutPlace).
 *
 * The load: one generator per host (scripts/bench/loadgen.ts, the one of `npm run bench:rollout`),
 * run by this machine's node inside the host's network namespace, 200 requests/s over 20
 * connections to nginx :8080 → php-fpm (5 ms PHP script); it keeps the time of every failed request.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { LOADGEN_SOURCE, type LoadResult, failureWindows, leaderPid, loadCommand, parseLoad, summarize } from "../../scripts/bench/loadgen";
import { Lab, requireLabMachine, tearDownAfterAll, testStack } from "./harness";

jest.setTimeout(900_000);

const SOCK = "/run/php/rollt.sock";
const UNIT = "php8.2-fpm";
const profile = (listenMode: string) => ({
  name: "it-rollout",
  backlog: 1024,
  pools: [{ name: "app", listen: SOCK, listenMode, pm: { style: "static", maxChildren: 8 } }],
  listeners: [{ listen: 8080, pool: "app" }],
});

const lab = new Lab("rollt");
let stack: Stack;
let remove: () => Promise<void>;
let loadgenFile: string;
/** What `up` said when the second host failed (test 2), for test 3. */
let failedUpMessage = "";

beforeAll(async () => {
  requireLabMachine();
  lab.up(3);
  for (const h of lab.hosts) lab.sh(h.name, "printf '<?php usleep(5000); echo \"ok\";\\n' > /var/www/html/w.php");
  loadgenFile = join(lab.dir, "loadgen.mjs");
  writeFileSync(loadgenFile, LOADGEN_SOURCE);
  ({ stack, remove } = await testStack("rollout", {
    "backlog:inventory": lab.inventory,
    "backlog:profile": profile("0660"),
    "backlog:rollout": { maxParallel: 1 },
  }));
  await stack.up({ onOutput: () => undefined });
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

/** Generators still running (a test that failed half-way): stopped after each test. */
const generators = new Set<ChildProcess>();
afterEach(() => {
  for (const g of generators) if (g.exitCode === null && g.signalCode === null) g.kill("SIGKILL");
  generators.clear();
});

/** Starts a generator per host (bounded: 200 requests/s, at most 300 s); the returned function stops them and reads their results. */
function load(): () => Promise<Record<string, LoadResult>> {
  const runs = lab.hosts.map((h) => {
    const { cmd, args } = loadCommand(leaderPid(lab.dir, h.name), loadgenFile, { port: 8080, path: "/w.php", connections: 20, rate: 200, capSeconds: 300 });
    const child: ChildProcess = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    generators.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    return { host: h.name, child, closed, out: () => ({ stdout, stderr }) };
  });
  return async () => {
    await new Promise((r) => setTimeout(r, 3000)); // a tail of load after the change
    for (const r of runs) if (r.child.exitCode === null) r.child.kill("SIGTERM"); // it finishes its requests and reports
    const out: Record<string, LoadResult> = {};
    for (const r of runs) {
      const code = await r.closed;
      out[r.host] = parseLoad(r.host, code, r.out().stdout, r.out().stderr);
    }
    return out;
  };
}

/** A unit's main process and when it started (CLOCK_MONOTONIC, µs: the lab hosts share this machine's kernel, so it compares across hosts). */
function started(host: string, unit: string): { pid: string; at: number } {
  const [pid, at] = lab.sh(host, `systemctl show -P MainPID ${unit}; systemctl show -P ExecMainStartTimestampMonotonic ${unit}`).trim().split("\n");
  return { pid, at: Number(at) };
}

/** sha256 of every file the deployment could touch on a host (php-fpm, nginx, sysctl, the library's state). */
function files(host: string): string {
  return lab.sh(host, "find /etc/php /etc/nginx /etc/sysctl.d /var/lib/pulumi-backlog -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum");
}

function socketMode(host: string): string {
  return lab.sh(host, `stat -c %a ${SOCK}`).trim();
}

/** The stack output `applied`: per host and unit, what the last `up` did. */
async function applied(): Promise<Record<string, Record<string, string>>> {
  return ((await stack.outputs()).applied?.value ?? {}) as Record<string, Record<string, string>>;
}

/** Pairs of hosts whose failure windows (failures less than 1 s apart merged) overlap in time. */
function overlaps(results: Record<string, LoadResult>): string[] {
  const windows = Object.entries(results).map(([host, l]) => ({ host, w: failureWindows(l, 1000) }));
  const out: string[] = [];
  for (let i = 0; i < windows.length; i++) {
    for (let j = i + 1; j < windows.length; j++) {
      for (const [a0, a1] of windows[i].w) {
        for (const [b0, b1] of windows[j].w) {
          if (a0 <= b1 && b0 <= a1) out.push(`${windows[i].host} [${a0}, ${a1}] and ${windows[j].host} [${b0}, ${b1}]`);
        }
      }
    }
  }
  return out;
}

function show(results: Record<string, LoadResult>): string {
  return Object.entries(results)
    .map(([host, l]) => {
      const s = summarize(l);
      const w = failureWindows(l, 1000).map(([a, b]) => `${((a - l.start) / 1000).toFixed(2)}-${((b - l.start) / 1000).toFixed(2)} s`);
      return `${host}: ${s.requests} requests, ${s.failed} failed, goodput ${s.goodput.toFixed(0)}/s, p50 ${l.p50?.toFixed(1)} ms, p99 ${l.p99?.toFixed(1)} ms, failing ${w.join(", ") || "never"}`;
    })
    .join("\n");
}

test("a restart-needing change with maxParallel 1: one host after the other, never two hosts failing requests at once", async () => {
  const before = Object.fromEntries(lab.hosts.map((h) => [h.name, started(h.name, UNIT)]));
  const done = load();
  await stack.setConfig("backlog:profile", { value: JSON.stringify(profile("0666")) });
  const t0 = Date.now();
  await stack.up({ onOutput: () => undefined });
  const upSeconds = (Date.now() - t0) / 1000;
  const results = await done();
  console.log(`maxParallel 1, listen.mode 0660 -> 0666 under load, pulumi up ${upSeconds.toFixed(1)} s:\n${show(results)}`);

  const a = await applied();
  const after = Object.fromEntries(lab.hosts.map((h) => [h.name, started(h.name, UNIT)]));
  for (const h of lab.hosts) {
    expect(a[h.name]?.[UNIT]).toBe("restart");
    expect(after[h.name].pid).not.toBe(before[h.name].pid);
    expect(socketMode(h.name)).toBe("666");
    expect(summarize(results[h.name]).requests).toBeGreaterThan(1000);
    expect(results[h.name].failureTimesDropped).toBe(0);
  }
  // One host after the other: each restart began after the previous host's had finished and verified.
  const [h1, h2, h3] = lab.hosts.map((h) => after[h.name].at);
  expect(h1).toBeLessThan(h2);
  expect(h2).toBeLessThan(h3);
  expect(overlaps(results)).toEqual([]);
});

test("the second host's restart fails: the rollout stops there, the third host is untouched", async () => {
  const [first, second, third] = lab.hosts.map((h) => h.name);
  // A broken unit on the second host: its next start fails once (ExecStartPre), so the apply's
  // restart fails; the host's own rollback then starts it again on the old files.
  lab.sh(
    second,
    [
      "mkdir -p /run/systemd/system/php8.2-fpm.service.d",
      "printf '[Service]\\nExecStartPre=/bin/sh -c \"if [ -e /run/fail-next-start ]; then rm -f /run/fail-next-start; exit 1; fi\"\\n' > /run/systemd/system/php8.2-fpm.service.d/fail-once.conf",
      "touch /run/fail-next-start",
      "systemctl daemon-reload",
    ].join(" && "),
  );
  try {
    const thirdFiles = files(third);
    const thirdStarted = { php: started(third, UNIT), nginx: started(third, "nginx") };
    const done = load();
    await stack.setConfig("backlog:profile", { value: JSON.stringify(profile("0660")) });
    let output = "";
    const error = await stack.up({ onOutput: (s) => (output += s) }).then(
      () => undefined,
      (e: Error) => e,
    );
    const results = await done();
    console.log(`maxParallel 1, listen.mode 0666 -> 0660, ${second}'s restart fails:\n${show(results)}`);

    expect(error).toBeDefined();
    failedUpMessage = `${error?.message ?? ""}\n${output}`;
    // The failed host is named with the step that failed; the third host's settings were never updated.
    expect(failedUpMessage).toContain(`backlog-${second}: apply failed at restart php8.2-fpm (everything was put back)`);
    expect(output).toMatch(new RegExp(`backlog-${first}-settings\\s+updated`));
    expect(output).not.toMatch(new RegExp(`backlog-${third}-settings\\s+updat`));
    // The first host has the change, the second was put back and serves, the third was not touched.
    expect(socketMode(first)).toBe("660");
    expect(socketMode(second)).toBe("666");
    expect(lab.unitStates(second, "php8.2-fpm", "nginx")).toEqual(["active", "active"]);
    expect(socketMode(third)).toBe("666");
    expect(files(third)).toBe(thirdFiles);
    expect({ php: started(third, UNIT), nginx: started(third, "nginx") }).toEqual(thirdStarted);
    expect(summarize(results[third]).failed).toBe(0);
    expect(summarize(results[third]).requests).toBeGreaterThan(1000);
    expect(overlaps(results)).toEqual([]);
  } finally {
    lab.sh(second, "rm -f /run/systemd/system/php8.2-fpm.service.d/fail-once.conf /run/fail-next-start && systemctl daemon-reload");
  }
  // With the fault gone, the next up converges every host.
  await stack.up({ onOutput: () => undefined });
  for (const h of lab.hosts) expect(socketMode(h.name)).toBe("660");
});

// The fleet's own error (rolloutGates in src/pulumi/backlogFleet.ts) never reaches the output: without
// --continue-on-error the engine ends the update at the first failed resource, before the program's
// gate runs. So each host's settings resource carries its place in the batches, and its own failure
// message ends with what is not touched and why (core rollout.ts rolloutNote).
test("the failed up names the failed host and, in that host's message, the hosts it did not touch", () => {
  const [, second, third] = lab.hosts.map((h) => h.name);
  expect(failedUpMessage).toContain(`backlog-${second}: apply failed`);
  expect(failedUpMessage).toContain(`rollout stopped at this host's batch 2 of 3: not touched: ${third} (rollout.maxFailedHosts 0)`);
});
