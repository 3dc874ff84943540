/**
 * Steady HTTP load on a lab host, shared by `npm run bench:rollout` and the integration tests of
 * rollouts (test/integration/rollout.test.ts): a Node.js generator that this machine's node runs
 * inside the host's network namespace only (`nsenter --net=/proc/<host init>/ns/net`), so it talks
 * to the host's loopback and nothing else.
 *
 * No imports but Node's own and no `import.meta`: the bench loads it as an ES module (Node's type
 * stripping), jest as CommonJS.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** What one generator does. */
export interface LoadOptions {
  /** TCP port on the host's loopback (127.0.0.1). */
  port: number;
  /** Request path, e.g. `/fast.php`. */
  path: string;
  /** Keep-alive connections, at most this many requests in flight. */
  connections: number;
  /** Requests per second, open loop; 0: closed loop (as fast as the connections go). */
  rate: number;
  /** Hard limit of the generator's run, seconds (SIGTERM ends it earlier: it then reports). */
  capSeconds: number;
}

/** Per-request time limit of the generator, milliseconds. */
export const REQUEST_TIMEOUT_MS = 5000;
/** Pause after a socket error, milliseconds (a refused connection would otherwise be retried thousands of times a second). */
export const ERROR_PAUSE_MS = 10;
/** At most this many failure timestamps are kept (the counts per second stay complete). */
export const MAX_FAILURE_TIMES = 50_000;

/**
 * The generator's source (an ES module for `node FILE PORT PATH CONNECTIONS CAP_SECONDS RATE`).
 * It counts every response and error per second (from its start), keeps the latency of each 2xx
 * response and the wall-clock time (ms since the epoch, this machine's clock) of each failure, and
 * prints one JSON line ({@link LoadResult}) when the cap is reached or on SIGTERM.
 */
export const LOADGEN_SOURCE = String.raw`
import http from "node:http";
const [port, path, connections, capSeconds, rate] = process.argv.slice(2).map((v, i) => (i === 1 ? v : Number(v)));
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const start = Date.now();
let end = start + capSeconds * 1000;
process.on("SIGTERM", () => (end = Math.min(end, Date.now()))); // the caller says when: finish and report
const perSecond = [];
const latencies = [];
const statuses = {};
const errors = {};
const failureTimes = [];
let failureTimesDropped = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const slot = (t) => (perSecond[Math.floor((t - start) / 1000)] ??= { ok: 0, bad: 0, err: 0 });
const failedAt = (t) => (failureTimes.length < ${MAX_FAILURE_TIMES} ? failureTimes.push(t) : failureTimesDropped++);
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
    const req = http.get({ host: "127.0.0.1", port, path, agent, timeout: ${REQUEST_TIMEOUT_MS} }, (res) => {
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
    const now = Date.now();
    const s = slot(now);
    if (r.error) {
      s.err++;
      failedAt(now);
      errors[r.error] = (errors[r.error] ?? 0) + 1;
      await sleep(${ERROR_PAUSE_MS});
    } else if (r.status >= 200 && r.status < 300) {
      s.ok++;
      latencies.push(r.ms);
    } else {
      s.bad++;
      failedAt(now);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }
  }
}
await Promise.all(Array.from({ length: connections }, worker));
latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] : null);
for (let i = 0; i < perSecond.length; i++) perSecond[i] ??= { ok: 0, bad: 0, err: 0 };
failureTimes.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({ start, end: Date.now(), perSecond, p50: pct(50), p99: pct(99), statuses, errors, failureTimes, failureTimesDropped }) + "\n");
agent.destroy();
`;

/** What a generator reports. */
export interface LoadResult {
  /** When it started and ended, ms since the epoch. */
  start: number;
  end: number;
  /** Per second from `start`: 2xx responses, other responses, socket errors (refused, reset, timeout). */
  perSecond: { ok: number; bad: number; err: number }[];
  /** Latency of the 2xx responses, ms (null: none). */
  p50: number | null;
  p99: number | null;
  /** Non-2xx responses by status, socket errors by code. */
  statuses: Record<string, number>;
  errors: Record<string, number>;
  /** When each failed request ended, ms since the epoch, sorted (the first {@link MAX_FAILURE_TIMES}). */
  failureTimes: number[];
  /** Failures beyond {@link MAX_FAILURE_TIMES}, not in `failureTimes`. */
  failureTimesDropped: number;
}

/** The command that runs a generator inside the network namespace of the process `nsPid` (a host's init). */
export function loadCommand(nsPid: number, loadgenFile: string, o: LoadOptions): { cmd: string; args: string[] } {
  // nsenter enters the network namespace only and execs node: the child is the generator itself.
  return {
    cmd: "nsenter",
    args: [`--net=/proc/${nsPid}/ns/net`, process.execPath, loadgenFile, String(o.port), o.path, String(o.connections), String(o.capSeconds), String(o.rate)],
  };
}

/** Parses a generator's output (its last line); throws naming the host when there is no result. */
export function parseLoad(host: string, code: number | null, stdout: string, stderr: string): LoadResult {
  const line = stdout.trim().split("\n").pop() ?? "";
  if (code !== 0 || !line.startsWith("{")) throw new Error(`load generator on ${host} failed (exit ${code}):\n${stdout}\n${stderr}`);
  return JSON.parse(line) as LoadResult;
}

/** Requests, failures and goodput of one generator's run. */
export interface LoadSummary {
  /** Every completed attempt (responses and socket errors). */
  requests: number;
  /** 2xx responses. */
  ok: number;
  /** Non-2xx responses plus socket errors. */
  failed: number;
  /** 2xx responses per second of load. */
  goodput: number;
  /** Failures per second from `start`. */
  failedPerSecond: number[];
  /** The second (index from `start`) with the most failures, or null without failures. */
  worstSecond: number | null;
}

/** Sums up a {@link LoadResult}. */
export function summarize(l: LoadResult): LoadSummary {
  const ok = l.perSecond.reduce((n, s) => n + s.ok, 0);
  const failedPerSecond = l.perSecond.map((s) => s.bad + s.err);
  const failed = failedPerSecond.reduce((a, b) => a + b, 0);
  const seconds = (l.end - l.start) / 1000;
  const worst = failedPerSecond.reduce((best, v, i) => (v > failedPerSecond[best] ? i : best), 0);
  return { requests: ok + failed, ok, failed, goodput: seconds > 0 ? ok / seconds : 0, failedPerSecond, worstSecond: failed === 0 ? null : worst };
}

/**
 * The periods in which a host was failing requests: failures closer than `gapMs` to each other are
 * one window. Times in ms since the epoch, `[first failure, last failure]`.
 */
export function failureWindows(l: LoadResult, gapMs = 1000): [number, number][] {
  const out: [number, number][] = [];
  for (const t of l.failureTimes) {
    const last = out.at(-1);
    if (last && t - last[1] <= gapMs) last[1] = t;
    else out.push([t, t]);
  }
  return out;
}

/** The PID of a lab host's init (whose namespaces are the host's), from the lab's state file in `labDir`. */
export function leaderPid(labDir: string, host: string): number {
  const file = join(labDir, "state.json");
  const state = JSON.parse(readFileSync(file, "utf8")) as { hosts: { name: string; leader?: { pid: number } }[] };
  const pid = state.hosts.find((h) => h.name === host)?.leader?.pid;
  if (!pid) throw new Error(`no running init for ${host} in ${file}`);
  return pid;
}
