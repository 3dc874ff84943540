/**
 * `npm run bench:incident` (project issue #7): the 502 incident (docs/incident.md), before and after.
 *
 * 1. Starts one lab host (own lab dir in a temp dir, prefix `inc`) and sets up the untuned baseline
 *    by hand: somaxconn 16, pool www with listen.backlog 8 and 2 static workers, a PHP script that
 *    sleeps 50 ms, nginx on port 8080; restarts php-fpm and nginx so the sockets get the small values.
 * 2. Loads it with wrk from inside the host (300 connections, 5 s, loopback only), counts responses
 *    by status (wrk Lua script and nginx's access log), EAGAIN lines in nginx's error log, latency
 *    percentiles, and reads the effective backlogs (`ss`: Send-Q).
 * 3. Removes the baseline's nginx file and applies the profile with the real `pulumi up` of the
 *    deployment program (index.ts) on a stack of its own (`bench-incident`, state in the temp dir),
 *    then runs the same load again.
 * 4. Prints a before/after table and writes reports/incident.md with reports/incident.svg (and a PNG
 *    when `rsvg-convert` is installed).
 * 5. Always tears down: the lab host, the stack (and its Pulumi.bench-incident.yaml), the state dir,
 *    also on failure and on Ctrl-C / SIGTERM / SIGHUP.
 *
 * Exit status: 0 when "after" has no 502 and every socket has the profile's backlog, 1 otherwise,
 * 130/143/129 when interrupted. Needs root on Linux (lab hosts). Progress goes to stderr, the table
 * to stdout.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { renderBarChart } from "./incident-chart.ts";
import {
  AFTER_PROFILE,
  BASELINE,
  BASELINE_NGINX,
  BASELINE_NGINX_PATH,
  BASELINE_POOL,
  LOAD,
  LUA_PATH,
  PHP_SOCKET,
  SLOW_PHP,
  SLOW_PHP_PATH,
  WRK_LUA,
  WWW_POOL_PATH,
  baselineScript,
  factsScript,
  loadScript,
  removeBaselineNginxScript,
  shQuote,
  wrkCommand,
} from "./incident-host.ts";
import { parseCount, parseUniqCounts, parseWrk, sections, sendQ, tcpSendQByPort } from "./incident-parse.ts";
import { type Phase, chartPanels, renderMarkdown, tableRows, textTable } from "./incident-report.ts";
import { LabBench, gitDescription, repo, type RunOptions, type RunResult } from "./lab-bench.ts";

const STACK = "bench-incident";
const HOST = "inc1";
const stackConfigFile = join(repo, `Pulumi.${STACK}.yaml`);
const reportsDir = join(repo, "reports");

const USAGE = `usage: npm run bench:incident   (no arguments; root on Linux)

Starts one lab host, measures the untuned baseline under wrk, applies the profile with pulumi up,
measures again, prints a before/after table, writes reports/incident.md and reports/incident.svg,
and tears everything down (also on failure or Ctrl-C).`;
{
  const { values, positionals } = parseArgs({ options: { help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: false });
  const unknown = process.argv.slice(2).filter((a) => a !== "--help" && a !== "-h");
  if (values.help || unknown.length > 0 || positionals.length > 0) {
    (values.help && unknown.length === 0 ? console.log : console.error)(
      unknown.length ? `bench:incident: unexpected argument(s): ${unknown.join(" ")}\n\n${USAGE}` : USAGE,
    );
    process.exit(values.help && unknown.length === 0 ? 0 : 2);
  }
}

// ------------------------------------------------------------------ lab and pulumi

const bench = new LabBench("bench:incident", STACK, "backlog-incident-");
const { labDir, stateDir } = bench;
const log = (msg: string) => bench.log(msg);
const must = (what: string, r: RunResult, echoed = false) => bench.must(what, r, echoed, 8);

/** The commands as the report shows them (temp paths replaced by $LAB / $STATE). */
const commands: string[] = [];
const show = (s: string) => s.split(labDir).join("$LAB").split(stateDir).join("$STATE");

function lab(args: string[], opts: Omit<RunOptions, "env"> & { display?: string }): Promise<RunResult> {
  commands.push(show(opts.display ?? `BACKLOG_LAB_DIR=${labDir} npm run lab -- ${args.join(" ")}`));
  return bench.lab(args, opts);
}

/** `lab exec HOST -- sh -c SCRIPT`. */
function hostSh(script: string, name: string, timeoutMs = 120_000, input?: string): Promise<RunResult> {
  return lab(["exec", HOST, "--", "sh", "-c", script], {
    timeoutMs,
    input,
    display: `BACKLOG_LAB_DIR=${labDir} npm run lab -- exec ${HOST} -- sh -c "$${name}"`,
  });
}

/** Pulumi on the bench's stack (`--stack STACK --non-interactive` added). */
function pulumi(args: string[], opts: Omit<RunOptions, "env"> & { display?: string }): Promise<RunResult> {
  commands.push(
    show(
      opts.display ??
        `PULUMI_BACKEND_URL=file://${stateDir} PULUMI_CONFIG_PASSPHRASE=bench-only npm run pulumi -- ${bench
          .pulumiArgs(args)
          .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : shQuote(a)))
          .join(" ")}`,
    ),
  );
  return bench.pulumi(args, opts);
}

// ------------------------------------------------------------------ measuring

async function loadRun(label: Phase["label"]): Promise<Phase> {
  log(`${label}: ${wrkCommand()} (inside ${HOST})`);
  const r = must(`load run (${label})`, await hostSh(loadScript(), "LOAD", (LOAD.killAfterSeconds + 60) * 1000));
  const s = sections(r.stdout);
  const sysctl = (s.get("sysctl") ?? "").trim().split("\n");
  const ssx = s.get("ssx") ?? "";
  const sst = s.get("sst") ?? "";
  const ssLines = [...ssx.split("\n").filter((l) => l.includes(PHP_SOCKET)), ...sst.split("\n").filter((l) => new RegExp(`:${LOAD.port}\\s`).test(l + " "))]
    .map((l) => l.trim().replace(/\s+/g, " "))
    .join("\n");
  return {
    label,
    somaxconn: parseCount(sysctl[0]),
    tcpMaxSynBacklog: parseCount(sysctl[1]),
    phpFpmBacklog: sendQ(ssx, PHP_SOCKET),
    nginxBacklogs: tcpSendQByPort(sst, LOAD.port),
    phpFpmWorkers: parseCount(s.get("workers")),
    wrk: parseWrk(s.get("wrk") ?? ""),
    accessLog: parseUniqCounts(s.get("access") ?? ""),
    eagainLines: parseCount(s.get("eagain")),
    errorLogSample: (s.get("errorlog") ?? "").trim(),
    ssLines,
  };
}

// ------------------------------------------------------------------ main flow

interface Outcome {
  before: Phase;
  after: Phase;
  verification: string[][] | null;
  verificationOk: boolean;
  hostFacts: Record<string, string>;
  deployNotes: string[];
}

async function runBench(): Promise<Outcome> {
  // Checked first, so a leftover or a concurrent run costs no lab host.
  if (existsSync(stackConfigFile)) {
    throw new Error(`${stackConfigFile} exists: another bench:incident is running, or a killed run left it behind (then delete it)`);
  }
  await bench.step("lab up (1 host)", async () => {
    must("lab up", await lab(["up", "--hosts", "1", "--prefix", "inc"], { timeoutMs: 600_000, echo: true }), true);
  });
  const hostFacts = await bench.step("host facts", async () => {
    const r = must("host facts", await hostSh(factsScript(), "FACTS"));
    const facts: Record<string, string> = {};
    for (const [k, v] of sections(r.stdout)) if (k !== "end") facts[k] = v.trim();
    return facts;
  });
  await bench.step("untuned baseline (by hand)", async () => {
    must("baseline setup", await hostSh(baselineScript(), "BASELINE"));
  });
  const before = await bench.step("load: before", () => loadRun("before"));

  await bench.step("remove the baseline nginx server", async () => {
    must("removing the baseline nginx file", await hostSh(removeBaselineNginxScript(), "REMOVE_BASELINE_NGINX"));
  });
  await bench.step("pulumi stack init + config", async () => {
    if (existsSync(stackConfigFile)) throw new Error(`${stackConfigFile} appeared while the bench ran: another bench:incident is running`);
    bench.stackCreated = true; // from here on, cleanup removes the stack and its config file
    must("pulumi stack init", await pulumi(["stack", "init"], { timeoutMs: 600_000 }));
    must("pulumi config set inventory", await pulumi(["config", "set", "backlog:inventory", join(labDir, "inventory.json")], { timeoutMs: 120_000 }));
    must("pulumi config set profile", await pulumi(["config", "set", "backlog:profile", JSON.stringify(AFTER_PROFILE)], { timeoutMs: 120_000 }));
  });
  const deployNotes: string[] = [];
  await bench.step("pulumi up (the profile)", async () => {
    const r = await pulumi(["up", "--yes"], { timeoutMs: 900_000, echo: true });
    for (const line of (r.stdout + r.stderr).split("\n")) {
      if (/^\s*(warning|error):/i.test(line)) deployNotes.push(line.trim());
    }
    must("pulumi up", r, true);
  });
  const { verification, verificationOk } = await bench.step("stack outputs", async () => {
    const r = must("pulumi stack output", await pulumi(["stack", "output", "--json"], { timeoutMs: 120_000 }));
    const out = JSON.parse(r.stdout) as { verification?: Record<string, { setting: string; expected: number; effective: number | null; ok: boolean }[]> };
    if (!out.verification) return { verification: null, verificationOk: false };
    const rows = [["host", "setting", "expected", "effective", "ok"]];
    let ok = true;
    for (const [host, list] of Object.entries(out.verification)) {
      for (const v of list) {
        rows.push([host, v.setting, String(v.expected), String(v.effective ?? "missing"), v.ok ? "yes" : "NO"]);
        ok &&= v.ok;
      }
    }
    return { verification: rows, verificationOk: ok };
  });
  const after = await bench.step("load: after", () => loadRun("after"));
  return { before, after, verification, verificationOk, hostFacts, deployNotes };
}

/** The teardown's commands, for the report (LabBench.cleanup runs them). */
function noteTeardown(): void {
  commands.push("# teardown (always, also on failure or a signal)");
  if (bench.stackCreated)
    commands.push(`PULUMI_BACKEND_URL=file://$STATE PULUMI_CONFIG_PASSPHRASE=bench-only npm run pulumi -- stack rm --force --yes --stack ${STACK}`);
  commands.push("BACKLOG_LAB_DIR=$LAB npm run lab -- down", "rm -rf $LAB $STATE");
}

function writeReports(o: Outcome, wallSeconds: number, verdict: { ok: boolean; problems: string[] }): string {
  mkdirSync(reportsDir, { recursive: true });
  const cpu = os.cpus();
  const caption = `wrk -t${LOAD.threads} -c${LOAD.connections} -d${LOAD.duration}, 50 ms PHP script, lab host nproc ${o.hostFacts.nproc ?? "?"}, ${new Date().toISOString().slice(0, 10)}`;
  const svg = renderBarChart("The incident: untuned vs. the profile applied", caption, chartPanels(o.before, o.after));
  writeFileSync(join(reportsDir, "incident.svg"), svg);
  let png: string | null = null;
  const rsvg = spawnSync("sh", ["-c", "command -v rsvg-convert"], { encoding: "utf8" });
  if (rsvg.status === 0 && rsvg.stdout.trim()) {
    const r = spawnSync(rsvg.stdout.trim(), ["-o", join(reportsDir, "incident.png"), join(reportsDir, "incident.svg")], { encoding: "utf8" });
    if (r.status === 0) png = "incident.png";
    else log(`rsvg-convert failed: ${r.stderr.trim()}`);
  } else {
    rmSync(join(reportsDir, "incident.png"), { force: true }); // never leave a PNG of an earlier run
  }
  const md = renderMarkdown(o.before, o.after, {
    date: new Date().toISOString(),
    wallSeconds,
    steps: bench.steps,
    machine: { nproc: os.availableParallelism(), cpu: cpu[0]?.model ?? "unknown CPU", memGiB: os.totalmem() / 2 ** 30, kernel: os.release() },
    host: o.hostFacts,
    git: gitDescription(),
    verdict,
    expectedBacklog: AFTER_PROFILE.backlog,
    profileJson: JSON.stringify(AFTER_PROFILE, null, 2),
    files: [
      { path: WWW_POOL_PATH, content: BASELINE_POOL, lang: "ini" },
      { path: BASELINE_NGINX_PATH, content: BASELINE_NGINX, lang: "nginx" },
      { path: SLOW_PHP_PATH, content: SLOW_PHP, lang: "php" },
      { path: LUA_PATH, content: WRK_LUA, lang: "lua" },
    ],
    commands,
    loadScript: loadScript(),
    wrkCommand: wrkCommand(),
    verification: o.verification,
    deployNotes: o.deployNotes,
    svgName: "incident.svg",
    pngName: png,
  });
  const mdPath = join(reportsDir, "incident.md");
  writeFileSync(mdPath, md);
  return mdPath;
}

function judge(o: Outcome): { ok: boolean; problems: string[] } {
  const problems: string[] = [];
  const a = o.after;
  const want = AFTER_PROFILE.backlog;
  if ((a.wrk.statuses["502"] ?? 0) > 0) problems.push(`after: ${a.wrk.statuses["502"]} responses were 502 (wrk)`);
  if ((a.accessLog["502"] ?? 0) > 0) problems.push(`after: ${a.accessLog["502"]} 502s in nginx's access log`);
  if ((a.eagainLines ?? 0) > 0) problems.push(`after: ${a.eagainLines} EAGAIN lines in nginx's error log`);
  if (a.phpFpmBacklog !== want) problems.push(`after: php-fpm socket backlog is ${a.phpFpmBacklog ?? "missing"}, the profile's is ${want}`);
  const nginx = Object.entries(a.nginxBacklogs);
  if (nginx.length === 0) problems.push(`after: no nginx listener on port ${LOAD.port}`);
  for (const [addr, b] of nginx) if (b !== want) problems.push(`after: nginx ${addr} backlog is ${b}, the profile's is ${want}`);
  if (!o.verificationOk) problems.push("the stack output `verification` is missing or has a row that is not ok");
  // The baseline must really reproduce the incident, or the comparison means nothing.
  if ((o.before.wrk.statuses["502"] ?? 0) === 0) problems.push("before: no 502 at all, the baseline did not reproduce the incident");
  if (o.before.phpFpmBacklog !== BASELINE.listenBacklog)
    problems.push(`before: php-fpm socket backlog is ${o.before.phpFpmBacklog ?? "missing"}, not the baseline's ${BASELINE.listenBacklog}`);
  return { ok: problems.length === 0, problems };
}

bench.main(
  runBench,
  (outcome, wallSeconds) => {
    const verdict = judge(outcome);
    const mdPath = writeReports(outcome, wallSeconds, verdict);
    process.stdout.write(`\nThe incident, before and after (${wrkCommand().replace(/^timeout \d+ /, "")}, inside the lab host)\n\n`);
    process.stdout.write(textTable(tableRows(outcome.before, outcome.after)) + "\n\n");
    if (outcome.verification) process.stdout.write("pulumi stack output verification:\n" + textTable(outcome.verification) + "\n\n");
    for (const n of outcome.deployNotes) process.stdout.write(`deployment: ${n}\n`);
    process.stdout.write(`${verdict.ok ? "PASS" : "FAIL"}${verdict.ok ? "" : ":\n  " + verdict.problems.join("\n  ")}\n`);
    process.stdout.write(
      `report: ${mdPath} (chart: ${join(reportsDir, "incident.svg")})\nwhole bench: ${wallSeconds.toFixed(1)} s (${bench.steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join(", ")})\n`,
    );
    return verdict.ok ? 0 : 1;
  },
  noteTeardown,
);
