/**
 * `npm run bench:fleet -- --hosts N`: what one `pulumi up` costs per host. Starts N lab hosts,
 * deploys the deployment program to them three times (first deploy, no change, changed profile)
 * and prints, per phase: hosts, wall seconds, and SSH connections per host, counted on the hosts'
 * side (sshd's "Accepted publickey" lines in each host's journal).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { values } = parseArgs({ options: { hosts: { type: "string", default: "3" } } });
const count = Number(values.hosts);
if (!Number.isInteger(count) || count < 1 || count > 60) {
  console.error(`bench:fleet: --hosts must be a whole number from 1 to 60, not "${values.hosts}"`);
  process.exit(2);
}

const labDir = mkdtempSync(join(tmpdir(), "backlog-bench-lab-"));
const stateDir = mkdtempSync(join(tmpdir(), "backlog-bench-state-"));
const stack = `bench-fleet-${process.pid}`;
const env = { ...process.env, BACKLOG_LAB_DIR: labDir, PULUMI_BACKEND_URL: `file://${stateDir}`, PULUMI_CONFIG_PASSPHRASE: "bench-only" };

function run(cmd: string, args: string[], quiet = true): string {
  const r = spawnSync(cmd, args, { cwd: repo, env, encoding: "utf8", stdio: quiet ? "pipe" : "inherit", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout ?? ""}${r.stderr ?? ""}`);
  return r.stdout ?? "";
}
const lab = (...args: string[]) => run(process.execPath, ["scripts/lab/lab.ts", ...args]);
const pulumi = (...args: string[]) => run("bash", ["scripts/pulumi.sh", ...args, "--stack", stack, "--non-interactive"]);
const profile = (backlog: number) => JSON.stringify({
  name: "bench", backlog,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
});

function accepted(names: string[]): number[] {
  return names.map((n) => Number(lab("exec", n, "--", "sh", "-c", "journalctl -q -u ssh --no-pager | grep -c 'Accepted publickey' || true").trim()));
}

const rows: string[][] = [["PHASE", "HOSTS", "WALL S", "SSH CONN/HOST (min/avg/max)", "TOTAL CONN"]];
try {
  console.log(`starting ${count} lab hosts…`);
  lab("up", "--hosts", String(count), "--prefix", "fleet");
  const names = Array.from({ length: count }, (_, i) => `fleet${i + 1}`);
  run("bash", ["scripts/pulumi.sh", "stack", "init", stack, "--non-interactive"]);
  pulumi("config", "set", "backlog:inventory", join(labDir, "inventory.json"));
  const phases: [string, number][] = [["first deploy", 8192], ["no change", 8192], ["profile change", 12288]];
  for (const [phase, backlog] of phases) {
    pulumi("config", "set", "backlog:profile", profile(backlog));
    const before = accepted(names);
    const start = process.hrtime.bigint();
    pulumi("up", "--yes", "--skip-preview");
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const per = accepted(names).map((n, i) => n - before[i]);
    const total = per.reduce((a, b) => a + b, 0);
    rows.push([phase, String(count), seconds.toFixed(1), `${Math.min(...per)}/${(total / count).toFixed(1)}/${Math.max(...per)}`, String(total)]);
    console.log(`${phase}: ${seconds.toFixed(1)} s, ${total} SSH connections`);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  console.log("\n" + rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()).join("\n"));
  console.log("\n(`pulumi up --skip-preview`: one run of the program, so one probe per host; a `pulumi up` with its preview probes twice.)");
} finally {
  spawnSync("bash", ["scripts/pulumi.sh", "destroy", "--yes", "--stack", stack, "--non-interactive"], { cwd: repo, env, stdio: "ignore" });
  spawnSync("bash", ["scripts/pulumi.sh", "stack", "rm", "--force", "--yes", stack, "--non-interactive"], { cwd: repo, env, stdio: "ignore" });
  rmSync(join(repo, `Pulumi.${stack}.yaml`), { force: true });
  spawnSync(process.execPath, ["scripts/lab/lab.ts", "down"], { cwd: repo, env, stdio: "ignore" });
  rmSync(labDir, { recursive: true, force: true });
  rmSync(stateDir, { recursive: true, force: true });
}
