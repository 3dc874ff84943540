/**
 * `npm run demo [-- --hosts N]`: the main job. Starts N lab hosts (default 3), deploys the
 * deployment program (index.ts, stack `lab`, config in Pulumi.lab.yaml) to them with the real
 * Pulumi engine, and prints a table of expected and effective values per host. The hosts stay up
 * to explore; the end of the output says how to tear down.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { hosts: { type: "string", default: "3" } } });
if (!/^[1-9]\d*$/.test(values.hosts)) {
  console.error(`demo: --hosts must be a positive whole number, not "${values.hosts}"`);
  process.exit(2);
}

let hostsUp = false; // from here on a failure leaves lab hosts up
/** Runs one step under a "== what" heading; its stderr (progress of long steps) always reaches the terminal. */
function run(what: string, cmd: string, args: string[], capture = false): string {
  console.log(`\n== ${what}`);
  const r = spawnSync(cmd, args, { cwd: repo, stdio: capture ? ["ignore", "pipe", "inherit"] : "inherit", encoding: "utf8" });
  if (r.status !== 0) {
    const hosts = hostsUp ? " Lab hosts are left up for a look; 'npm run lab -- down' removes them." : "";
    console.error(`demo: ${what.replace(/ \(.*/, "")} failed (exit ${r.status ?? r.signal}).${hosts}`);
    process.exit(1);
  }
  return capture ? r.stdout : "";
}

// Prerequisites first: a missing one is reported now, with its fix, not as a stack trace minutes later.
console.log("== checking prerequisites (npm run doctor)");
if (spawnSync(process.execPath, ["scripts/doctor.ts"], { cwd: repo, stdio: "inherit" }).status !== 0) {
  console.error("demo: stopped before starting anything; fix what is marked FAIL above, then run `npm run demo` again.");
  process.exit(1);
}
// The Pulumi toolchain before any host starts, in the open: the first run builds it from Go modules
// (scripts/toolchain/build.sh, a progress line every 20 s on stderr); every later pulumi call finds it cached.
run("Pulumi toolchain (the first run builds it from Go modules: about 10 minutes on 2 cores; cached afterwards)", "bash", [
  "-c",
  'source scripts/env.sh && echo "pulumi $(pulumi version) ($(command -v pulumi))"',
]);

const pulumi = (...args: string[]) => ["scripts/pulumi.sh", ...args];
const inventory = join(repo, ".lab", "inventory.json");
const labRunning =
  existsSync(inventory) &&
  (JSON.parse(readFileSync(inventory, "utf8")) as unknown[]).length === Number(values.hosts) &&
  spawnSync(process.execPath, ["scripts/lab/lab.ts", "status"], { cwd: repo, stdio: "ignore" }).status === 0;
if (labRunning) {
  console.log(`\n== reusing the ${values.hosts} lab hosts that are already up`);
  hostsUp = true;
} else {
  hostsUp = true;
  run(`starting ${values.hosts} lab hosts (seconds; the first run also builds the Debian root fs: 2 to 5 minutes)`, process.execPath, [
    "scripts/lab/lab.ts",
    "up",
    "--hosts",
    values.hosts,
  ]);
  // New hosts: whatever the stack recorded about earlier lab hosts is gone with them.
  const state = spawnSync("bash", pulumi("stack", "ls", "--json"), { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (
    state.status === 0 &&
    (JSON.parse(state.stdout) as { name: string; resourceCount?: number }[]).some((s) => s.name === "lab" && (s.resourceCount ?? 0) > 0)
  ) {
    run("forgetting the stack's earlier lab hosts", "bash", pulumi("stack", "rm", "--force", "--yes", "--preserve-config", "lab"));
  }
}
run("selecting stack lab", "bash", pulumi("stack", "select", "--create", "lab", "--non-interactive"));
run("pulumi up (real engine, real hosts; about 30 s, a line per resource)", "bash", pulumi("up", "--yes", "--non-interactive", "--stack", "lab"));
const out = JSON.parse(run("reading stack outputs", "bash", pulumi("stack", "output", "--json", "--stack", "lab"), true)) as {
  verification: Record<string, { setting: string; expected: number; effective: number | null; ok: boolean }[]>;
};

const rows = [["HOST", "SETTING", "EXPECTED", "EFFECTIVE", "OK"]];
for (const [host, list] of Object.entries(out.verification)) {
  for (const r of list) rows.push([host, r.setting, String(r.expected), String(r.effective ?? "missing"), r.ok ? "yes" : "NO"]);
}
const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
console.log("\n== expected and effective values, read back from /proc/sys and ss on each host\n");
for (const r of rows)
  console.log(
    r
      .map((cell, c) => cell.padEnd(widths[c]))
      .join("  ")
      .trimEnd(),
  );
const bad = rows.slice(1).filter((r) => r[4] !== "yes").length;

console.log(`
The lab hosts are still running. To look around:
  npm run lab -- status
  npm run lab -- exec lab1 -- ss -lnx            (effective backlog = Send-Q)
  npm run lab -- exec lab1 -- sysctl net.core.somaxconn
To see a preview an operator can approve, make lab1 drift and preview (read-only; probes every host):
  npm run lab -- exec lab1 -- sysctl -w net.core.somaxconn=1000
  npm run lab -- exec lab1 -- sed -i 's/^listen.backlog = .*/listen.backlog = 511/' /etc/php/8.2/fpm/pool.d/www.conf
  npm run pulumi -- preview --stack lab
    "backlog-lab1 will change:" lists each setting current → wanted (net.core.somaxconn: 1000 → 8192),
    a unified diff of each file that differs (-listen.backlog = 511 / +listen.backlog = 8192) and the
    action per service with its reason (php8.2-fpm: relisten: listen() again, no connection lost).
    Hosts with nothing to do print nothing; the resource line names the changed fields [diff: ~files,…].
  npm run pulumi -- preview --diff --stack lab   (the same, field by field: settings, files, services)
  npm run pulumi -- preview --json --stack lab   (the same for CI gates: steps[].newState.inputs)
  npm run pulumi -- up --yes --stack lab         (repairs it; stack outputs: changed, changes = the drift
                                                  it repaired, applied, verification, inSync = after the run)
  See docs/preview.md for a real preview and every field.
To see the incident this prevents (502s from a full php-fpm accept queue) and its fix under load:
  npm run bench:incident                         (its own lab host; before/after table, reports/incident.md)
To tear down:
  npm run pulumi -- destroy --yes --stack lab    (puts back the hosts' original files and values)
  npm run lab -- down                            (stops the hosts; leaves nothing behind)`);
process.exit(bad === 0 ? 0 : 1);
