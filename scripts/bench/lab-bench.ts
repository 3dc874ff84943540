/**
 * What the benches that start lab hosts and run `pulumi up` share (bench:incident, bench:rollout):
 * a work dir of their own (lab dir, Pulumi state and Pulumi home in a temp dir), child processes
 * each in its own process group with a hard time limit, steps with their durations, a stack of
 * their own at the repo root, and a teardown that always runs: on success, on failure, on Ctrl-C /
 * SIGTERM / SIGHUP and on an unexpected exception. It signals only the process groups it started.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's root. */
export const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Copy the child's output to our stderr as it comes (long steps: lab up, pulumi up). */
  echo?: boolean;
  /** Called with each complete line of stdout as it comes. */
  onLine?: (line: string) => void;
  /** Hard time limit, ms: then SIGTERM to the child's group, SIGKILL 15 s later. */
  timeoutMs: number;
  /** Cleanup steps are not interrupted by a signal. */
  cleanup?: boolean;
  /** Gets the child as soon as it is started. */
  onSpawn?: (child: ChildProcess) => void;
}

/** `commit abc1234 with N uncommitted change(s) …`: what code a report measured. */
export function gitDescription(): string {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repo, encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["status", "--porcelain", "--", "src", "templates", "index.ts"], { cwd: repo, encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean).length;
  return `commit ${head || "unknown"}${dirty ? ` with ${dirty} uncommitted change(s) under src/, templates/, index.ts (the working tree was used as it is)` : ""}`;
}

/** One bench run: its work dir, its children, its steps, its stack and its teardown. */
export class LabBench {
  /** Name in log lines, e.g. `bench:rollout`. */
  readonly tool: string;
  /** Pulumi stack of this run (created by the bench, removed by the teardown). */
  readonly stack: string;
  /** The stack's config file: at the repo root, where Pulumi keeps it (removed by the teardown). */
  readonly stackConfig: string;
  readonly work: string;
  readonly labDir: string;
  readonly stateDir: string;
  readonly pulumiHome: string;
  readonly labEnv: NodeJS.ProcessEnv;
  readonly pulumiEnv: NodeJS.ProcessEnv;
  /** Name and seconds of each step, in order (the teardown last). */
  readonly steps: { name: string; seconds: number }[] = [];
  /** Set once `pulumi stack init` may have run: the teardown then removes the stack. */
  stackCreated = false;
  /** The signal that asked to stop, if any. */
  stopping: NodeJS.Signals | null = null;
  private cleaningUp = false;
  private readonly running = new Set<ChildProcess>();
  private readonly started = performance.now();

  /**
   * @param tool - Name in log lines (`bench:rollout`).
   * @param stack - The stack's name.
   * @param workPrefix - Prefix of the temp work dir (`backlog-rollout-`).
   */
  constructor(tool: string, stack: string, workPrefix: string) {
    this.tool = tool;
    this.stack = stack;
    this.stackConfig = join(repo, `Pulumi.${stack}.yaml`);
    this.work = mkdtempSync(join(os.tmpdir(), workPrefix));
    this.labDir = join(this.work, "lab");
    this.stateDir = join(this.work, "state");
    this.pulumiHome = join(this.work, "pulumi-home");
    for (const d of [this.labDir, this.stateDir, this.pulumiHome]) mkdirSync(d);
    this.labEnv = { ...process.env, BACKLOG_LAB_DIR: this.labDir };
    this.pulumiEnv = {
      ...process.env,
      PULUMI_BACKEND_URL: `file://${this.stateDir}`,
      PULUMI_CONFIG_PASSPHRASE: "bench-only",
      // Own Pulumi home: the bench never changes the project's selected stack or logs of others.
      PULUMI_HOME: this.pulumiHome,
    };
    // A closed stdout/stderr (e.g. `| head`) must not kill the bench before it tears down.
    process.stdout.on("error", () => {});
    process.stderr.on("error", () => {});
  }

  log(msg: string): void {
    process.stderr.write(`${this.tool}: ${msg}\n`);
  }

  /** Seconds since the bench started. */
  elapsed(): number {
    return (performance.now() - this.started) / 1000;
  }

  signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, sig); // the group this child leads (detached): only what we started
    } catch {
      /* already gone */
    }
  }

  /**
   * Runs a command in its own process group (so a terminal's Ctrl-C reaches us first and we decide
   * what to stop), with a hard time limit.
   */
  run(cmd: string, args: string[], opts: RunOptions): Promise<RunResult> {
    return new Promise((resolveRun) => {
      const child = spawn(cmd, args, { cwd: repo, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"], detached: true });
      if (!opts.cleanup) this.running.add(child);
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
        stderr += `\n[${this.tool}: timed out after ${opts.timeoutMs / 1000} s; sent SIGTERM]\n`;
        this.signalGroup(child, "SIGTERM");
        killTimer = setTimeout(() => this.signalGroup(child, "SIGKILL"), 15_000);
      }, opts.timeoutMs);
      const finish = (code: number) => {
        clearTimeout(timer);
        if (killTimer) clearTimeout(killTimer);
        this.running.delete(child);
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

  checkStop(): void {
    if (this.stopping) throw new Error(`interrupted (${this.stopping})`);
  }

  /** Throws with the output when a step failed (only its last `tail` lines when the output was already shown). */
  must(what: string, r: RunResult, echoed = false, tail = 12): RunResult {
    this.checkStop();
    if (r.code !== 0) {
      const output = `${r.stdout.trim()}\n${r.stderr.trim()}`.trim();
      const shown = echoed ? `(output above; its last lines:)\n${output.split("\n").slice(-tail).join("\n")}` : output;
      throw new Error(`${what} failed (exit ${r.code}):\n${shown}`.trimEnd());
    }
    return r;
  }

  /** Waits `ms`, or less when a signal asks to stop (then throws). */
  async sleep(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      this.checkStop();
      await new Promise<void>((r) => setTimeout(r, Math.min(200, until - Date.now())));
    }
    this.checkStop();
  }

  /** Runs one named step and records its duration. */
  async step<T>(name: string, f: () => Promise<T>): Promise<T> {
    this.checkStop();
    this.log(`== ${name}`);
    const t = performance.now();
    try {
      return await f();
    } finally {
      this.steps.push({ name, seconds: (performance.now() - t) / 1000 });
    }
  }

  /** The lab CLI on this bench's own lab dir. */
  lab(args: string[], opts: Omit<RunOptions, "env">): Promise<RunResult> {
    return this.run(process.execPath, [join(repo, "scripts/lab/lab.ts"), ...args], { ...opts, env: this.labEnv });
  }

  /** `lab exec HOST -- sh -c SCRIPT`. */
  hostSh(host: string, script: string, timeoutMs = 120_000, input?: string): Promise<RunResult> {
    return this.lab(["exec", host, "--", "sh", "-c", script], { timeoutMs, input });
  }

  /** The arguments {@link pulumi} adds: this bench's stack, never a prompt. */
  pulumiArgs(args: string[]): string[] {
    return [...args, "--stack", this.stack, "--non-interactive"];
  }

  /** Pulumi in this project's environment, on the bench's own stack (state and Pulumi home in the work dir). */
  pulumi(args: string[], opts: Omit<RunOptions, "env">): Promise<RunResult> {
    return this.run("bash", [join(repo, "scripts/pulumi.sh"), ...this.pulumiArgs(args)], { ...opts, env: this.pulumiEnv });
  }

  /**
   * Tears down: every child of the main flow (SIGTERM to its group), the stack and its config
   * file, the lab hosts, then the work dir (kept, and said so, when `lab down` failed).
   */
  async cleanup(): Promise<void> {
    this.cleaningUp = true;
    const t = performance.now();
    this.log("== teardown (children, stack, lab hosts, temp dir)");
    for (const c of this.running) this.signalGroup(c, "SIGTERM");
    const problems: string[] = [];
    if (this.stackCreated) {
      const rm = await this.pulumi(["stack", "rm", "--force", "--yes"], { timeoutMs: 300_000, cleanup: true });
      // A stack that was never created (init failed) is fine; the config file is removed below.
      if (rm.code !== 0 && !/no stack named|not found/i.test(rm.stderr)) problems.push(`pulumi stack rm failed (exit ${rm.code}): ${rm.stderr.trim()}`);
      rmSync(this.stackConfig, { force: true });
    }
    const down = await this.run(process.execPath, [join(repo, "scripts/lab/lab.ts"), "down"], { env: this.labEnv, timeoutMs: 300_000, cleanup: true });
    if (down.code !== 0) problems.push(`lab down failed (exit ${down.code}): ${down.stderr.trim()}`);
    if (down.code === 0) rmSync(this.work, { recursive: true, force: true });
    else problems.push(`kept ${this.labDir} for 'BACKLOG_LAB_DIR=${this.labDir} npm run lab -- down'`);
    this.steps.push({ name: "teardown", seconds: (performance.now() - t) / 1000 });
    for (const p of problems) this.log(`teardown: ${p}`);
  }

  private onSignal(sig: NodeJS.Signals): void {
    if (this.stopping || this.cleaningUp) {
      this.log(`${sig}: tearing down, please wait`);
      this.stopping ??= sig;
      return;
    }
    this.stopping = sig;
    this.log(`${sig}: stopping the current step, then tearing down`);
    for (const c of this.running) this.signalGroup(c, sig === "SIGHUP" ? "SIGTERM" : sig);
  }

  /**
   * Runs the bench: `bench()`, the teardown whatever happened, then `done(outcome, wall seconds)`
   * for its exit status; exits the process with it. Exit status 1 on failure, 128+N on signal N.
   * `beforeTeardown` runs first in the teardown (e.g. to note its commands for a report).
   */
  main<T>(bench: () => Promise<T>, done: (outcome: T, wallSeconds: number) => number, beforeTeardown?: () => void): void {
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, (s: NodeJS.Signals) => this.onSignal(s));
    const teardown = async () => {
      beforeTeardown?.();
      await this.cleanup();
    };
    process.on("uncaughtException", (e) => {
      this.log(`unexpected: ${e.stack ?? e.message}`);
      if (this.cleaningUp) return; // cleanup() keeps going; main() exits when it is done
      void teardown().finally(() => process.exit(1));
    });
    const flow = async (): Promise<number> => {
      let outcome: { value: T } | null = null;
      let failure: Error | null = null;
      try {
        outcome = { value: await bench() };
      } catch (e) {
        failure = e as Error;
      } finally {
        await teardown();
      }
      const wallSeconds = this.elapsed();
      if (this.stopping) {
        this.log(`interrupted by ${this.stopping}; torn down after ${wallSeconds.toFixed(1)} s`);
        return 128 + os.constants.signals[this.stopping];
      }
      if (failure || !outcome) {
        this.log(`FAILED: ${failure?.message ?? "no result"}`);
        this.log(`torn down; ${wallSeconds.toFixed(1)} s`);
        return 1;
      }
      return done(outcome.value, wallSeconds);
    };
    flow().then(
      (code) => process.exit(code),
      (e: Error) => {
        this.log(`unexpected: ${e.stack ?? e.message}`);
        process.exit(1);
      },
    );
  }
}

// ------------------------------------------------------------ timing helpers (bench:fleet)

/** One engine event of `pulumi up --json` (one JSON object a line) and when this process read it. */
export interface TimedEvent {
  /** ms since the epoch when the line arrived (the event's own `timestamp` has whole seconds only). */
  at: number;
  // Engine events are loosely typed JSON: the fields read here are checked where they are used.
  // biome-ignore lint/suspicious/noExplicitAny: engine events are loosely typed JSON (see above)
  event: Record<string, any>;
}

/** An `onLine` for {@link LabBench.run} that collects `pulumi … --json` events with their arrival time. */
export function collectEvents(into: TimedEvent[]): (line: string) => void {
  return (line: string) => {
    const at = Date.now();
    const text = line.trim();
    if (!text.startsWith("{")) return;
    try {
      into.push({ at, event: JSON.parse(text) });
    } catch {
      /* not an event line */
    }
  };
}

/** One SSH session as the host's sshd logged it (ms since the epoch; `end` undefined while open). */
export interface SshSession {
  host: string;
  start: number;
  end?: number;
}

/**
 * The SSH sessions a lab host's sshd logged (its journal, `-o short-unix`): "Accepted publickey"
 * starts one, "session closed" / "Disconnected from user" of the same sshd PID ends it. Lab hosts
 * share this machine's clock, so the times compare with `Date.now()`.
 */
export async function sshSessions(bench: LabBench, host: string): Promise<SshSession[]> {
  const r = bench.must(`journal of ${host}`, await bench.hostSh(host, "journalctl -q -o short-unix --no-pager -t sshd"));
  const open = new Map<string, SshSession>();
  const sessions: SshSession[] = [];
  for (const line of r.stdout.split("\n")) {
    const m = line.match(/^(\d+(?:\.\d+)?) \S+ sshd\[(\d+)\]: (.*)$/);
    if (!m) continue;
    const [, ts, pid, msg] = m;
    const at = Number(ts) * 1000;
    if (msg.startsWith("Accepted publickey")) {
      const s: SshSession = { host, start: at };
      open.set(pid, s);
      sessions.push(s);
    } else if (/session closed for user|^Disconnected from user/.test(msg)) {
      const s = open.get(pid);
      if (s && s.end === undefined) s.end = at;
    }
  }
  return sessions;
}

/** Fixed-width text table (first row: the header). */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (cell ?? "").padEnd(widths[c]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * A Pulumi project with an empty program and the deployment program's runtime options
 * (Pulumi.yaml's `runtime`), in `dir`, using the repo's node_modules: what `pulumi up` costs with
 * no resources at all. Returns a runner of `pulumi ARGS` in it (own stack `empty`, the bench's
 * state and Pulumi home).
 */
export function emptyProgram(bench: LabBench, dir: string): (args: string[], opts: Omit<RunOptions, "env">) => Promise<RunResult> {
  mkdirSync(dir, { recursive: true });
  const runtime = readFileSync(join(repo, "Pulumi.yaml"), "utf8").split("\n");
  const from = runtime.findIndex((l) => /^runtime:/.test(l));
  let to = from + 1;
  while (to < runtime.length && (/^\s/.test(runtime[to]) || runtime[to] === "")) to++;
  writeFileSync(join(dir, "Pulumi.yaml"), ["name: bench-empty", ...runtime.slice(from, to), ""].join("\n"));
  // The same language as the deployment program: JavaScript when it runs compiled (main.js), else TypeScript.
  const typescript = !runtime.slice(from, to).some((l) => /^\s*typescript:\s*false\b/.test(l));
  writeFileSync(join(dir, typescript ? "index.ts" : "index.js"), typescript ? "export {};\n" : "exports.empty = true;\n");
  writeFileSync(join(dir, "package.json"), '{ "name": "bench-empty", "private": true }\n');
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
  const script = 'cd "$1" && shift && exec bash "$0" "$@"';
  return (args, opts) =>
    bench.run("bash", ["-c", script, join(repo, "scripts/pulumi.sh"), dir, ...args, "--stack", "empty", "--non-interactive"], {
      ...opts,
      env: bench.pulumiEnv,
    });
}
