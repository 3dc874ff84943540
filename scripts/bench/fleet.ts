/**
 * `npm run bench:fleet -- --hosts N [--compare] [--parallel P] [--max-parallel X] [--transpile-only] [--events DIR] [--profiling DIR]`: what one `pulumi up` costs per host.
 *
 * Starts N lab hosts (bookworm, own lab dir and stack: scripts/bench/lab-bench.ts) and deploys the
 * deployment program (index.ts) to them: first deploy, no change (`--skip-preview`) twice, no change as a
 * plain `pulumi up` (preview, then update), profile change (backlog 8192 -> 12288), then `pulumi
 * destroy`, after which every host is read to check it was given back. Per run: wall seconds, SSH
 * connections per host, counted on the hosts' side (sshd's journal), the peak resident memory of
 * `pulumi` and every process below it (engine, language host, program, dynamic provider; sampled
 * from /proc every 250 ms), the CPU seconds the run cost on the hosts (their cgroups) and on the
 * rest of the machine (Pulumi, ssh; /proc/stat), the size of the stack's state file afterwards, and, for the
 * `--skip-preview` runs, a phase breakdown from what is observable:
 *  - the engine events of `pulumi up --json`, timestamped here as each line arrives (engine start =
 *    until the prelude event; program start = until the language host says "Running program";
 *    host resources = first step of a host's settings resource to the last one's outputs);
 *  - the SSH sessions each host's sshd logged (start and end, ms): "ssh round k" is every host's
 *    k-th session of the run (round 1 is the probe; then the apply with its verification).
 *
 * `--compare` also runs, on the same hosts and before Pulumi touches them, "the floor": one `ssh`
 * per host, all in parallel, each doing everything in one script (sysctl drop-in + `sysctl -p`, the
 * pool's listen.backlog, an nginx listener on :8080 with backlog=, restart of php8.2-fpm and nginx,
 * check of both sockets' backlog with `ss`), for the first deploy and the change; and the no-op's
 * reference: an empty TypeScript program with the same runtime options (`pulumi up --skip-preview`)
 * plus one read-only ssh per host in parallel. The floor's changes are undone (untimed) before
 * Pulumi runs. Ratios are printed beside the totals.
 *
 * `--parallel P` is passed to every `pulumi up` (the engine's default is 4 per CPU: 8 here);
 * `--max-parallel X` sets `backlog:rollout` maxParallel (hosts per batch or "N%"; the library's
 * default is all hosts when nothing restarts, else 25 %); `--transpile-only` runs every Pulumi
 * program (also the empty one) with PULUMI_NODEJS_TRANSPILE_ONLY=true; `--events DIR` keeps each
 * run's events (JSON lines with the arrival time `at`); `--profiling DIR` passes `--profiling` to
 * the engine, which writes its CPU profile per run (`go tool pprof -top DIR/<run>.cpu`).
 * Always tears down (also on failure and on Ctrl-C). Progress on stderr, tables on stdout.
 */
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { LabBench, type SshSession, type TimedEvent, collectEvents, emptyProgram, formatTable, gitDescription, sshSessions } from "./lab-bench.ts";

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "3" },
    compare: { type: "boolean", default: false },
    parallel: { type: "string" },
    "max-parallel": { type: "string" },
    events: { type: "string" },
    "transpile-only": { type: "boolean", default: false },
    profiling: { type: "string" },
  },
});
const count = Number(values.hosts);
if (!Number.isInteger(count) || count < 1 || count > 100) {
  console.error(`bench:fleet: --hosts must be a whole number from 1 to 100, not "${values.hosts}"`);
  process.exit(2);
}
if (values.parallel !== undefined && !/^[1-9]\d*$/.test(values.parallel)) {
  console.error(`bench:fleet: --parallel must be a positive whole number, not "${values.parallel}"`);
  process.exit(2);
}
const parallelArgs = values.parallel ? ["--parallel", values.parallel] : [];
const maxParallel = values["max-parallel"];
if (maxParallel !== undefined && !/^([1-9]\d*|[1-9]\d?%|100%)$/.test(maxParallel)) {
  console.error(`bench:fleet: --max-parallel must be a number of hosts or "N%", not "${maxParallel}"`);
  process.exit(2);
}

const bench = new LabBench("bench:fleet", `bench-fleet-${process.pid}`, "backlog-bench-fleet-");
if (values["transpile-only"]) bench.pulumiEnv.PULUMI_NODEJS_TRANSPILE_ONLY = "true";
const names = Array.from({ length: count }, (_, i) => `fleet${i + 1}`);
const profile = (backlog: number) =>
  JSON.stringify({
    name: "bench",
    backlog,
    pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
    listeners: [{ listen: 8080, pool: "www" }],
  });

// ------------------------------------------------------------------ the floor

/** Everything in one script, for one host (bookworm paths), with backlog `$B`; originals kept once for the undo. */
const FLOOR_APPLY = String.raw`set -e
[ -e /root/floor-orig ] || { echo "$(sysctl -n net.core.somaxconn) $(sysctl -n net.ipv4.tcp_max_syn_backlog)" > /root/floor-orig; cp /etc/php/8.2/fpm/pool.d/www.conf /root/floor-www.conf; }
printf 'net.core.somaxconn = %s\nnet.ipv4.tcp_max_syn_backlog = %s\n' "$B" "$B" > /etc/sysctl.d/60-floor-backlog.conf
sysctl -q -p /etc/sysctl.d/60-floor-backlog.conf
{ grep -v 'listen\.backlog' /root/floor-www.conf; echo "listen.backlog = $B"; } > /etc/php/8.2/fpm/pool.d/www.conf
printf 'server {\n  listen 8080 backlog=%s;\n  location / { include fastcgi_params; fastcgi_pass unix:/run/php/php8.2-fpm.sock; }\n}\n' "$B" > /etc/nginx/sites-enabled/floor-8080
systemctl restart php8.2-fpm nginx
ss -Hltn 'sport = :8080' | grep -qw "$B" || { echo "nginx :8080 backlog is not $B" >&2; exit 1; }
ss -Hlx | grep -F /run/php/php8.2-fpm.sock | grep -qw "$B" || { echo "php-fpm socket backlog is not $B" >&2; exit 1; }
`;
const FLOOR_READ =
  "sysctl -n net.core.somaxconn net.ipv4.tcp_max_syn_backlog; ss -Hltnx; cat /etc/sysctl.d/*.conf /etc/php/8.2/fpm/pool.d/*.conf /etc/nginx/sites-enabled/* > /dev/null";
const FLOOR_UNDO = String.raw`set -e
read s y < /root/floor-orig
cp /root/floor-www.conf /etc/php/8.2/fpm/pool.d/www.conf
rm -f /etc/sysctl.d/60-floor-backlog.conf /etc/nginx/sites-enabled/floor-8080 /root/floor-orig /root/floor-www.conf
sysctl -q -w net.core.somaxconn="$s" net.ipv4.tcp_max_syn_backlog="$y"
systemctl restart php8.2-fpm nginx
`;

/** One `ssh` per host, all at once, running `script`; seconds until the last one ended, and the CPU it cost. */
async function everyHost(script: string, what: string): Promise<{ seconds: number; cpu: CpuSeconds }> {
  const ssh = (port: number) => [
    "-F",
    "none",
    "-i",
    join(bench.labDir, "id_ed25519"),
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${join(bench.labDir, "known_hosts")}`,
    "-o",
    "LogLevel=ERROR",
    "-p",
    String(port),
    "root@127.0.0.1",
    "sh",
    "-s",
  ];
  const t = performance.now();
  const meter = cpuMeter();
  const results = await Promise.all(ports.map((port) => bench.run("ssh", ssh(port), { input: script, timeoutMs: 300_000 })));
  const seconds = (performance.now() - t) / 1000;
  const cpu = meter();
  for (const [i, r] of results.entries()) bench.must(`${what} on ${names[i]}`, r);
  return { seconds, cpu };
}

/**
 * CPU seconds spent while a run went on: by the lab hosts (the sum of their cgroups' `cpu.stat`
 * usage: sshd, the scripts, systemd, php-fpm, nginx) and by the rest of the machine (its busy time
 * from /proc/stat minus the hosts': Pulumi's processes, the ssh clients, the bench itself).
 */
interface CpuSeconds {
  hosts: number;
  rest: number;
}

/** Starts measuring {@link CpuSeconds}; the returned function ends it. */
function cpuMeter(): () => CpuSeconds {
  const read = () => {
    const [user, nice, system, , , irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const busyUs = (user + nice + system + irq + softirq + steal) * 10_000; // USER_HZ 100
    const state = JSON.parse(readFileSync(join(bench.labDir, "state.json"), "utf8")) as { hosts: { cgroups?: string[] }[] };
    let hostsUs = 0;
    for (const h of state.hosts) {
      for (const dir of h.cgroups ?? []) {
        try {
          hostsUs += Number(/^usage_usec (\d+)$/m.exec(readFileSync(join(dir, "cpu.stat"), "utf8"))?.[1] ?? 0);
        } catch {
          // not the unified hierarchy's dir (no cpu.stat there)
        }
      }
    }
    return { busyUs, hostsUs };
  };
  const before = read();
  return () => {
    const after = read();
    const hosts = (after.hostsUs - before.hostsUs) / 1e6;
    return { hosts, rest: Math.max(0, (after.busyUs - before.busyUs) / 1e6 - hosts) };
  };
}

const cpuPair = (c: CpuSeconds) => `${c.hosts.toFixed(1)} / ${c.rest.toFixed(1)}`;

let ports: number[] = [];
let loadBefore = "";
let restored = "";

// ------------------------------------------------------------------ one pulumi up, observed

interface Observed {
  phase: string;
  seconds: number;
  events: TimedEvent[];
  started: number; // ms since the epoch
  ended: number;
  sessions: SshSession[][]; // per host, this run's sessions
  /** Peak resident memory of the run's processes (the engine, language host, program, providers), MiB. */
  memory: PeakMemory;
  /** Size of the stack's state file after the run, bytes (the engine writes it after each step). */
  stateBytes: number;
  /** CPU the run cost, on the hosts and on the rest of the machine. */
  cpu: CpuSeconds;
}

/** The stack's state file in the bench's file backend (0 when there is none). */
function stateBytes(): number {
  try {
    return statSync(join(bench.stateDir, ".pulumi", "stacks", "pulumi-backlog", `${bench.stack}.json`)).size;
  } catch {
    return 0;
  }
}

interface PeakMemory {
  /** Largest sum over the process tree at one sample. */
  totalMiB: number;
  /** Largest RSS each kind of process reached (engine, language host, program, dynamic provider, …). */
  byKind: Record<string, number>;
}

/** The kind of a process of a `pulumi` run, from its command line (NUL-separated, as in /proc). */
function processKind(cmdline: string): string {
  const argv = cmdline.split("\0").filter(Boolean);
  const name = argv[0]?.split("/").pop() ?? "";
  const all = argv.join(" ");
  if (name === "pulumi") return "engine";
  if (name.startsWith("pulumi-language-")) return "language host";
  if (/dynamic-provider/.test(all)) return "dynamic provider";
  if (/node/.test(name)) return /cmd\/run/.test(all) ? "program" : "other node";
  return name || "other";
}

/**
 * Samples the resident memory of `root` and every process below it (the engine starts its plugins
 * in process groups of their own, so the tree is followed by parent pid) every 250 ms from /proc,
 * until stopped. RSS counts shared pages in each process, so the total is an upper bound.
 */
function sampleTree(root: number): () => PeakMemory {
  const page = 4096;
  const peak: PeakMemory = { totalMiB: 0, byKind: {} };
  const sample = () => {
    const procs = new Map<number, { ppid: number; mib: number }>();
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        procs.set(Number(pid), { ppid: Number(fields[1]), mib: (Number(fields[21]) * page) / 2 ** 20 }); // fields 4 (ppid) and 24 (rss, pages)
      } catch {
        // the process ended between the listing and the read
      }
    }
    const below = (pid: number): boolean => {
      for (let p = pid, hops = 0; p > 1 && hops < 64; p = procs.get(p)?.ppid ?? 0, hops++) if (p === root) return true;
      return false;
    };
    let total = 0;
    for (const [pid, { mib }] of procs) {
      if (!below(pid)) continue;
      total += mib;
      try {
        const kind = processKind(readFileSync(`/proc/${pid}/cmdline`, "utf8"));
        peak.byKind[kind] = Math.max(peak.byKind[kind] ?? 0, mib);
      } catch {
        // ended meanwhile
      }
    }
    peak.totalMiB = Math.max(peak.totalMiB, total);
  };
  const timer = setInterval(sample, 250);
  return () => {
    clearInterval(timer);
    sample();
    return peak;
  };
}

async function journals(): Promise<SshSession[][]> {
  return Promise.all(names.map((n) => sshSessions(bench, n)));
}

async function observedUp(phase: string, backlog: number | undefined, preview: boolean): Promise<Observed> {
  if (backlog !== undefined) {
    bench.must("pulumi config set", await bench.pulumi(["config", "set", "backlog:profile", profile(backlog)], { timeoutMs: 60_000 }));
  }
  const events: TimedEvent[] = [];
  const started = Date.now();
  const t = performance.now();
  // backlog undefined: `pulumi destroy` (every host given back), observed the same way.
  const args = [backlog === undefined ? "destroy" : "up", "--yes", "--json", ...(preview ? [] : ["--skip-preview"]), ...parallelArgs];
  // The engine's own CPU profile (pprof) and trace, one prefix per run: `go tool pprof -top <prefix>.cpu`.
  if (values.profiling) {
    mkdirSync(values.profiling, { recursive: true });
    args.push("--profiling", join(resolve(values.profiling), phase.replace(/\W+/g, "-")));
  }
  let stopSampling: (() => PeakMemory) | undefined;
  const meter = cpuMeter();
  const r = await bench.pulumi(args, {
    timeoutMs: 1_800_000,
    onLine: collectEvents(events),
    onSpawn: (child) => {
      if (child.pid !== undefined) stopSampling = sampleTree(child.pid);
    },
  });
  const memory = stopSampling?.() ?? { totalMiB: 0, byKind: {} };
  const seconds = (performance.now() - t) / 1000;
  const cpu = meter();
  const ended = Date.now();
  bench.must(`pulumi ${args.join(" ")}`, r, false, 40);
  const all = await journals();
  const sessions = all.map((s) => s.filter((x) => x.start >= started && x.start <= ended));
  const total = sessions.reduce((a, s) => a + s.length, 0);
  bench.log(`${phase}: ${seconds.toFixed(1)} s, ${total} SSH connections`);
  if (values.events) {
    mkdirSync(values.events, { recursive: true });
    writeFileSync(join(values.events, `${phase.replace(/\W+/g, "-")}.jsonl`), events.map((e) => JSON.stringify({ at: e.at, ...e.event })).join("\n") + "\n");
  }
  return { phase, seconds, events, started, ended, sessions, memory, stateBytes: stateBytes(), cpu };
}

/** A step of a host's settings resource (the dynamic resource of each BacklogHost). */
const isHostStep = (e: TimedEvent, kind: string) => {
  const m = e.event[kind]?.metadata;
  return !!m && /^pulumi-nodejs:dynamic/.test(String(m.type ?? "")) && /-settings$/.test(String(m.urn ?? ""));
};

interface Round {
  start: number;
  end: number;
  hosts: number;
  median: number;
}

/** What one `--skip-preview` run shows, in seconds since `pulumi up` was started. */
interface Milestones {
  prelude?: number;
  stack?: number;
  fleet?: number;
  batches?: string;
  rounds: Round[];
  hostPre?: number;
  hostOut?: number;
  summary?: number;
  exit: number;
}

function milestones(o: Observed): Milestones {
  const rel = (ms: number | undefined) => (ms === undefined ? undefined : (ms - o.started) / 1000);
  const first = (f: (e: TimedEvent) => boolean) => rel(o.events.find(f)?.at);
  const last = (f: (e: TimedEvent) => boolean) => rel(o.events.filter(f).at(-1)?.at);
  const rounds: Round[] = [];
  for (let k = 0; ; k++) {
    const kth = o.sessions.map((s) => s[k]).filter((s): s is SshSession => !!s);
    if (!kth.length) break;
    const durations = kth.map((s) => ((s.end ?? o.ended) - s.start) / 1000).sort((a, b) => a - b);
    rounds.push({
      start: rel(Math.min(...kth.map((s) => s.start)))!,
      end: rel(Math.max(...kth.map((s) => s.end ?? o.ended)))!,
      hosts: kth.length,
      median: durations[Math.floor(durations.length / 2)],
    });
  }
  return {
    prelude: first((e) => "preludeEvent" in e.event),
    // The language host registers the stack as soon as Node.js and the SDK are up, before it loads the program.
    stack: first((e) => e.event.resourcePreEvent?.metadata?.type === "pulumi:pulumi:Stack"),
    fleet: first((e) => /BacklogFleet$/.test(String(e.event.resourcePreEvent?.metadata?.type ?? ""))),
    rounds,
    hostPre: first((e) => isHostStep(e, "resourcePreEvent")),
    hostOut: last((e) => isHostStep(e, "resOutputsEvent")),
    summary: first((e) => "summaryEvent" in e.event),
    exit: o.seconds,
    batches: o.events
      .map((e) => String(e.event.diagnosticEvent?.message ?? ""))
      .find((t) => /^rollout: /.test(t))
      ?.replace(/ \(.*/s, "")
      .trim(),
  };
}

function breakdown(o: Observed): [string, number | undefined][] {
  const m = milestones(o);
  const rows: [string, number | undefined][] = [
    ["engine start: prelude event", m.prelude],
    ["language host up: stack registered", m.stack],
    ["first component registered (BacklogFleet)", m.fleet],
  ];
  m.rounds.forEach((r, k) => {
    const what = k === 0 ? "probes" : "applies + verification";
    rows.push([`ssh round ${k + 1} (${what}): first session opens`, r.start]);
    rows.push([`ssh round ${k + 1}: last session closes (${r.hosts} hosts, median session ${r.median.toFixed(2)} s)`, r.end]);
  });
  rows.push(
    ["first host settings step starts (engine event)", m.hostPre],
    ["last host settings step done (engine event)", m.hostOut],
    ["summary event", m.summary],
    ["pulumi exits", m.exit],
  );
  return rows;
}

function phases(o: Observed): [string, number | undefined][] {
  const m = milestones(o);
  const d = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : b - a);
  const [r1, r2] = m.rounds;
  const lastDone = m.hostOut ?? r2?.end ?? r1?.end;
  return [
    ["engine start (spawn -> prelude)", m.prelude],
    ["language host + Node.js + SDK (prelude -> stack registered)", d(m.prelude, m.stack)],
    ["load the program, build its components (stack -> BacklogFleet registered)", d(m.stack, m.fleet)],
    ["BacklogFleet registered -> first probe opens", d(m.fleet, r1?.start)],
    ["probes (round 1: first opens -> last closes)", d(r1?.start, r1?.end)],
    ["last probe closes -> first host step starts (provider start, check, diff)", d(r1?.end, m.hostPre)],
    ["last probe closes -> first apply opens", d(r1?.end, r2?.start)],
    ["applies + verification (round 2: first opens -> last closes)", d(r2?.start, r2?.end)],
    ["host steps in the engine (first starts -> last done)", d(m.hostPre, m.hostOut)],
    ["last host work -> summary event", d(lastDone, m.summary)],
    ["summary -> exit", d(m.summary, m.exit)],
  ];
}

// ------------------------------------------------------------------ the run

interface Outcome {
  runs: Observed[];
  floor?: { first: number; change: number; read: number; empty: number; cpu: { first: CpuSeconds; change: CpuSeconds; read: CpuSeconds } };
  labUp: number;
}

async function main(): Promise<Outcome> {
  loadBefore = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
  bench.log(`${count} hosts; ${gitDescription()}; load average ${loadBefore}`);
  const labT = performance.now();
  await bench.step("lab up", async () => {
    bench.must("lab up", await bench.lab(["up", "--hosts", String(count), "--prefix", "fleet"], { timeoutMs: 900_000, echo: true }), true);
  });
  const labUp = (performance.now() - labT) / 1000;
  const inventory = JSON.parse(readFileSync(join(bench.labDir, "inventory.json"), "utf8")) as { port: number }[];
  ports = inventory.map((h) => h.port);

  let floor: Outcome["floor"];
  if (values.compare) {
    floor = await bench.step("the floor", async () => {
      const firstRun = await everyHost(`B=8192\n${FLOOR_APPLY}`, "floor first deploy");
      const first = firstRun.seconds;
      bench.log(`floor first deploy: ${first.toFixed(1)} s`);
      const changeRun = await everyHost(`B=12288\n${FLOOR_APPLY}`, "floor change");
      const change = changeRun.seconds;
      bench.log(`floor change: ${change.toFixed(1)} s`);
      const readRun = await everyHost(FLOOR_READ, "floor read-only");
      const read = readRun.seconds;
      bench.log(`floor read-only ssh: ${read.toFixed(1)} s`);
      await everyHost(FLOOR_UNDO, "floor undo");
      const empty = emptyProgram(bench, join(bench.work, "empty"));
      bench.must("empty stack init", await empty(["stack", "init"], { timeoutMs: 120_000 }));
      bench.must("empty up (warm-up)", await empty(["up", "--yes", "--skip-preview"], { timeoutMs: 300_000 }));
      const t = performance.now();
      bench.must("empty up", await empty(["up", "--yes", "--skip-preview", "--json"], { timeoutMs: 300_000 }));
      const emptyS = (performance.now() - t) / 1000;
      bench.log(`empty program up: ${emptyS.toFixed(1)} s`);
      return { first, change, read, empty: emptyS, cpu: { first: firstRun.cpu, change: changeRun.cpu, read: readRun.cpu } };
    });
  }

  bench.stackCreated = true;
  bench.must("stack init", await bench.pulumi(["stack", "init"], { timeoutMs: 120_000 }));
  bench.must("config", await bench.pulumi(["config", "set", "backlog:inventory", join(bench.labDir, "inventory.json")], { timeoutMs: 60_000 }));
  if (maxParallel !== undefined) {
    const rollout = JSON.stringify({ maxParallel: /^\d+$/.test(maxParallel) ? Number(maxParallel) : maxParallel });
    bench.must("config rollout", await bench.pulumi(["config", "set", "backlog:rollout", rollout], { timeoutMs: 60_000 }));
  }
  const runs: Observed[] = [];
  for (const [phase, backlog, preview] of [
    ["first deploy", 8192, false],
    ["no change", 8192, false],
    // The first no-op after a deploy records each host once (the probe saw a new state generation);
    // the next one writes nothing: both are what an operator sees.
    ["no change, again", 8192, false],
    ["no change, plain up (preview + update)", 8192, true],
    ["profile change", 12288, false],
  ] as const) {
    runs.push(await bench.step(phase, () => observedUp(phase, backlog, preview)));
  }
  // Destroy gives every host back; the hosts are then read here, independently of the run.
  runs.push(await bench.step("destroy", () => observedUp("destroy", undefined, false)));
  restored = await bench.step("check the hosts were given back", async () => {
    const wrong: string[] = [];
    for (const n of names) {
      const r = await bench.hostSh(n, "cat /proc/sys/net/core/somaxconn; [ -e /var/lib/pulumi-backlog ] && echo state-left || echo clean");
      const [somaxconn, state] = r.stdout.trim().split("\n");
      if (r.code !== 0 || somaxconn !== "4096" || state !== "clean") wrong.push(`${n}: somaxconn ${somaxconn}, ${state}`);
    }
    if (wrong.length) throw new Error(`destroy did not give back ${wrong.length} of ${count} hosts: ${wrong.slice(0, 5).join("; ")}`);
    return `all ${count} hosts back to somaxconn 4096 with no state left`;
  });
  return { runs, floor, labUp };
}

bench.main(main, (o, wall) => {
  const conn = (r: Observed) => {
    const per = r.sessions.map((s) => s.length);
    const total = per.reduce((a, b) => a + b, 0);
    return [`${Math.min(...per)}/${(total / count).toFixed(1)}/${Math.max(...per)}`, String(total)];
  };
  const f = o.floor;
  const ref: Record<string, [string, number] | undefined> = f
    ? {
        "first deploy": ["floor first deploy", f.first],
        "profile change": ["floor change (restarts)", f.change],
        "no change": ["empty program + read-only ssh", f.empty + f.read],
        "no change, again": ["empty program + read-only ssh", f.empty + f.read],
        "no change, plain up (preview + update)": ["empty program + read-only ssh", f.empty + f.read],
      }
    : {};
  const rows = [
    [
      "RUN",
      "HOSTS",
      "WALL S",
      "SSH CONN/HOST min/avg/max",
      "TOTAL CONN",
      "PEAK MIB",
      "STATE KB",
      "CPU S HOSTS",
      "CPU S REST",
      ...(f ? ["REFERENCE", "REF S", "RATIO"] : []),
    ],
  ];
  for (const r of o.runs) {
    const x = ref[r.phase];
    rows.push([
      r.phase,
      String(count),
      r.seconds.toFixed(1),
      ...conn(r),
      r.memory.totalMiB.toFixed(0),
      (r.stateBytes / 1024).toFixed(0),
      r.cpu.hosts.toFixed(1),
      r.cpu.rest.toFixed(1),
      ...(f ? [x?.[0] ?? "", x ? x[1].toFixed(1) : "", x ? `${(r.seconds / x[1]).toFixed(2)}x` : ""] : []),
    ]);
  }
  const options = [
    values.parallel && `pulumi up --parallel ${values.parallel}`,
    maxParallel && `backlog:rollout maxParallel ${maxParallel}`,
    values["transpile-only"] && "PULUMI_NODEJS_TRANSPILE_ONLY=true",
    // Engine settings from the environment that change step generation, shown so a table says what it measured.
    ...["PULUMI_PARALLEL_DIFF", "PULUMI_SKIP_CHECKPOINTS"].filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]}`),
  ].filter(Boolean);
  console.log(`\nbench:fleet, ${count} hosts${options.length ? `, ${options.join(", ")}` : ""}; load average before ${loadBefore} (${gitDescription()})\n`);
  console.log(formatTable(rows));
  if (f) {
    console.log(
      `\nfloor: first deploy ${f.first.toFixed(1)} s, change ${f.change.toFixed(1)} s, read-only ssh ${f.read.toFixed(1)} s; empty program \`pulumi up --skip-preview\` ${f.empty.toFixed(1)} s\n` +
        `floor CPU seconds (hosts / rest of the machine): first deploy ${cpuPair(f.cpu.first)}, change ${cpuPair(f.cpu.change)}, read-only ssh ${cpuPair(f.cpu.read)}`,
    );
  }
  console.log(`\nafter destroy: ${restored}`);
  console.log(
    "\npeak resident memory by process kind (MiB, largest single process of each kind; PEAK MIB above is the largest sum at one sample, RSS, shared pages counted in each):\n",
  );
  const kinds = [...new Set(o.runs.flatMap((r) => Object.keys(r.memory.byKind)))].sort();
  console.log(
    formatTable([
      ["KIND", ...o.runs.map((r) => r.phase.toUpperCase())],
      ...kinds.map((k) => [k, ...o.runs.map((r) => (r.memory.byKind[k] === undefined ? "-" : r.memory.byKind[k].toFixed(0)))]),
    ]),
  );
  const skip = o.runs.filter((r) => !r.phase.includes("plain") && r.phase !== "destroy");
  console.log("\nphases of each `pulumi up --skip-preview` (seconds):\n");
  const prow = phases(skip[0]).map(([label]) => [label]);
  for (const r of skip) {
    for (const [i, [, v]] of phases(r).entries()) prow[i].push(v === undefined ? "-" : v.toFixed(2));
  }
  console.log(formatTable([["PHASE", ...skip.map((r) => r.phase.toUpperCase())], ...prow, ["wall", ...skip.map((r) => r.seconds.toFixed(2))]]));
  for (const r of skip) {
    const b = milestones(r).batches;
    if (b) console.log(`${r.phase}: ${b}`);
  }
  console.log("\nmilestones (seconds since `pulumi up` started):\n");
  for (const r of skip) {
    console.log(`${r.phase}:`);
    console.log(
      formatTable([["MILESTONE", "AT S"], ...breakdown(r).map(([label, at]) => [label, at === undefined ? "-" : at.toFixed(2)])]).replace(/^/gm, "  "),
    );
  }
  for (const r of o.runs.filter((x) => x.phase.includes("plain"))) {
    console.log(`\n${r.phase}: ${r.seconds.toFixed(2)} s; its SSH rounds (every host's k-th session; seconds since it started):`);
    for (const [k, x] of milestones(r).rounds.entries()) {
      console.log(
        `  round ${k + 1}: ${x.start.toFixed(2)} -> ${x.end.toFixed(2)} (${(x.end - x.start).toFixed(2)} s, ${x.hosts} hosts, median session ${x.median.toFixed(2)} s)`,
      );
    }
  }
  console.log(
    `\nlab up ${o.labUp.toFixed(1)} s; bench wall ${wall.toFixed(1)} s; steps: ${bench.steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join(", ")}`,
  );
  console.log(
    "(timings from `pulumi up --json` events as they arrived, and the hosts' sshd journals; a plain `pulumi up` runs the program twice, preview and update.)",
  );
  return 0;
});
