/**
 * Lab hosts: Debian booted with systemd under systemd-nspawn. Each host has
 *  - its own overlay mount (lower: the cached root fs; upper/work: <labdir>/hosts/NAME),
 *    so its changes survive `restart` and vanish at `down`;
 *  - its own network namespace (--private-network), hence its own sysctls;
 *  - its own ed25519 SSH host key, and the lab's client key authorized for root;
 *  - a socat bridge 127.0.0.1:PORT -> the host's 127.0.0.1:22.
 * Every PID, mount and port is recorded in <labdir>/state.json the moment it
 * exists, so `down` can clean up after a crash half-way.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DEFAULT_SUITE, ensureHostPackages, ensureRootfses, services } from "./rootfs.ts";
import {
  type Proc,
  alive,
  announce,
  canConnect,
  childrenOf,
  descendantsOf,
  freePort,
  identify,
  lockFile,
  log,
  mountsUnder,
  run,
  runAsync,
  signal,
  sleep,
  spawnDetached,
  terminate,
  unmount,
  waitGone,
  writeAtomic,
} from "./util.ts";

const CONTAINER_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"];

export interface HostState {
  name: string; // PREFIX1..PREFIXN, also the host's hostname
  suite?: string; // Debian suite (bullseye, bookworm, trixie); absent in a state.json from before suites: bookworm
  rootfs?: string; // the cached root fs of that suite: the overlay's lower dir
  machine: string; // nspawn machine name: name + a hash of the lab dir, unique across labs
  dir: string; // <labdir>/hosts/<name>
  port: number; // SSH port on 127.0.0.1 (0 until the bridge listens)
  hostKey: string; // "ssh-ed25519 AAAA..."
  mounted: boolean;
  cgroups?: string[]; // the container's own cgroup dirs (see ownCgroups)
  nspawn?: Proc; // the systemd-nspawn process
  leader?: Proc; // the container's init (child of nspawn): its namespaces are the host's
  bridge?: Proc; // the socat listener
  booted?: number; // when its systemd-nspawn was started (ms since the epoch)
}

interface LabState {
  hosts: HostState[];
}

export interface InventoryEntry {
  name: string;
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  hostKey: string;
  suite: string; // Debian suite of the host: bullseye (11), bookworm (12) or trixie (13)
}

/** `$BACKLOG_LAB_DIR`, or `.lab` at the repo root (two levels above this file). */
export function labDir(): string {
  return path.resolve(process.env.BACKLOG_LAB_DIR || path.join(import.meta.dirname, "..", "..", ".lab"));
}

/** One lab: a lab dir and what state.json records about it. */
class Lab {
  readonly dir: string;
  state: LabState | undefined;

  constructor(dir: string) {
    this.dir = dir;
    const file = this.file("state.json");
    this.state = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : undefined;
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  save(): void {
    writeAtomic(this.file("state.json"), JSON.stringify(this.state, null, 2) + "\n");
  }

  host(name: string): HostState {
    const h = this.state?.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host "${name}" in the lab at ${this.dir} (see \`npm run lab -- status\`)`);
    return h;
  }

  /** Serializes commands that change this lab (up, down, restart); returns the release. */
  lock(): () => void {
    fs.mkdirSync(this.dir, { recursive: true });
    return lockFile(this.file(".lock"), `another lab command on ${this.dir}`).release;
  }

  sshArgs(h: HostState): string[] {
    return [
      "-F",
      "none",
      "-i",
      this.file("id_ed25519"),
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${this.file("known_hosts")}`,
      "-o",
      "BatchMode=yes",
      "-o",
      "ConnectTimeout=5",
      "-o",
      "LogLevel=ERROR",
      "-p",
      String(h.port),
      "root@127.0.0.1",
    ];
  }
}

// ---------------------------------------------------------------- commands

/** inotify instances one booted host (systemd, journald, logind, …) takes; measured here: 6 to 8. */
const INOTIFY_PER_HOST = 10;

/**
 * All hosts run as the machine's root, so they share root's inotify instance limit
 * (fs.inotify.max_user_instances, 128 by default): past about 15 hosts systemd fails to boot with
 * "Too many open files". Raise the limit when it is too low for the hosts about to start (never
 * lower it), and say so: it is a setting of the machine, kept until the machine reboots.
 */
function ensureInotifyInstances(count: number): void {
  const file = "/proc/sys/fs/inotify/max_user_instances";
  const current = Number(fs.readFileSync(file, "utf8").trim());
  const inUse = fs
    .readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .reduce((n, pid) => {
      try {
        return (
          n +
          fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
            try {
              return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === "anon_inode:inotify";
            } catch {
              return false;
            }
          }).length
        );
      } catch {
        return n;
      }
    }, 0);
  const needed = inUse + count * INOTIFY_PER_HOST + 32;
  if (current < needed) {
    announce(`sysctl fs.inotify.max_user_instances=${needed} (was ${current}; for ${count} hosts; until reboot)`);
    fs.writeFileSync(file, String(needed));
  }
}

/** Starts one host per entry of `suites` (PREFIX1 gets suites[0], …), all booting in parallel. */
export async function up(dir: string, suites: string[], prefix: string, timeoutMs: number): Promise<void> {
  const count = suites.length;
  if (/[,:]/.test(dir)) throw new Error(`lab dir must not contain "," or ":" (overlay options): ${dir}`);
  const lab = new Lab(dir);
  const release = lab.lock();
  try {
    if (lab.state) log(`a lab is recorded in ${dir}: taking it down first`);
    await teardown(lab); // also clears what a crash may have left unrecorded
    ensureHostPackages();
    ensureInotifyInstances(count);
    const rootfs = await ensureRootfses(suites);
    const clientPub = ensureClientKey(lab);
    const tag = createHash("sha256").update(dir).digest("hex").slice(0, 8);
    lab.state = { hosts: [] };
    suites.forEach((suite, i) => {
      const name = `${prefix}${i + 1}`;
      const hostDir = path.join(dir, "hosts", name);
      lab.state!.hosts.push({
        name,
        suite,
        rootfs: rootfs[suite],
        machine: `${name}-${tag}`,
        dir: hostDir,
        port: 0,
        hostKey: "",
        mounted: false,
      });
    });
    lab.save();
    const started = Date.now();
    try {
      // Overlays and keys of every host first: that work blocks this process (mount, ssh-keygen), and
      // done between boots it kept the hosts already booting from being looked at for tens of seconds
      // on a loaded machine (issue #17: "the container's init did not start" with a complete boot).
      for (const h of lab.state.hosts) prepareHost(lab, h, clientPub);
      log(`${count} overlay(s) and host key(s) ready in ${((Date.now() - started) / 1000).toFixed(1)} s; booting`);
      await settleAll(lab.state.hosts.map((h) => startContainer(lab, h, started + timeoutMs).then(() => startBridge(lab, h, 0))));
      writeInventory(lab);
      await settleAll(lab.state.hosts.map((h) => waitReady(lab, h, started + timeoutMs)));
    } catch (e) {
      log("up failed: tearing down what it started");
      await teardown(lab);
      throw e;
    }
    const bySuite = [...new Set(suites)].map((s) => `${suites.filter((x) => x === s).length} ${s}`).join(", ");
    log(`${count} host(s) up (${bySuite}) in ${((Date.now() - started) / 1000).toFixed(1)} s; inventory: ${lab.file("inventory.json")}`);
  } finally {
    release();
  }
}

export async function down(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  const lab = new Lab(dir);
  const release = lab.lock();
  try {
    await teardown(lab);
  } finally {
    release();
  }
}

/** Powers a host off and boots it again from the same overlay (its changes persist). */
export async function restart(dir: string, name: string, timeoutMs: number): Promise<void> {
  const lab = new Lab(dir);
  const release = lab.lock();
  try {
    const h = lab.host(name);
    await stopContainer(lab, h);
    await stopBridge(lab, h);
    const started = Date.now();
    await startContainer(lab, h, started + timeoutMs);
    await startBridge(lab, h, h.port);
    await waitReady(lab, h, started + timeoutMs);
    log(`${name} restarted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    release();
  }
}

/** Runs a command as root in all of a host's namespaces; returns its exit code. */
export function exec(dir: string, name: string, command: string[]): number {
  const h = new Lab(dir).host(name);
  if (!alive(h.leader)) throw new Error(`host ${name} is not running`);
  const term = process.env.TERM ? [`TERM=${process.env.TERM}`] : [];
  const r = spawnSync("nsenter", nsenterArgs(h, ["env", "-i", ...CONTAINER_ENV, ...term, ...command]), {
    stdio: "inherit",
  });
  if (r.error) throw r.error;
  return r.status ?? 128 + (r.signal ? os.constants.signals[r.signal] : 0);
}

/** Prints each host and whether it is up; returns 0 when all are up. */
export function status(dir: string): number {
  const lab = new Lab(dir);
  if (!lab.state) {
    console.log(`no lab in ${dir}`);
    return 1;
  }
  let allUp = true;
  for (const h of lab.state.hosts) {
    const missing = (["nspawn", "leader", "bridge"] as const).filter((k) => !alive(h[k]));
    let state: string;
    if (missing.length === 0) {
      const r = spawnSync("nsenter", nsenterArgs(h, ["systemctl", "is-system-running"]), { encoding: "utf8" });
      state = `up (${(r.stdout || "?").trim()})`;
    } else {
      allUp = false;
      state = `down (not running: ${missing.join(", ")})`;
    }
    console.log(`${h.name.padEnd(12)} ${suiteOf(h).padEnd(9)} 127.0.0.1:${String(h.port).padEnd(6)} ${state}`);
  }
  console.log(`lab dir: ${dir}`);
  return allUp ? 0 : 1;
}

// ---------------------------------------------------------------- steps

/** Like Promise.all, but waits for every step to finish (so teardown never races one). */
async function settleAll(steps: Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(steps)).filter((r) => r.status === "rejected");
  if (failed.length) throw new Error(failed.map((r) => (r as PromiseRejectedResult).reason.message).join("\n\n"));
}

function ensureClientKey(lab: Lab): string {
  const key = lab.file("id_ed25519");
  if (!fs.existsSync(key) || !fs.existsSync(`${key}.pub`)) {
    fs.rmSync(key, { force: true });
    run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "pulumi-backlog-lab", "-f", key]);
  }
  return fs.readFileSync(`${key}.pub`, "utf8");
}

/** Mounts the host's overlay and gives it its keys (synchronous: before any host boots). */
function prepareHost(lab: Lab, h: HostState, clientPub: string): void {
  const [upper, work, merged] = ["upper", "work", "merged"].map((d) => path.join(h.dir, d));
  for (const d of [upper, work, merged]) fs.mkdirSync(d, { recursive: true });
  const options = `lowerdir=${h.rootfs},upperdir=${upper},workdir=${work}`;
  run("mount", ["-t", "overlay", "overlay", "-o", options, merged]);
  h.mounted = true;
  lab.save();

  const key = path.join(h.dir, "ssh_host_ed25519_key");
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `root@${h.name}`, "-f", key]);
  fs.copyFileSync(key, path.join(merged, "etc/ssh/ssh_host_ed25519_key"));
  fs.copyFileSync(`${key}.pub`, path.join(merged, "etc/ssh/ssh_host_ed25519_key.pub"));
  fs.chmodSync(path.join(merged, "etc/ssh/ssh_host_ed25519_key"), 0o600);
  fs.mkdirSync(path.join(merged, "root/.ssh"), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(merged, "root/.ssh/authorized_keys"), clientPub, { mode: 0o600 });
  h.hostKey = fs.readFileSync(`${key}.pub`, "utf8").split(" ").slice(0, 2).join(" ");
  lab.save();
}

/**
 * Boots the host and waits for its init (the leader), at least 30 s and until `until` (the
 * command's own deadline), looking once more after the deadline before it gives up: a busy event
 * loop or a loaded machine must not turn a booted host into a failure.
 */
async function startContainer(lab: Lab, h: HostState, until: number): Promise<void> {
  const consoleLog = path.join(h.dir, "console.log");
  h.cgroups ??= ownCgroups(h.machine);
  lab.save();
  for (const dir of h.cgroups) fs.mkdirSync(dir, { recursive: true });
  const nspawn = [
    "systemd-nspawn",
    "--quiet",
    "--register=no",
    "--keep-unit",
    "--private-network",
    "--link-journal=no",
    `--machine=${h.machine}`,
    `--hostname=${h.name}`,
    `--directory=${path.join(h.dir, "merged")}`,
    "--setenv=SYSTEMD_COLORS=0",
    "--console=read-only",
    "--boot",
    // nspawn's own seccomp filter refuses pidfd_open/pidfd_getfd (EPERM), which a VM or a machine of
    // its own allows: the library's live re-listen needs them (issue #11). Allowed here so that the lab
    // behaves like a real host; the fallback to a restart is tested by taking perl and python3 away.
    "--system-call-filter=pidfd_open pidfd_getfd",
  ];
  // A shell joins the cgroups, then becomes systemd-nspawn (same PID).
  const joinThenExec = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 1; shift; n=$((n-1)); done; exec "$@"';
  h.leader = undefined;
  h.booted = Date.now();
  h.nspawn = spawnDetached("sh", ["-c", joinThenExec, "sh", String(h.cgroups.length), ...h.cgroups, ...nspawn], consoleLog);
  lab.save();
  const deadline = Math.max(Date.now() + 30_000, until);
  for (;;) {
    h.leader = findLeader(h);
    if (h.leader) break;
    if (!alive(h.nspawn)) throw new Error(`${h.name}: systemd-nspawn exited:\n${tail(consoleLog)}`);
    if (Date.now() > deadline) {
      const waited = ((Date.now() - (h.booted ?? Date.now())) / 1000).toFixed(1);
      throw new Error(`${h.name}: the container's init did not start (looked for ${waited} s):\n${tail(consoleLog)}`);
    }
    await sleep(200);
  }
  const took = (Date.now() - (h.booted ?? Date.now())) / 1000;
  if (took > 10) log(`${h.name}: its init started ${took.toFixed(1)} s after systemd-nspawn (a busy machine)`);
  lab.save();
}

/**
 * Cgroup dirs of a container's own: "<hierarchy>/<our cgroup>/pulumi-backlog-lab/<machine>"
 * in the cgroup v2 hierarchy and the v1 name=systemd one (hybrid hosts). Without
 * them nspawn (--keep-unit, no systemd on this machine) makes its "payload"
 * cgroup in its own cgroup, the same for every container, so the hosts' systemds
 * would share one cgroup tree (every host's nginx in one nginx.service).
 */
function ownCgroups(machine: string): string[] {
  const own = new Map<string, string>(); // "" for v2, else the v1 controller list -> path
  for (const line of fs.readFileSync("/proc/self/cgroup", "utf8").trim().split("\n")) {
    const [, controllers, cgroupPath] = line.match(/^\d+:([^:]*):(.*)$/) ?? [];
    if (cgroupPath !== undefined) own.set(controllers, cgroupPath);
  }
  const dirs: string[] = [];
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").trim().split("\n")) {
    const [left, right] = line.split(" - ");
    const mountPoint = left.split(" ")[4];
    const [fsType, , options] = right.split(" ");
    const key = fsType === "cgroup2" ? "" : fsType === "cgroup" && options.split(",").includes("name=systemd") ? "name=systemd" : undefined;
    if (key !== undefined && own.has(key)) dirs.push(path.join(mountPoint, own.get(key)!, "pulumi-backlog-lab", machine));
  }
  return dirs;
}

/** Removes a container's cgroup dirs (empty once its processes are gone), deepest first. */
function removeCgroups(h: HostState): void {
  const remove = (dir: string): void => {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) remove(path.join(dir, e.name));
    try {
      fs.rmdirSync(dir);
    } catch (e) {
      log(`${h.name}: could not remove cgroup ${dir}: ${(e as Error).message}`);
    }
  };
  for (const dir of h.cgroups ?? []) {
    remove(dir);
    try {
      fs.rmdirSync(path.dirname(dir)); // pulumi-backlog-lab/, once no lab uses it
    } catch {
      // another lab's container is still in it
    }
  }
}

/**
 * PIDs in a container's own cgroup tree (its v2 dir, else its v1 name=systemd one): the few
 * processes to look at for its init, instead of every process of the machine.
 */
function cgroupPids(h: HostState): number[] | undefined {
  const top = h.cgroups?.find((d) => fs.existsSync(path.join(d, "cgroup.procs")));
  if (!top) return undefined;
  const pids: number[] = [];
  const walk = (dir: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
      for (const line of fs.readFileSync(path.join(dir, "cgroup.procs"), "utf8").split("\n")) if (line) pids.push(Number(line));
    } catch {
      return; // removed since it was listed
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
  };
  walk(top);
  return pids;
}

/** Whether `pid`'s parent is `parent` (false once it is gone). */
function isChildOf(pid: number, parent: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1] === String(parent);
  } catch {
    return false;
  }
}

/**
 * The container's init: the child of systemd-nspawn once it has exec'd systemd. Looked for among
 * the processes of the container's cgroups (where nspawn puts its payload), else among all.
 */
function findLeader(h: HostState): Proc | undefined {
  const nspawn = h.nspawn;
  if (!alive(nspawn)) return undefined;
  const inCgroups = cgroupPids(h);
  const candidates = inCgroups === undefined ? childrenOf(nspawn.pid) : inCgroups;
  for (const pid of candidates) {
    if (inCgroups !== undefined && !isChildOf(pid, nspawn.pid)) continue;
    let comm = "";
    try {
      comm = fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    } catch {
      continue; // exited since it was listed
    }
    if (comm === "systemd" || comm === "init") return identify(pid);
  }
  return undefined;
}

/** socat 127.0.0.1:PORT -> the host's 127.0.0.1:22 (a free port when `port` is 0). */
async function startBridge(lab: Lab, h: HostState, port: number): Promise<void> {
  const inner = `nsenter --net=/proc/${h.leader!.pid}/ns/net socat STDIO TCP:127.0.0.1:22`;
  for (let attempt = 1; attempt <= 5; attempt++) {
    h.port = port || (await freePort());
    h.bridge = spawnDetached("socat", [`TCP-LISTEN:${h.port},bind=127.0.0.1,reuseaddr,fork`, `EXEC:"${inner}"`], path.join(h.dir, "bridge.log"));
    lab.save();
    for (let i = 0; i < 50 && alive(h.bridge); i++) {
      if (await canConnect(h.port)) {
        await sleep(200); // a port taken by someone else makes socat exit right away
        if (alive(h.bridge)) return;
      }
      await sleep(100);
    }
    await stopBridge(lab, h); // did not bind: try again (another port unless one was asked for)
  }
  throw new Error(`${h.name}: socat could not listen on 127.0.0.1 (see ${path.join(h.dir, "bridge.log")})`);
}

function suiteOf(h: HostState): string {
  return h.suite ?? DEFAULT_SUITE;
}

/** Waits until the host accepts SSH (checked host key) and its services are active. */
async function waitReady(lab: Lab, h: HostState, deadline: number): Promise<void> {
  const units = services(suiteOf(h));
  const check = [...lab.sshArgs(h), "systemctl", "is-active", ...units];
  let last = "";
  for (let first = true; first || Date.now() < deadline; first = false) {
    if (!first) await sleep(500);
    if (!alive(h.nspawn)) throw new Error(`${h.name}: the container stopped while booting:\n${tail(path.join(h.dir, "console.log"))}`);
    const r = await runAsync("ssh", check, 15_000);
    last = r.output.trim();
    // is-active exits 0 when ANY unit is active: every line must say "active".
    if (r.code === 0 && last.split("\n").filter((l) => l === "active").length === units.length) {
      log(
        `${h.name} (${suiteOf(h)}): ssh and ${units.slice(1).join(", ")} active ${((Date.now() - (h.booted ?? Date.now())) / 1000).toFixed(1)} s after its boot began`,
      );
      return;
    }
  }
  const failed = spawnSync("nsenter", nsenterArgs(h, ["systemctl", "--failed", "--no-pager"]), { encoding: "utf8" });
  throw new Error(
    `${h.name} (${suiteOf(h)}, 127.0.0.1:${h.port}) not ready in time: wanted SSH with its host key and ` +
      `\`systemctl is-active ${units.join(" ")}\` all active.\nLast check said:\n${last}\n` +
      `systemctl --failed:\n${failed.stdout}${failed.stderr}`,
  );
}

function writeInventory(lab: Lab): void {
  const hosts = lab.state!.hosts;
  const inventory: InventoryEntry[] = hosts.map((h) => ({
    name: h.name,
    host: "127.0.0.1",
    port: h.port,
    user: "root",
    privateKeyPath: lab.file("id_ed25519"),
    hostKey: h.hostKey,
    suite: suiteOf(h),
  }));
  writeAtomic(lab.file("known_hosts"), hosts.map((h) => `[127.0.0.1]:${h.port} ${h.hostKey}\n`).join(""));
  writeAtomic(lab.file("inventory.json"), JSON.stringify(inventory, null, 2) + "\n");
}

/** Clean poweroff (nspawn turns SIGTERM into one), SIGKILL of the container's init if it hangs. */
async function stopContainer(lab: Lab, h: HostState): Promise<void> {
  if (!h.leader && alive(h.nspawn)) h.leader = findLeader(h);
  const leftover = alive(h.nspawn) ? childrenOf(h.nspawn.pid).map(identify) : []; // init before exec
  signal(h.nspawn, "SIGTERM");
  if (!(await waitGone([h.nspawn, h.leader], 20_000))) log(`${h.name}: no clean poweroff in 20 s, killing it`);
  for (const p of [h.leader, ...leftover, h.nspawn]) signal(p, "SIGKILL"); // killing init ends the whole container
  await waitGone([h.nspawn, h.leader, ...leftover], 10_000);
  h.nspawn = h.leader = undefined;
  lab.save();
}

/** Stops the socat listener and any connections it forked. */
async function stopBridge(lab: Lab, h: HostState): Promise<void> {
  if (alive(h.bridge)) {
    const forks = descendantsOf(h.bridge.pid).map(identify);
    await Promise.all([h.bridge, ...forks].map((p) => terminate(p, 2_000)));
  }
  h.bridge = undefined;
  lab.save();
}

/** Stops and removes everything recorded for the lab (safe to repeat, and after a crash). */
async function teardown(lab: Lab): Promise<void> {
  for (const h of lab.state?.hosts ?? []) {
    if (alive(h.nspawn) || alive(h.leader) || alive(h.bridge)) log(`stopping ${h.name}`);
  }
  await Promise.all((lab.state?.hosts ?? []).map((h) => stopContainer(lab, h).then(() => stopBridge(lab, h))));
  for (const h of lab.state?.hosts ?? []) removeCgroups(h);
  const hostsDir = lab.file("hosts");
  for (const m of mountsUnder(hostsDir)) await unmount(m);
  if (fs.existsSync(hostsDir)) run("rm", ["-rf", "--one-file-system", hostsDir]);
  for (const f of ["inventory.json", "known_hosts", "state.json"]) fs.rmSync(lab.file(f), { force: true });
  lab.state = undefined;
}

function nsenterArgs(h: HostState, command: string[]): string[] {
  return ["-t", String(h.leader!.pid), "-a", "-r", "-w", "--", ...command];
}

function tail(file: string, lines = 25): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no output)";
  }
}
