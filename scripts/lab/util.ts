/**
 * Small helpers shared by the lab scripts: running commands, identifying and
 * stopping processes by PID (never by name), file locks and atomic writes.
 * Node built-ins only.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";

export function log(message: string): void {
  process.stderr.write(`lab: ${message}\n`);
}

/**
 * Says, before it happens, that the lab changes something on this machine itself (a package, a
 * sysctl, the root fs cache): one line per change, all listed in scripts/lab/README.md.
 */
export function announce(change: string): void {
  process.stderr.write(`lab: changing this machine: ${change}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs a command to completion and returns its stdout; throws with its output on failure. */
export function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", input, maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const output = `${r.stderr ?? ""}${r.stdout ?? ""}`.trim();
    throw new Error(`\`${[cmd, ...args].join(" ")}\` failed (exit ${r.status ?? r.signal}):\n${output}`);
  }
  return r.stdout;
}

export interface Result {
  code: number | null;
  output: string; // stdout and stderr, interleaved
}

/** Runs a command without blocking the event loop (so several hosts progress in parallel). */
export function runAsync(cmd: string, args: string[], timeoutMs = 30_000): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", (e) => resolve({ code: null, output: output + e.message }));
    child.on("close", (code) => resolve({ code, output }));
  });
}

/**
 * Starts a long-running process in its own session (so it outlives this CLI and
 * is not hit by a Ctrl-C to it), with stdout and stderr appended to `logFile`.
 */
export function spawnDetached(cmd: string, args: string[], logFile: string): Proc {
  const fd = fs.openSync(logFile, "a");
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd] });
    child.unref();
    const proc = child.pid === undefined ? undefined : identify(child.pid);
    if (!proc) throw new Error(`could not start ${cmd} (see ${logFile})`);
    return proc;
  } finally {
    fs.closeSync(fd);
  }
}

/** A process identified by PID and start time, so a reused PID is never mistaken for it. */
export interface Proc {
  pid: number;
  start: string;
}

/** Fields of /proc/PID/stat after the command name: [state, ppid, ...]. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

export function identify(pid: number): Proc | undefined {
  const f = statFields(pid);
  return f && f[0] !== "Z" ? { pid, start: f[19] } : undefined;
}

/** True while that very process (same PID and start time) runs and is not a zombie. */
export function alive(p: Proc | undefined): p is Proc {
  if (!p) return false;
  const f = statFields(p.pid);
  return !!f && f[0] !== "Z" && f[19] === p.start;
}

/** PIDs of the direct children of `pid` (scans /proc: no /proc/PID/task/TID/children here). */
export function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (/^\d+$/.test(entry) && statFields(Number(entry))?.[1] === String(pid)) kids.push(Number(entry));
  }
  return kids;
}

/** All descendants of `pid`, deepest last. */
export function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  for (const kid of childrenOf(pid)) out.push(kid, ...descendantsOf(kid));
  return out;
}

export function signal(p: Proc | undefined, sig: NodeJS.Signals): void {
  if (!alive(p)) return;
  try {
    process.kill(p.pid, sig);
  } catch {
    // already gone
  }
}

/** Waits until none of `procs` is alive; returns false on timeout. */
export async function waitGone(procs: (Proc | undefined)[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (procs.some(alive)) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL and wait again. */
export async function terminate(p: Proc | undefined, graceMs = 5_000): Promise<void> {
  signal(p, "SIGTERM");
  if (await waitGone([p], graceMs)) return;
  signal(p, "SIGKILL");
  await waitGone([p], 5_000);
}

export interface Lock {
  fd: number; // pass it to a child (as an extra stdio fd) to keep the lock held while it runs
  release(): void;
}

/**
 * Takes an exclusive lock on `path` (flock(2), via util-linux flock on an
 * inherited descriptor) that holds until `release()` or until this process
 * (and any child given `fd`) exits, so a crashed holder never leaves a stale lock.
 */
export function lockFile(path: string, what: string): Lock {
  const fd = fs.openSync(path, "a");
  const tryLock = (...flags: string[]) => spawnSync("flock", [...flags, "3"], { stdio: ["ignore", "ignore", "inherit", fd] }).status === 0;
  if (!tryLock("-n")) {
    log(`waiting for ${what} (lock ${path})`);
    if (!tryLock("-x")) throw new Error(`could not lock ${path}`);
  }
  return { fd, release: () => fs.closeSync(fd) };
}

/**
 * Like lockFile, but waits without blocking the event loop (so builds running meanwhile in this
 * process keep printing progress), saying every 30 s that it still waits.
 */
export async function lockFileAsync(path: string, what: string): Promise<Lock> {
  const fd = fs.openSync(path, "a");
  const flock = (...flags: string[]) =>
    new Promise<boolean>((resolve) => {
      const child = spawn("flock", [...flags, "3"], { stdio: ["ignore", "ignore", "inherit", fd] });
      child.on("error", () => resolve(false));
      child.on("close", (code) => resolve(code === 0));
    });
  if (!(await flock("-n"))) {
    const since = Date.now();
    log(`waiting for ${what} (lock ${path})`);
    const timer = setInterval(() => log(`still waiting for ${what}: ${Math.round((Date.now() - since) / 1000)} s`), 30_000);
    const locked = await flock("-x");
    clearInterval(timer);
    if (!locked) {
      fs.closeSync(fd);
      throw new Error(`could not lock ${path}`);
    }
  }
  return { fd, release: () => fs.closeSync(fd) };
}

/** Writes a file atomically (temp file + rename), so readers never see half of it. */
export function writeAtomic(path: string, content: string, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, content, { mode });
  fs.renameSync(tmp, path);
}

/** A TCP port that is free on 127.0.0.1 right now (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(2_000);
    socket.on("connect", () => (socket.destroy(), resolve(true)));
    socket.on("error", () => resolve(false));
    socket.on("timeout", () => (socket.destroy(), resolve(false)));
  });
}

/** Mount points at or below `dir`, deepest first (from /proc/mounts). */
export function mountsUnder(dir: string): string[] {
  const unescapeOctal = (s: string) => s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return fs
    .readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((line) => unescapeOctal(line.split(" ")[1] ?? ""))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts `mountPoint`, retrying while busy, lazily as a last resort. */
export async function unmount(mountPoint: string): Promise<void> {
  for (let attempt = 0; mountsUnder(mountPoint).includes(mountPoint); attempt++) {
    const lazy = attempt >= 10 ? ["-l"] : [];
    const r = spawnSync("umount", [...lazy, mountPoint], { encoding: "utf8" });
    if (r.status !== 0 && attempt >= 10) throw new Error(`umount ${mountPoint}: ${r.stderr.trim()}`);
    if (r.status !== 0) await sleep(300);
  }
}
