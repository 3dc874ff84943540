/**
 * `npm run bench:rollout -- --hosts N [--change backlog|somaxconn|pm|listen] [--max-parallel X] [--duration S] [--rate R]`
 * (project issue #11): what a change of the profile costs the requests of a fleet under load.
 *
 * 1. Starts N lab hosts (own lab dir in a temp dir, prefix `roll`), puts a PHP script that takes
 *    about 5 ms on each (`/var/www/html/fast.php`) and deploys the base profile with the real
 *    deployment program (index.ts) on a stack of its own, `bench-rollout-<pid>` (state and Pulumi
 *    home in the temp dir; its Pulumi.<stack>.yaml at the repo root until the teardown): backlog
 *    1024, pool www (static, 8 workers), nginx listener :8080.
 * 2. Starts one load generator per host: Node.js, run by this machine's node inside the host's
 *    network namespace only (`nsenter --net`), so it talks to the host's loopback, nothing else.
 *    `--rate` requests/s (default 200; 0: closed loop) over at most 20 keep-alive connections,
 *    GET /fast.php, 5 s timeout per request, 10 ms pause after a socket error (a refused
 *    connection would otherwise be retried thousands of times a second); it counts every
 *    response and error per second and keeps the latency of each 2xx response.
 * 3. Five seconds into the load it applies the change with `pulumi up --skip-preview` (the fleet
 *    rolls it out with `backlog:rollout`, `--max-parallel` when given) and notes when each host's
 *    settings resource started and finished (from the CLI's progress lines). The load lasts
 *    `--duration` seconds (default 35), or until 5 s after `pulumi up` ended when that is later.
 * 4. Per host it prints: the action per service (stack output `actions`), its batch, requests,
 *    failed requests (non-2xx + socket errors), goodput (2xx/s), p50/p99 latency of the 2xx
 *    responses, and the worst second of failures; writes reports/rollout.md with the table and an
 *    ASCII timeline (goodput, failures and the apply window per host, one column per second).
 * 5. Always tears down, also on failure and on Ctrl-C / SIGTERM / SIGHUP: the load generators,
 *    the stack, the lab hosts and the temp dir. It signals only process groups it started.
 *
 * Exit status: 0 when the run completed (whatever the numbers), 1 on failure, 128+N on signal N.
 * Needs root on Linux (lab hosts). Progress goes to stderr, the table to stdout.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { checkMaxParallel, type MaxParallel } from "../../components/rollout.ts";
import { markdownTable, textTable } from "./incident-report.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const reportsDir = join(repo, "reports");
const started = performance.now();
const log = (msg: string) => process.stderr.write(`bench:rollout: ${msg}\n`);
process.stdout.on("error", () => {});
process.stderr.on("error", () => {});

// ------------------------------------------------------------------ arguments

const CHANGES = ["backlog", "somaxconn", "pm", "listen"] as const;
const CONNECTIONS_DOC = 20;
type Change = (typeof CHANGES)[number];

const USAGE = `usage: npm run bench:rollout -- --hosts N [--change ${CHANGES.join("|")}] [--max-parallel X] [--duration S] [--rate R]

  --hosts N          lab hosts, 1 to 30 (default 2)
  --change C         what the second deployment changes (default backlog):
                       backlog    the profile's backlog 1024 -> 2048 (kernel, php-fpm and nginx)
                       somaxconn  net.core.somaxconn 1024 -> 4096 only (the sockets keep 1024)
                       pm         pool www pm.max_children 8 -> 12 (no socket changes)
                       listen     the nginx listener's backlog= 1024 -> 2048 (php-fpm keeps 1024)
  --max-parallel X   backlog:rollout maxParallel: hosts per batch, or "N%" (default: the fleet's
                     adaptive default)
  --duration S       seconds of load per host, 10 to 600 (default 35); the change starts after 5 s,
                     and the load goes on until 5 s after it ended when it takes longer
  --rate R           requests/s per host, 0 to 5000 (default 200); 0: as fast as the ${CONNECTIONS_DOC}
                     connections go (saturates a small machine, and slows pulumi itself down)

Root on Linux. Writes reports/rollout.md; tears everything down, also on failure or Ctrl-C.`;

function usage(message?: string): never {
  if (message) console.error(`bench:rollout: ${message}\n`);
  (message ? console.error : console.log)(USAGE);
  process.exit(message ? 2 : 0);
}

const { values: argv, positionals } = (() => {
  try {
    return parseArgs({
      options: {
        hosts: { type: "string", default: "2" },
        change: { type: "string", default: "backlog" },
        "max-parallel": { type: "string" },
        duration: { type: "string", default: "35" },
        rate: { type: "string", default: "200" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
    });
  } catch (e) {
    return usage((e as Error).message);
  }
})();
if (argv.help) usage();
if (positionals.length) usage(`unexpected argument(s): ${positionals.join(" ")}`);
const HOSTS = Number(argv.hosts);
if (!/^\d+$/.test(argv.hosts!) || HOSTS < 1 || HOSTS > 30) usage(`--hosts must be a whole number from 1 to 30, not "${argv.hosts}"`);
if (!(CHANGES as readonly string[]).includes(argv.change!)) usage(`--change must be one of ${CHANGES.join(", ")}, not "${argv.change}"`);
const CHANGE = argv.change as Change;
let MAX_PARALLEL: MaxParallel | undefined;
if (argv["max-parallel"] !== undefined) {
  const raw = argv["max-parallel"];
  try {
    MAX_PARALLEL = checkMaxParallel(/^\d+$/.test(raw) ? Number(raw) : raw, "--max-parallel");
  } catch (e) {
    usage((e as Error).message);
  }
}
const DURATION = Number(argv.duration);
if (!/^\d+$/.test(argv.duration!) || DURATION < 10 || DURATION > 600) usage(`--duration must be a whole number of seconds from 10 to 600, not "${argv.duration}"`);
const RATE = Number(argv.rate);
if (!/^\d+$/.test(argv.rate!) || RATE > 5000) usage(`--rate must be a whole number of requests per second from 0 to 5000, not "${argv.rate}"`);
/** Seconds of load before `pulumi up` of the change starts, and at least after it ended. */
const LEAD_SECONDS = 5;
const TAIL_SECONDS = 5;
/** The load generators' own hard limit (the bench stops them earlier). */
const LOAD_CAP_SECONDS = DURATION + 900;

// ------------------------------------------------------------------ what runs on the hosts

const PORT = 8080;
const PATH = "/fast.php";
const CONNECTIONS = CONNECTIONS_DOC;
const PHP_SOCKET = "/run/php/php8.2-fpm.sock";
const PHP_SCRIPT = `<?php
// bench:rollout: one request keeps a php-fpm worker busy for about 5 ms
usleep(5000);
echo "ok\\n";
`;

/** The base profile, and the same with the change applied. */
function profiles(change: Change): { before: object; after: object } {
  const base = {
    name: "rollout",
    backlog: 1024,
    pools: [{ name: "www", listen: PHP_SOCKET, pm: { style: "static", maxChildren: 8 } }],
    listeners: [{ listen: PORT, pool: "www" }],
  };
  const after = structuredClone(base) as Record<string, unknown> & typeof base;
  switch (change) {
    case "backlog":
      after.backlog = 2048;
      break;
    case "somaxconn":
      after.somaxconn = 4096;
      break;
    case "pm":
      after.pools[0].pm.maxChildren = 12;
      break;
    case "listen":
      (after.listeners[0] as Record<string, unknown>).backlog = 2048;
      break;
  }
  return { before: base, after };
}

/**
 * The load generator (written to the work dir, run with this machine's node inside a host's
 * network namespace). Prints one JSON line at the end.
 */
const LOADGEN = String.raw`
import http from "node:http";
const [port, path, connections, capSeconds, rate] = process.argv.slice(2).map((v, i) => (i === 1 ? v : Number(v)));
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const start = Date.now();
let end = start + capSeconds * 1000;
process.on("SIGTERM", () => (end = Math.min(end, Date.now()))); // the bench says when: finish and report
const perSecond = [];
const latencies = [];
const statuses = {};
const errors = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const slot = (t) => (perSecond[Math.floor((t - start) / 1000)] ??= { ok: 0, bad: 0, err: 0 });
let issued = 0;
/** Open loop at "rate" requests/s (0: closed loop); after a stall it does not catch up more than 1 s. */
async function paced() {
  if (!rate) return;
  const now = Date.now();
  if (start + (issued * 1000) / rate < now - 1000) issued = Math.floor(((now - start) * rate) / 1000);
  const wait = start + (issued++ * 1000) / rate - now;
  if (wait > 0) await sleep(wait);
}
function once() {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.get({ host: "127.0.0.1", port, path, agent, timeout: 5000 }, (res) => {
      res.on("data", () => {});
      res.on("end", () => resolve({ status: res.statusCode, ms: performance.now() - t0 }));
      res.on("error", (e) => resolve({ error: e.code || e.message }));
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", (e) => resolve({ error: e.code || e.message }));
  });
}
async function worker() {
  for (;;) {
    await paced();
    if (Date.now() >= end) return;
    const r = await once();
    const s = slot(Date.now());
    if (r.error) {
      s.err++;
      errors[r.error] = (errors[r.error] ?? 0) + 1;
      await sleep(10);
    } else if (r.status >= 200 && r.status < 300) {
      s.ok++;
      latencies.push(r.ms);
    } else {
      s.bad++;
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }
  }
}
await Promise.all(Array.from({ length: connections }, worker));
latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] : null);
for (let i = 0; i < perSecond.length; i++) perSecond[i] ??= { ok: 0, bad: 0, err: 0 };
process.stdout.write(JSON.stringify({ start, end: Date.now(), perSecond, p50: pct(50), p99: pct(99), statuses, errors }) + "\n");
agent.destroy();
`;

interface LoadResult {
  start: number;
  end: number;
  perSecond: { ok: number; bad: number; err: number }[];
  p50: number | null;
  p99: number | null;
  statuses: Record<string, number>;
  errors: Record<string, number>;
}

// ------------------------------------------------------------------ child processes

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Copy the child's output to our stderr as it comes. */
  echo?: boolean;
  /** Called with each complete line of stdout as it comes. */
  onLine?: (line: string) => void;
  timeoutMs: number;
  /** Cleanup steps are not interrupted by a signal. */
  cleanup?: boolean;
  /** Gets the child as soon as it is started. */
  onSpawn?: (child: ChildProcess) => void;
}

/** Children of the main flow; each leads its own process group (detached). */
const running = new Set<ChildProcess>();
let stopping: NodeJS.Signals | null = null;
let cleaningUp = false;

function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, sig); // the group this child leads: only what we started
  } catch {
    /* already gone */
  }
}

function run(cmd: string, args: string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolveRun) => {
    const child = spawn(cmd, args, { cwd: repo, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"], detached: true });
    if (!opts.cleanup) running.add(child);
    opts.onSpawn?.(child);
    let stdout = "";
    let stderr = "";
    let partial = "";
    child.stdout!.on("data", (d: Buffer) => {
      const text = d.toString();
      stdout += text;
      if (opts.echo) process.stderr.write(d);
      if (opts.onLine) {
        partial += text;
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        for (const l of lines) opts.onLine(l);
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (opts.echo) process.stderr.write(d);
    });
    child.stdin!.on("error", () => {});
    child.stdin!.end(opts.input ?? "");
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      stderr += `\n[bench:rollout: timed out after ${opts.timeoutMs / 1000} s; sent SIGTERM]\n`;
      signalGroup(child, "SIGTERM");
      killTimer = setTimeout(() => signalGroup(child, "SIGKILL"), 15_000);
    }, opts.timeoutMs);
    const finish = (code: number) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      running.delete(child);
      if (opts.onLine && partial) opts.onLine(partial);
      resolveRun({ code, stdout, stderr });
    };
    child.on("error", (e) => {
      stderr += String(e);
      finish(127);
    });
    child.on("close", (code, signal) => finish(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
  });
}

function checkStop(): void {
  if (stopping) throw new Error(`interrupted (${stopping})`);
}

function must(what: string, r: RunResult, echoed = false): RunResult {
  checkStop();
  if (r.code !== 0) {
    const output = `${r.stdout.trim()}\n${r.stderr.trim()}`.trim();
    const shown = echoed ? `(output above; its last lines:)\n${output.split("\n").slice(-12).join("\n")}` : output;
    throw new Error(`${what} failed (exit ${r.code}):\n${shown}`.trimEnd());
  }
  return r;
}

/** Waits `ms`, or less when a signal asks to stop (then throws). */
async function sleep(ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    checkStop();
    await new Promise<void>((r) => setTimeout(r, Math.min(200, until - Date.now())));
  }
  checkStop();
}

// ------------------------------------------------------------------ lab and pulumi

const work = mkdtempSync(join(os.tmpdir(), "backlog-rollout-"));
const labDir = join(work, "lab");
const stateDir = join(work, "state");
const pulumiHome = join(work, "pulumi-home");
const loadgenPath = join(work, "loadgen.mjs");
for (const d of [labDir, stateDir, pulumiHome]) mkdirSync(d);
writeFileSync(loadgenPath, LOADGEN);
const STACK = `bench-rollout-${process.pid}`;
/** The stack's config file: at the repo root, where Pulumi keeps it (removed by the teardown). */
const stackConfig = join(repo, `Pulumi.${STACK}.yaml`);
const NAMES = Array.from({ length: HOSTS }, (_, i) => `roll${i + 1}`);

const labEnv = { ...process.env, BACKLOG_LAB_DIR: labDir };
const pulumiEnv: NodeJS.ProcessEnv = {
  ...process.env,
  PULUMI_BACKEND_URL: `file://${stateDir}`,
  PULUMI_CONFIG_PASSPHRASE: "bench-only",
  PULUMI_HOME: pulumiHome, // never touches the project's selected stack or its logs
};

const lab = (args: string[], opts: Omit<RunOptions, "env">) => run(process.execPath, [join(repo, "scripts/lab/lab.ts"), ...args], { ...opts, env: labEnv });
const hostSh = (host: string, script: string, timeoutMs = 120_000) => lab(["exec", host, "--", "sh", "-c", script], { timeoutMs });
/** Pulumi in this project's environment, on the bench's own stack (state and Pulumi home in the temp dir). */
const pulumi = (args: string[], opts: Omit<RunOptions, "env">) =>
  run("bash", [join(repo, "scripts/pulumi.sh"), ...args, "--stack", STACK, "--non-interactive"], { ...opts, env: pulumiEnv });
const configSet = async (key: string, value: string) =>
  must(`pulumi config set ${key}`, await pulumi(["config", "set", key, value], { timeoutMs: 120_000 }));

/** The PID of a host's init (its namespaces), from the lab's state file. */
function leaderPid(host: string): number {
  const state = JSON.parse(readFileSync(join(labDir, "state.json"), "utf8")) as { hosts: { name: string; leader?: { pid: number } }[] };
  const pid = state.hosts.find((h) => h.name === host)?.leader?.pid;
  if (!pid) throw new Error(`no running init for ${host} in ${join(labDir, "state.json")}`);
  return pid;
}

// ------------------------------------------------------------------ the run

interface Apply {
  start?: number;
  end?: number;
  failed?: boolean;
}

interface Outcome {
  loads: Record<string, LoadResult>;
  actions: Record<string, Record<string, string>>;
  batches: string[][];
  applies: Record<string, Apply>;
  upStart: number;
  upEnd: number;
  upCode: number;
  upNotes: string[];
  firstDeploySeconds: number;
  profiles: { before: object; after: object };
}

const steps: { name: string; seconds: number }[] = [];
async function step<T>(name: string, f: () => Promise<T>): Promise<T> {
  checkStop();
  log(`== ${name}`);
  const t = performance.now();
  try {
    return await f();
  } finally {
    steps.push({ name, seconds: (performance.now() - t) / 1000 });
  }
}

let stackCreated = false;

async function bench(): Promise<Outcome> {
  const { before, after } = profiles(CHANGE);
  await step(`lab up (${HOSTS} host(s))`, async () => {
    must("lab up", await lab(["up", "--hosts", String(HOSTS), "--prefix", "roll"], { timeoutMs: 900_000, echo: true }), true);
  });
  await step("PHP script on every host", async () => {
    const script = `set -eu\nmkdir -p /var/www/html\nprintf '%s' '${PHP_SCRIPT.replace(/'/g, `'\\''`)}' > /var/www/html/fast.php\nchmod 0644 /var/www/html/fast.php`;
    await Promise.all(NAMES.map(async (h) => must(`writing fast.php on ${h}`, await hostSh(h, script))));
  });
  await step("pulumi stack init + config", async () => {
    stackCreated = true;
    must("pulumi stack init", await pulumi(["stack", "init"], { timeoutMs: 300_000 }));
    await configSet("backlog:inventory", join(labDir, "inventory.json"));
    await configSet("backlog:profile", JSON.stringify(before));
    if (MAX_PARALLEL !== undefined) await configSet("backlog:rollout", JSON.stringify({ maxParallel: MAX_PARALLEL }));
  });
  const firstDeploySeconds = await step("pulumi up (base profile)", async () => {
    const t = performance.now();
    must("pulumi up (base profile)", await pulumi(["up", "--yes", "--skip-preview"], { timeoutMs: 900_000, echo: true }), true);
    return (performance.now() - t) / 1000;
  });
  await step("check: every host answers GET /fast.php with 200", async () => {
    await Promise.all(NAMES.map(async (h) => {
      const r = must(`curl on ${h}`, await hostSh(h, `curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:${PORT}${PATH}`));
      if (r.stdout.trim() !== "200") throw new Error(`${h}: GET ${PATH} answered ${r.stdout.trim() || "nothing"}, not 200`);
    }));
  });
  await configSet("backlog:profile", JSON.stringify(after));

  const applies: Record<string, Apply> = Object.fromEntries(NAMES.map((n) => [n, {}]));
  const upNotes: string[] = [];
  let upStart = 0;
  let upEnd = 0;
  let upCode = 0;
  const loads = await step(`load on every host (${RATE ? `${RATE} requests/s` : "closed loop"}, ${CONNECTIONS} connections), pulumi up (the change: ${CHANGE}) after ${LEAD_SECONDS} s`, async () => {
    const children: ChildProcess[] = [];
    const loadStart = Date.now();
    // nsenter enters the network namespace only and execs node: the child is the generator itself.
    const gens = NAMES.map((h) => run("nsenter", [`--net=/proc/${leaderPid(h)}/ns/net`, process.execPath, loadgenPath,
      String(PORT), PATH, String(CONNECTIONS), String(LOAD_CAP_SECONDS), String(RATE)],
    { timeoutMs: (LOAD_CAP_SECONDS + 60) * 1000, onSpawn: (c) => children.push(c) }));
    await sleep(LEAD_SECONDS * 1000);
    upStart = Date.now();
    const up = await pulumi(["up", "--yes", "--skip-preview"], {
      timeoutMs: 900_000,
      echo: true,
      onLine: (line) => {
        const m = /backlog-(\S+?)-settings\s+(?:\*\*)?(updating failed|creating failed|updating|updated|creating|created)\b/.exec(line);
        if (m && applies[m[1]]) {
          const a = applies[m[1]];
          if (m[2] === "updating" || m[2] === "creating") a.start ??= Date.now();
          else a.end = Date.now();
          if (m[2].endsWith("failed")) a.failed = true;
        }
        if (/^\s*(warning|error):/i.test(line)) upNotes.push(line.trim());
      },
    });
    upEnd = Date.now();
    upCode = up.code;
    checkStop();
    if (up.code !== 0) log(`pulumi up failed (exit ${up.code}); the load goes on to the end, the report says so`);
    await sleep(Math.max(loadStart + DURATION * 1000 - Date.now(), upEnd + TAIL_SECONDS * 1000 - Date.now(), 0));
    for (const c of children) signalGroup(c, "SIGTERM"); // each generator finishes its requests and reports
    const results = await Promise.all(gens);
    const out: Record<string, LoadResult> = {};
    results.forEach((r, i) => {
      const line = r.stdout.trim().split("\n").pop() ?? "";
      if (r.code !== 0 || !line.startsWith("{")) throw new Error(`load generator on ${NAMES[i]} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
      out[NAMES[i]] = JSON.parse(line) as LoadResult;
    });
    return out;
  });
  const { actions, batches } = await step("stack outputs (actions, rollout)", async () => {
    const r = must("pulumi stack output", await pulumi(["stack", "output", "--json"], { timeoutMs: 120_000 }));
    const o = JSON.parse(r.stdout) as { actions?: Record<string, Record<string, string>>; rollout?: string[][] };
    return { actions: o.actions ?? {}, batches: o.rollout ?? [] };
  });
  return { loads, actions, batches, applies, upStart, upEnd, upCode, upNotes, firstDeploySeconds, profiles: { before, after } };
}

async function cleanup(): Promise<void> {
  cleaningUp = true;
  const t = performance.now();
  log("== teardown (load generators, stack, lab hosts, temp dir)");
  for (const c of running) signalGroup(c, "SIGTERM");
  const problems: string[] = [];
  if (stackCreated) {
    const rm = await pulumi(["stack", "rm", "--force", "--yes"], { timeoutMs: 300_000, cleanup: true });
    if (rm.code !== 0 && !/no stack named|not found/i.test(rm.stderr)) problems.push(`pulumi stack rm failed (exit ${rm.code}): ${rm.stderr.trim()}`);
    rmSync(stackConfig, { force: true });
  }
  const down = await run(process.execPath, [join(repo, "scripts/lab/lab.ts"), "down"], { env: labEnv, timeoutMs: 300_000, cleanup: true });
  if (down.code !== 0) problems.push(`lab down failed (exit ${down.code}): ${down.stderr.trim()}`);
  if (down.code === 0) rmSync(work, { recursive: true, force: true });
  else problems.push(`kept ${labDir} for 'BACKLOG_LAB_DIR=${labDir} npm run lab -- down'`);
  steps.push({ name: "teardown", seconds: (performance.now() - t) / 1000 });
  for (const p of problems) log(`teardown: ${p}`);
}

function onSignal(sig: NodeJS.Signals): void {
  if (stopping || cleaningUp) {
    log(`${sig}: tearing down, please wait`);
    stopping ??= sig;
    return;
  }
  stopping = sig;
  log(`${sig}: stopping the current step, then tearing down`);
  for (const c of running) signalGroup(c, sig === "SIGHUP" ? "SIGTERM" : sig);
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, onSignal);
process.on("uncaughtException", (e) => {
  log(`unexpected: ${e.stack ?? e.message}`);
  if (cleaningUp) return;
  void cleanup().finally(() => process.exit(1));
});

// ------------------------------------------------------------------ report

interface HostRow {
  host: string;
  batch: number | null;
  action: string;
  requests: number;
  failed: number;
  goodput: number;
  p50: number | null;
  p99: number | null;
  worst: { failures: number; second: number } | null;
  apply: string;
  errors: string;
}

const fmtMs = (v: number | null) => (v === null ? "n/a" : v < 10 ? v.toFixed(2) : v.toFixed(1));
const rel = (t: number | undefined, zero: number) => (t === undefined ? "?" : `${((t - zero) / 1000).toFixed(1)}`);

function hostRows(o: Outcome): HostRow[] {
  return NAMES.map((host) => {
    const l = o.loads[host];
    const seconds = (l.end - l.start) / 1000;
    const ok = l.perSecond.reduce((n, s) => n + s.ok, 0);
    const failedPerSecond = l.perSecond.map((s) => s.bad + s.err);
    const failed = failedPerSecond.reduce((a, b) => a + b, 0);
    const worstIdx = failedPerSecond.reduce((best, v, i) => (v > failedPerSecond[best] ? i : best), 0);
    const a = o.applies[host];
    const act = o.actions[host];
    const batch = o.batches.findIndex((b) => b.includes(host));
    return {
      host,
      batch: batch < 0 ? null : batch + 1,
      action: act ? Object.entries(act).map(([u, x]) => `${u} ${x}`).join(", ") || "none" : "n/a",
      requests: ok + failed,
      failed,
      goodput: seconds > 0 ? ok / seconds : 0,
      p50: l.p50,
      p99: l.p99,
      // seconds relative to the start of pulumi up
      worst: failed === 0 ? null : { failures: failedPerSecond[worstIdx], second: Math.round((l.start + worstIdx * 1000 - o.upStart) / 1000) },
      apply: a.start === undefined && a.end === undefined ? "no change" : `+${rel(a.start, o.upStart)} → +${rel(a.end, o.upStart)} s${a.failed ? " (failed)" : ""}`,
      errors: [...Object.entries(l.statuses).map(([s, n]) => `HTTP ${s}: ${n}`), ...Object.entries(l.errors).map(([e, n]) => `${e}: ${n}`)].join(", ") || "none",
    };
  });
}

function tableOf(rows: HostRow[]): string[][] {
  return [
    ["host", "batch", "action (stack output actions)", "applied (s after up start)", "requests", "failed", "goodput /s", "p50 ms", "p99 ms", "worst 1 s of failures", "failures by kind"],
    ...rows.map((r) => [
      r.host, r.batch === null ? "?" : String(r.batch), r.action, r.apply, String(r.requests), String(r.failed), r.goodput.toFixed(0),
      fmtMs(r.p50), fmtMs(r.p99), r.worst ? `${r.worst.failures} at +${r.worst.second} s` : "none", r.errors,
    ]),
  ];
}

/**
 * ASCII timeline, one column per second from the first load start: per host a goodput sparkline
 * (relative to the host's median second), a failure row (digit = failures that second, `#` ≥ 10)
 * and the apply window (`=`) of its settings resource; a ruler marks pulumi up (`^` start, `$` end).
 */
function timeline(o: Outcome): string {
  const zero = Math.min(...NAMES.map((h) => o.loads[h].start));
  const cols = Math.max(...NAMES.map((h) => Math.ceil((o.loads[h].end - zero) / 1000)));
  const col = (t: number) => Math.max(0, Math.min(cols - 1, Math.floor((t - zero) / 1000)));
  const bars = " ▁▂▃▄▅▆▇█";
  const label = (s: string) => s.padEnd(16);
  const lines: string[] = [];
  const ruler: string[] = Array.from({ length: cols }, (_, i) => (i % 10 === 0 ? "|" : " "));
  ruler[col(o.upStart)] = "^";
  ruler[col(o.upEnd)] = "$";
  lines.push(label("seconds") + Array.from({ length: cols }, (_, i) => (i % 10 === 0 ? String(i / 10 % 10) : " ")).join("") + "  (tens)");
  lines.push(label("pulumi up") + ruler.join(""));
  for (const h of NAMES) {
    const l = o.loads[h];
    const offset = Math.round((l.start - zero) / 1000);
    const ok = Array<number | null>(cols).fill(null);
    const bad = Array<number | null>(cols).fill(null);
    l.perSecond.forEach((s, i) => {
      if (offset + i < cols) {
        ok[offset + i] = s.ok;
        bad[offset + i] = s.bad + s.err;
      }
    });
    const sorted = ok.filter((v): v is number => v !== null).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] || 1;
    lines.push(label(`${h} goodput`) + ok.map((v) => (v === null ? " " : bars[Math.min(8, Math.round((v / median) * 6))])).join(""));
    lines.push(label(`${h} failures`) + bad.map((v) => (v === null ? " " : v === 0 ? "." : v >= 10 ? "#" : String(v))).join(""));
    const a = o.applies[h];
    const applyRow = Array<string>(cols).fill(" ");
    if (a.start !== undefined || a.end !== undefined) {
      for (let i = col(a.start ?? a.end!); i <= col(a.end ?? o.upEnd); i++) applyRow[i] = a.failed ? "x" : "=";
    }
    lines.push(label(`${h} applying`) + applyRow.join(""));
  }
  return lines.join("\n");
}

function gitDescription(): string {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repo, encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["status", "--porcelain", "--", "components", "templates", "index.ts"], { cwd: repo, encoding: "utf8" }).stdout
    .split("\n").filter(Boolean).length;
  return `commit ${head || "unknown"}${dirty ? ` with ${dirty} uncommitted change(s) under components/, templates/, index.ts (the working tree was used as it is)` : ""}`;
}

function report(o: Outcome, rows: HostRow[], wallSeconds: number): string {
  const upSeconds = ((o.upEnd - o.upStart) / 1000).toFixed(1);
  const loadEnd = Math.min(...NAMES.map((h) => o.loads[h].end));
  const md = [
    "# Rolling rollout under load (`npm run bench:rollout`)",
    "",
    `${new Date().toISOString()}; ${gitDescription()}; this machine: ${os.availableParallelism()} CPUs, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, kernel ${os.release()}.`,
    "",
    `**${HOSTS} lab host(s), change \`${CHANGE}\`, maxParallel ${MAX_PARALLEL ?? "default (adaptive)"}, load ${RATE ? `${RATE} requests/s` : "closed loop"} per host.** ` +
      `\`pulumi up --skip-preview\` of the change took ${upSeconds} s (exit ${o.upCode}); batches (stack output \`rollout\`): ` +
      `${o.batches.length ? o.batches.map((b) => `[${b.join(", ")}]`).join(" → ") : "n/a"}. First deploy of the base profile: ${o.firstDeploySeconds.toFixed(1)} s.`,
    ...(o.upEnd > loadEnd ? ["", `**Warning:** the change was still running when the load stopped (${((o.upEnd - loadEnd) / 1000).toFixed(1)} s after); use a longer \`--duration\`.`] : []),
    "",
    markdownTable(tableOf(rows)),
    "",
    "- requests: every completed attempt (responses and socket errors); failed: non-2xx responses plus socket errors (refused, reset, timeout);",
    "  goodput: 2xx responses per second of load; p50/p99: latency of the 2xx responses only.",
    "- worst 1 s of failures: the second with the most failures, counted from the start of `pulumi up`.",
    "- applied: when the CLI reported the host's settings resource as updating and as updated (seconds after `pulumi up` started).",
    "",
    "## Timeline",
    "",
    "One column per second. goodput: bar height relative to the host's median second; failures: `.` none,",
    "a digit = that many, `#` 10 or more; applying: the host's settings resource, from \"updating\" to \"updated\";",
    "pulumi up: `^` start, `$` end.",
    "",
    "```",
    timeline(o),
    "```",
    "",
    "## What ran",
    "",
    `- Load, per host: ${RATE ? `${RATE} requests/s (open loop, at most ${CONNECTIONS} in flight)` : `${CONNECTIONS} keep-alive connections in a closed loop`}, ` +
      `\`GET ${PATH}\` on port ${PORT}, 5 s timeout, 10 ms pause after a socket error; at least ${DURATION} s, and until ${TAIL_SECONDS} s after \`pulumi up\` ended.`,
    "  A Node.js generator run by this machine's node inside the host's network namespace (`nsenter --net`), so only the host's loopback is used;",
    "  latency is measured from when a request was sent (a request that waited for a free connection does not count that wait).",
    `- \`${PATH}\`: \`usleep(5000)\`, about 5 ms per request; the change started ${LEAD_SECONDS} s into the load.`,
    "- Base profile, then the change (stack config `backlog:profile`):",
    "",
    "```json",
    JSON.stringify(o.profiles.before),
    JSON.stringify(o.profiles.after),
    "```",
    ...(o.upNotes.length ? ["", "Warnings and errors of `pulumi up`:", "", "```", ...o.upNotes, "```"] : []),
    "",
    `Whole bench ${wallSeconds.toFixed(1)} s: ${steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join("; ")}.`,
    "",
  ].join("\n");
  mkdirSync(reportsDir, { recursive: true });
  const path = join(reportsDir, "rollout.md");
  writeFileSync(path, md);
  return path;
}

async function main(): Promise<number> {
  let outcome: Outcome | null = null;
  let failure: Error | null = null;
  try {
    outcome = await bench();
  } catch (e) {
    failure = e as Error;
  } finally {
    await cleanup();
  }
  const wallSeconds = (performance.now() - started) / 1000;
  if (stopping) {
    log(`interrupted by ${stopping}; torn down after ${wallSeconds.toFixed(1)} s`);
    return 128 + os.constants.signals[stopping];
  }
  if (failure || !outcome) {
    log(`FAILED: ${failure?.message ?? "no result"}`);
    log(`torn down; ${wallSeconds.toFixed(1)} s`);
    return 1;
  }
  const rows = hostRows(outcome);
  const path = report(outcome, rows, wallSeconds);
  process.stdout.write(`\nRolling rollout: ${HOSTS} host(s), change ${CHANGE}, maxParallel ${MAX_PARALLEL ?? "default"}, load ${RATE ? `${RATE}/s` : "closed loop"} per host; ` +
    `pulumi up ${((outcome.upEnd - outcome.upStart) / 1000).toFixed(1)} s (exit ${outcome.upCode}); batches ${outcome.batches.map((b) => `[${b.join(", ")}]`).join(" → ") || "n/a"}\n\n`);
  process.stdout.write(textTable(tableOf(rows)) + "\n\n" + timeline(outcome) + "\n\n");
  process.stdout.write(`report: ${path}\nwhole bench: ${wallSeconds.toFixed(1)} s (${steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join(", ")})\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    log(`unexpected: ${e.stack ?? e.message}`);
    process.exit(1);
  },
);
