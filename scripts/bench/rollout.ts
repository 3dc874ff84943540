/**
 * `npm run bench:rollout -- --hosts N [--change backlog|somaxconn|pm|listen|pool] [--max-parallel X] [--duration S] [--rate R]`
 * (project issue #11): what a change of the profile costs the requests of a fleet under load.
 *
 * 1. Starts N lab hosts (own lab dir in a temp dir, prefix `roll`), puts a PHP script that takes
 *    about 5 ms on each (`/var/www/html/fast.php`) and deploys the base profile with the real
 *    deployment program (index.ts) on a stack of its own, `bench-rollout-<pid>` (state and Pulumi
 *    home in the temp dir; its Pulumi.<stack>.yaml at the repo root until the teardown): backlog
 *    1024, pool www (static, 8 workers), nginx listener :8080.
 * 2. Starts one load generator per host (scripts/bench/loadgen.ts, shared with
 *    test/integration/rollout.test.ts): Node.js, run by this machine's node inside the host's
 *    network namespace only (`nsenter --net`), so it talks to the host's loopback, nothing else.
 *    `--rate` requests/s (default 200; 0: closed loop) over at most 20 keep-alive connections,
 *    GET /fast.php, 5 s timeout per request, 10 ms pause after a socket error (a refused
 *    connection would otherwise be retried thousands of times a second); it counts every
 *    response and error per second and keeps the latency of each 2xx response.
 * 3. Five seconds into the load it applies the change with `pulumi up --skip-preview` (the fleet
 *    rolls it out with `backlog:rollout`, `--max-parallel` when given) and notes when each host's
 *    settings resource started and finished (from the CLI's progress lines). The load lasts
 *    `--duration` seconds (default 35), or until 5 s after `pulumi up` ended when that is later.
 * 4. After the load: the backlogs of the php-fpm socket and of nginx's :8080 sockets (`ss`) on
 *    every host, then again after `systemctl restart php8.2-fpm nginx` (the files must keep them).
 * 5. Per host it prints: the action per service (stack output `actions`), its batch, requests,
 *    failed requests (non-2xx + socket errors), goodput (2xx/s), p50/p99 latency of the 2xx
 *    responses, the worst second of failures and the backlogs; writes reports/rollout.md with the
 *    table, this machine's load average and an ASCII timeline (goodput, failures and the apply
 *    window per host; one column per second, or per few seconds beyond 100 s).
 * 6. Always tears down (scripts/bench/lab-bench.ts), also on failure and on Ctrl-C / SIGTERM /
 *    SIGHUP: the load generators, the stack, the lab hosts and the temp dir. It signals only
 *    process groups it started.
 *
 * Exit status: 0 when the run completed (whatever the numbers), 1 on failure, 128+N on signal N.
 * Needs root on Linux (lab hosts). Progress goes to stderr, the table to stdout.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checkMaxParallel, type MaxParallel } from "../../src/core/rollout.ts";
import { markdownTable, textTable } from "./incident-report.ts";
import { LabBench, gitDescription, repo } from "./lab-bench.ts";
import { LOADGEN_SOURCE, type LoadResult, leaderPid, loadCommand, parseLoad, summarize } from "./loadgen.ts";

const reportsDir = join(repo, "reports");

// ------------------------------------------------------------------ arguments

const CHANGES = ["backlog", "somaxconn", "pm", "listen", "pool"] as const;
const CONNECTIONS_DOC = 20;
type Change = (typeof CHANGES)[number];

const USAGE = `usage: npm run bench:rollout -- --hosts N [--change ${CHANGES.join("|")}] [--max-parallel X] [--duration S] [--rate R]

  --hosts N          lab hosts, 1 to 30 (default 2)
  --change C         what the second deployment changes (default backlog):
                       backlog    the profile's backlog 1024 -> 2048 (kernel, php-fpm and nginx)
                       somaxconn  net.core.somaxconn 1024 -> 4096 only (the sockets keep 1024)
                       pm         pool www pm.max_children 8 -> 12 (no socket changes)
                       listen     the nginx listener's backlog= 1024 -> 2048 (php-fpm keeps 1024)
                       pool       a second pool, api on /run/php/api.sock (php-fpm opens it on reload)
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
if (!/^\d+$/.test(argv.duration!) || DURATION < 10 || DURATION > 600)
  usage(`--duration must be a whole number of seconds from 10 to 600, not "${argv.duration}"`);
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
    case "pool":
      (after.pools as object[]).push({ name: "api", listen: "/run/php/api.sock" });
      break;
  }
  return { before: base, after };
}

// ------------------------------------------------------------------ lab and pulumi

const STACK = `bench-rollout-${process.pid}`;
const bench = new LabBench("bench:rollout", STACK, "backlog-rollout-");
const log = (msg: string) => bench.log(msg);
const loadgenPath = join(bench.work, "loadgen.mjs");
writeFileSync(loadgenPath, LOADGEN_SOURCE);
const NAMES = Array.from({ length: HOSTS }, (_, i) => `roll${i + 1}`);
const configSet = async (key: string, value: string) =>
  bench.must(`pulumi config set ${key}`, await bench.pulumi(["config", "set", key, value], { timeoutMs: 120_000 }));

// ------------------------------------------------------------------ the run

interface Apply {
  start?: number;
  end?: number;
  failed?: boolean;
}

/** A host's listening sockets as `ss` shows them (Send-Q of a listener: its backlog). */
interface Sockets {
  php: number | null;
  /** One value per listening socket on the port (one per worker with `reuseport`). */
  nginx: number[];
  somaxconn: number | null;
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
  /** Per host: the sockets after `pulumi up`, and after a later `systemctl restart` of both services. */
  sockets: Record<string, { afterUp: Sockets; afterRestart: Sockets }>;
  /** This machine's load average (1, 5, 15 min) when the load started and when it ended. */
  loadavg: { start: number[]; end: number[] };
}

/** The backlogs the sockets must have after the change (from the profile after it). */
function expectedBacklogs(change: Change): { php: number; nginx: number } {
  return {
    backlog: { php: 2048, nginx: 2048 },
    somaxconn: { php: 1024, nginx: 1024 },
    pm: { php: 1024, nginx: 1024 },
    listen: { php: 1024, nginx: 2048 },
    pool: { php: 1024, nginx: 1024 },
  }[change];
}

const SOCKETS_SCRIPT = `set -eu
printf 'php %s\\n' "$(ss -H -l -n -x src ${PHP_SOCKET} | awk '{print $4}' | head -n 1)"
printf 'nginx %s\\n' "$(ss -H -l -n -t 'sport = :${PORT}' | awk '{print $3}' | tr '\\n' ' ')"
printf 'somaxconn %s\\n' "$(cat /proc/sys/net/core/somaxconn)"`;

async function readSockets(host: string): Promise<Sockets> {
  const out = bench.must(`ss on ${host}`, await bench.hostSh(host, SOCKETS_SCRIPT)).stdout;
  const field = (k: string) => (new RegExp(`^${k} (.*)$`, "m").exec(out)?.[1] ?? "").trim();
  const num = (v: string) => (/^\d+$/.test(v) ? Number(v) : null);
  return { php: num(field("php")), nginx: field("nginx").split(/\s+/).filter(Boolean).map(Number), somaxconn: num(field("somaxconn")) };
}

async function run(): Promise<Outcome> {
  const { before, after } = profiles(CHANGE);
  await bench.step(`lab up (${HOSTS} host(s))`, async () => {
    bench.must("lab up", await bench.lab(["up", "--hosts", String(HOSTS), "--prefix", "roll"], { timeoutMs: 900_000, echo: true }), true);
  });
  await bench.step("PHP script on every host", async () => {
    const script = `set -eu\nmkdir -p /var/www/html\nprintf '%s' '${PHP_SCRIPT.replace(/'/g, `'\\''`)}' > /var/www/html/fast.php\nchmod 0644 /var/www/html/fast.php`;
    await Promise.all(NAMES.map(async (h) => bench.must(`writing fast.php on ${h}`, await bench.hostSh(h, script))));
  });
  await bench.step("pulumi stack init + config", async () => {
    bench.stackCreated = true;
    bench.must("pulumi stack init", await bench.pulumi(["stack", "init"], { timeoutMs: 300_000 }));
    await configSet("backlog:inventory", join(bench.labDir, "inventory.json"));
    await configSet("backlog:profile", JSON.stringify(before));
    if (MAX_PARALLEL !== undefined) await configSet("backlog:rollout", JSON.stringify({ maxParallel: MAX_PARALLEL }));
  });
  const firstDeploySeconds = await bench.step("pulumi up (base profile)", async () => {
    const t = performance.now();
    bench.must("pulumi up (base profile)", await bench.pulumi(["up", "--yes", "--skip-preview"], { timeoutMs: 900_000, echo: true }), true);
    return (performance.now() - t) / 1000;
  });
  await bench.step("check: every host answers GET /fast.php with 200", async () => {
    await Promise.all(
      NAMES.map(async (h) => {
        const r = bench.must(`curl on ${h}`, await bench.hostSh(h, `curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:${PORT}${PATH}`));
        if (r.stdout.trim() !== "200") throw new Error(`${h}: GET ${PATH} answered ${r.stdout.trim() || "nothing"}, not 200`);
      }),
    );
  });
  await configSet("backlog:profile", JSON.stringify(after));

  const applies: Record<string, Apply> = Object.fromEntries(NAMES.map((n) => [n, {}]));
  const upNotes: string[] = [];
  let upStart = 0;
  let upEnd = 0;
  let upCode = 0;
  const loadavg = { start: os.loadavg(), end: [] as number[] };
  const loads = await bench.step(
    `load on every host (${RATE ? `${RATE} requests/s` : "closed loop"}, ${CONNECTIONS} connections), pulumi up (the change: ${CHANGE}) after ${LEAD_SECONDS} s`,
    async () => {
      const children: ChildProcess[] = [];
      const loadStart = Date.now();
      loadavg.start = os.loadavg();
      const gens = NAMES.map((h) => {
        const { cmd, args } = loadCommand(leaderPid(bench.labDir, h), loadgenPath, {
          port: PORT,
          path: PATH,
          connections: CONNECTIONS,
          capSeconds: LOAD_CAP_SECONDS,
          rate: RATE,
        });
        return bench.run(cmd, args, { timeoutMs: (LOAD_CAP_SECONDS + 60) * 1000, onSpawn: (c) => children.push(c) });
      });
      await bench.sleep(LEAD_SECONDS * 1000);
      upStart = Date.now();
      const up = await bench.pulumi(["up", "--yes", "--skip-preview"], {
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
      bench.checkStop();
      if (up.code !== 0) log(`pulumi up failed (exit ${up.code}); the load goes on to the end, the report says so`);
      await bench.sleep(Math.max(loadStart + DURATION * 1000 - Date.now(), upEnd + TAIL_SECONDS * 1000 - Date.now(), 0));
      loadavg.end = os.loadavg();
      for (const c of children) bench.signalGroup(c, "SIGTERM"); // each generator finishes its requests and reports
      const results = await Promise.all(gens);
      return Object.fromEntries(results.map((r, i) => [NAMES[i], parseLoad(NAMES[i], r.code, r.stdout, r.stderr)])) as Record<string, LoadResult>;
    },
  );
  const { actions, batches } = await bench.step("stack outputs (actions, rollout)", async () => {
    const r = bench.must("pulumi stack output", await bench.pulumi(["stack", "output", "--json"], { timeoutMs: 120_000 }));
    const o = JSON.parse(r.stdout) as { actions?: Record<string, Record<string, string>>; rollout?: string[][] };
    return { actions: o.actions ?? {}, batches: o.rollout ?? [] };
  });
  const sockets = await bench.step("ss on every host, then systemctl restart php8.2-fpm nginx and ss again", async () => {
    const afterUp = await Promise.all(NAMES.map(readSockets));
    await Promise.all(NAMES.map(async (h) => bench.must(`restart on ${h}`, await bench.hostSh(h, "systemctl restart php8.2-fpm nginx"))));
    const afterRestart = await Promise.all(NAMES.map(readSockets));
    return Object.fromEntries(NAMES.map((h, i) => [h, { afterUp: afterUp[i], afterRestart: afterRestart[i] }]));
  });
  return { loads, actions, batches, applies, upStart, upEnd, upCode, upNotes, firstDeploySeconds, profiles: { before, after }, sockets, loadavg };
}

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
  /** php-fpm/nginx backlogs (ss) after the change and after a later restart, and whether they are the profile's. */
  sockets: string;
}

const EXPECTED = expectedBacklogs(CHANGE);

function socketsOk(s: Sockets): boolean {
  return s.php === EXPECTED.php && s.nginx.length > 0 && s.nginx.every((n) => n === EXPECTED.nginx);
}

function socketsCell(s: { afterUp: Sockets; afterRestart: Sockets } | undefined): string {
  if (!s) return "n/a";
  const one = (x: Sockets) => `${x.php ?? "none"}/${[...new Set(x.nginx)].join(",") || "none"}${socketsOk(x) ? "" : " (NOT the profile's)"}`;
  return `${one(s.afterUp)}; ${one(s.afterRestart)}`;
}

const fmtMs = (v: number | null) => (v === null ? "n/a" : v < 10 ? v.toFixed(2) : v.toFixed(1));
const rel = (t: number | undefined, zero: number) => (t === undefined ? "?" : `${((t - zero) / 1000).toFixed(1)}`);

function hostRows(o: Outcome): HostRow[] {
  return NAMES.map((host) => {
    const l = o.loads[host];
    const { requests, failed, goodput, failedPerSecond, worstSecond } = summarize(l);
    const a = o.applies[host];
    const act = o.actions[host];
    const batch = o.batches.findIndex((b) => b.includes(host));
    return {
      host,
      batch: batch < 0 ? null : batch + 1,
      action: act
        ? Object.entries(act)
            .map(([u, x]) => `${u} ${x}`)
            .join(", ") || "none"
        : "n/a",
      requests,
      failed,
      goodput,
      p50: l.p50,
      p99: l.p99,
      // seconds relative to the start of pulumi up
      worst: worstSecond === null ? null : { failures: failedPerSecond[worstSecond], second: Math.round((l.start + worstSecond * 1000 - o.upStart) / 1000) },
      sockets: socketsCell(o.sockets[host]),
      apply:
        a.start === undefined && a.end === undefined ? "no change" : `+${rel(a.start, o.upStart)} → +${rel(a.end, o.upStart)} s${a.failed ? " (failed)" : ""}`,
      errors:
        [...Object.entries(l.statuses).map(([s, n]) => `HTTP ${s}: ${n}`), ...Object.entries(l.errors).map(([e, n]) => `${e}: ${n}`)].join(", ") || "none",
    };
  });
}

function tableOf(rows: HostRow[]): string[][] {
  return [
    [
      "host",
      "batch",
      "action (stack output actions)",
      "applied (s after up start)",
      "requests",
      "failed",
      "goodput /s",
      "p50 ms",
      "p99 ms",
      "worst 1 s of failures",
      "failures by kind",
      "backlog php/nginx (ss): after up; after restart",
    ],
    ...rows.map((r) => [
      r.host,
      r.batch === null ? "?" : String(r.batch),
      r.action,
      r.apply,
      String(r.requests),
      String(r.failed),
      r.goodput.toFixed(0),
      fmtMs(r.p50),
      fmtMs(r.p99),
      r.worst ? `${r.worst.failures} at +${r.worst.second} s` : "none",
      r.errors,
      r.sockets,
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
  const seconds = Math.max(...NAMES.map((h) => Math.ceil((o.loads[h].end - zero) / 1000)));
  // At most ~100 columns: a longer run puts several seconds in one column.
  const step = timelineStep(o);
  const cols = Math.ceil(seconds / step);
  const col = (t: number) => Math.max(0, Math.min(cols - 1, Math.floor((t - zero) / 1000 / step)));
  const bars = " ▁▂▃▄▅▆▇█";
  const label = (s: string) => s.padEnd(16);
  const lines: string[] = [];
  const ruler: string[] = Array.from({ length: cols }, (_, i) => (i % 10 === 0 ? "|" : " "));
  ruler[col(o.upStart)] = "^";
  ruler[col(o.upEnd)] = "$";
  const marks = Array<string>(cols).fill(" ");
  for (let i = 0; i < cols; i += 10) {
    const mark = String(i * step);
    if (i + mark.length <= cols) for (const [k, c] of [...mark].entries()) marks[i + k] = c;
  }
  lines.push(label("seconds") + marks.join(""));
  lines.push(label("pulumi up") + ruler.join(""));
  for (const h of NAMES) {
    const l = o.loads[h];
    const offset = Math.round((l.start - zero) / 1000);
    const ok = Array<number | null>(cols).fill(null);
    const bad = Array<number | null>(cols).fill(null);
    const n = Array<number>(cols).fill(0);
    l.perSecond.forEach((s, i) => {
      const c = Math.floor((offset + i) / step);
      if (c < cols) {
        ok[c] = (ok[c] ?? 0) + s.ok;
        bad[c] = (bad[c] ?? 0) + s.bad + s.err;
        n[c]++;
      }
    });
    const perSecond = ok.map((v, c) => (v === null ? null : v / n[c]));
    const sorted = perSecond.filter((v): v is number => v !== null).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] || 1;
    lines.push(label(`${h} goodput`) + perSecond.map((v) => (v === null ? " " : bars[Math.min(8, Math.round((v / median) * 6))])).join(""));
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

/** Seconds per column of the timeline: 1, or more so that it stays within about 100 columns. */
function timelineStep(o: Outcome): number {
  const zero = Math.min(...NAMES.map((h) => o.loads[h].start));
  const seconds = Math.max(...NAMES.map((h) => Math.ceil((o.loads[h].end - zero) / 1000)));
  return Math.max(1, Math.ceil(seconds / 100));
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
    ...(o.upEnd > loadEnd
      ? [
          "",
          `**Warning:** the change was still running when the load stopped (${((o.upEnd - loadEnd) / 1000).toFixed(1)} s after); use a longer \`--duration\`.`,
        ]
      : []),
    "",
    markdownTable(tableOf(rows)),
    "",
    "- requests: every completed attempt (responses and socket errors); failed: non-2xx responses plus socket errors (refused, reset, timeout);",
    "  goodput: 2xx responses per second of load; p50/p99: latency of the 2xx responses only.",
    "- worst 1 s of failures: the second with the most failures, counted from the start of `pulumi up`.",
    "- applied: when the CLI reported the host's settings resource as updating and as updated (seconds after `pulumi up` started).",
    `- backlog php/nginx (ss): Send-Q of the php-fpm socket and of each nginx :${PORT} socket, read after the load ended, then again after ` +
      `\`systemctl restart php8.2-fpm nginx\` on every host; the profile's after the change: ${EXPECTED.php}/${EXPECTED.nginx}.`,
    `- this machine's load average (1/5/15 min): ${o.loadavg.start.map((v) => v.toFixed(2)).join(" / ")} when the load started, ` +
      `${o.loadavg.end.map((v) => v.toFixed(2)).join(" / ")} when it ended (the load generators, the lab hosts and \`pulumi up\` share its ${os.availableParallelism()} CPUs).`,
    "",
    "## Timeline",
    "",
    `One column per ${timelineStep(o) === 1 ? "second" : `${timelineStep(o)} seconds`}. goodput: bar height relative to the host's median (per second); failures: \`.\` none,`,
    'a digit = that many, `#` 10 or more; applying: the host\'s settings resource, from "updating" to "updated";',
    "pulumi up: `^` start, `$` end; the first row: seconds since the first load started.",
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
    `Whole bench ${wallSeconds.toFixed(1)} s: ${bench.steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join("; ")}.`,
    "",
  ].join("\n");
  mkdirSync(reportsDir, { recursive: true });
  const path = join(reportsDir, "rollout.md");
  writeFileSync(path, md);
  return path;
}

bench.main(run, (outcome, wallSeconds) => {
  const rows = hostRows(outcome);
  const path = report(outcome, rows, wallSeconds);
  process.stdout.write(
    `\nRolling rollout: ${HOSTS} host(s), change ${CHANGE}, maxParallel ${MAX_PARALLEL ?? "default"}, load ${RATE ? `${RATE}/s` : "closed loop"} per host; ` +
      `pulumi up ${((outcome.upEnd - outcome.upStart) / 1000).toFixed(1)} s (exit ${outcome.upCode}); batches ${outcome.batches.map((b) => `[${b.join(", ")}]`).join(" → ") || "n/a"}\n\n`,
  );
  process.stdout.write(textTable(tableOf(rows)) + "\n\n" + timeline(outcome) + "\n\n");
  process.stdout.write(
    `report: ${path}\nwhole bench: ${wallSeconds.toFixed(1)} s (${bench.steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join(", ")})\n`,
  );
  return 0;
});
