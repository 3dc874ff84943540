/**
 * Machine prerequisites and the cached Debian root file system that every lab
 * host boots from (read-only, as the lower layer of its own overlay).
 *
 * One root fs per Debian release (RELEASES: bullseye, bookworm, trixie) is built
 * once per recipe into
 *   ${BACKLOG_CACHE_DIR:-/var/cache/pulumi-backlog}/rootfs-<hash>
 * where <hash> covers the suite, the package list and RECIPE. It is built in
 * a temp dir under a lock and renamed when complete, so an interrupted build is
 * never used and two concurrent `up`s never both build.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { announce, lockFileAsync, log, mountsUnder, run, unmount } from "./util.ts";

/** The suite a host gets unless told otherwise (what the lab built before it knew other releases). */
export const DEFAULT_SUITE = "bookworm";

/**
 * What a Debian cloud image has that the lab needs (--include of debootstrap),
 * sudo included: cloud images log in as a user with sudo, and the library supports that.
 * python3-cffi-backend is named because debootstrap does not resolve virtual
 * packages: cloud-init -> python3-cryptography needs python3-cffi-backend-api-*.
 * Only php-fpm and nginx differ per release; the order is the one the lab always
 * used, so bookworm's cache key (and its already built root fs) stays what it was.
 */
function packageList(php: string, nginx: string): string[] {
  return [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "openssh-sftp-server",
    "iproute2",
    `php${php}-fpm`,
    nginx,
    "procps",
    "python3-minimal",
    "cloud-init",
    "python3-cffi-backend",
    "ca-certificates",
    "curl",
    "sudo",
  ];
}

/** One Debian release the lab can boot. */
export interface Release {
  suite: string;
  version: string; // Debian major version
  /** php-fpm version: unit php<php>-fpm, binary /usr/sbin/php-fpm<php>, pool socket /run/php/php<php>-fpm.sock */
  php: string;
  packages: string[]; // debootstrap --include, without the load tool
}

/**
 * The releases and their packages. phpX.Y-fpm is what the `php-fpm` metapackage pulls in that
 * suite, named explicitly so the root fs has the version the readiness check waits for.
 * nginx-light is only a transitional package in trixie (it depends on nginx), so trixie names nginx.
 */
export const RELEASES: Record<string, Release> = {
  bullseye: { suite: "bullseye", version: "11", php: "7.4", packages: packageList("7.4", "nginx-light") },
  bookworm: { suite: "bookworm", version: "12", php: "8.2", packages: packageList("8.2", "nginx-light") },
  trixie: { suite: "trixie", version: "13", php: "8.4", packages: packageList("8.4", "nginx") },
};

/** The release of `suite`; throws naming the known ones. */
export function release(suite: string): Release {
  if (!Object.hasOwn(RELEASES, suite)) {
    throw new Error(`unknown suite "${suite}": the lab knows ${Object.keys(RELEASES).join(", ")}`);
  }
  return RELEASES[suite];
}

/** The systemd units a booted host of `suite` must have active before it counts as up. */
export function services(suite: string): string[] {
  return ["ssh", `php${release(suite).php}-fpm`, "nginx"];
}

/**
 * Load generators for tests run from inside a host: the first one the suite has is added.
 * apt here is asked when it knows the suite (this machine's own); for another suite the first
 * is taken (wrk is in bullseye, bookworm and trixie).
 */
const LOAD_TOOLS = ["wrk", "apache2-utils"];
/** Bump when configureRootfs() changes, so hosts get a freshly built root fs. */
const RECIPE = 1;
/** A root fs build prints a progress line at least this often (and at each phase change). */
const PROGRESS_EVERY_MS = 15_000;

/** Debian packages that provide the commands the lab runs on this machine. */
const HOST_PACKAGES: Record<string, string> = {
  debootstrap: "debootstrap",
  "systemd-container": "systemd-nspawn",
  socat: "socat",
  "openssh-client": "ssh, ssh-keygen",
  "util-linux": "nsenter, flock, mount",
  strace: "strace (test/integration/durability.test.ts: the journal's flush order)",
};

let aptUpdated = false;
function aptUpdateOnce(): void {
  if (aptUpdated) return;
  announce("apt-get update (refreshes apt's package lists)");
  run("apt-get", ["update", "-q"]);
  aptUpdated = true;
}

function installed(pkg: string): boolean {
  const r = spawnSync("dpkg-query", ["-W", "-f=${Status}", pkg], { encoding: "utf8" });
  return r.status === 0 && r.stdout.includes("install ok installed");
}

/** Installs the machine's missing prerequisites with apt-get (CI starts from a fresh machine). */
export function ensureHostPackages(): void {
  const missing = Object.keys(HOST_PACKAGES).filter((p) => !installed(p));
  if (missing.length === 0) return;
  aptUpdateOnce();
  for (const p of missing) announce(`apt-get install ${p} (for ${HOST_PACKAGES[p]})`);
  spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  const still = missing.filter((p) => !installed(p));
  if (still.length) throw new Error(`apt-get could not install ${still.join(" ")}`);
}

/** `deb` sources apt uses here: [URI, suites] from /etc/apt/sources.list(.d), one-line and deb822 formats. */
function aptSources(): [string, string[]][] {
  const dir = "/etc/apt/sources.list.d";
  const files = ["/etc/apt/sources.list"];
  if (fs.existsSync(dir)) {
    for (const f of fs.readdirSync(dir).sort()) if (/\.(list|sources)$/.test(f)) files.push(path.join(dir, f));
  }
  const sources: [string, string[]][] = [];
  for (const file of files.filter((f) => fs.existsSync(f))) {
    const text = fs.readFileSync(file, "utf8");
    if (file.endsWith(".sources")) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (key: string) =>
          stanza
            .match(new RegExp(`^${key}:\\s*(.*)$`, "mi"))?.[1]
            .trim()
            .split(/\s+/) ?? [];
        if (field("Enabled")[0]?.toLowerCase() === "no") continue;
        if (field("Types").includes("deb") && field("URIs")[0]) sources.push([field("URIs")[0], field("Suites")]);
      }
    } else {
      for (const line of text.split("\n")) {
        const m = line.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/);
        if (m) sources.push([m[1], [m[2]]]);
      }
    }
  }
  return sources;
}

/** This machine's Debian suite (VERSION_CODENAME of /etc/os-release), if it is Debian. */
function machineSuite(): string | undefined {
  try {
    const osRelease = fs.readFileSync("/etc/os-release", "utf8");
    if (!/^ID="?debian"?$/m.test(osRelease)) return undefined;
    return osRelease.match(/^VERSION_CODENAME="?([a-z]+)"?$/m)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * The Debian archive for debootstrap of `suite`: $BACKLOG_LAB_MIRROR_<SUITE>, else $BACKLOG_LAB_MIRROR,
 * else the URI apt here uses for that suite, else the one it uses for this machine's own Debian
 * suite (a Debian mirror carries every current release; here only bookworm is configured).
 */
export function aptMirror(suite: string): string {
  const env = process.env[`BACKLOG_LAB_MIRROR_${suite.toUpperCase()}`] || process.env.BACKLOG_LAB_MIRROR;
  if (env) return env;
  const sources = aptSources();
  const own = machineSuite();
  const uri = sources.find(([, suites]) => suites.includes(suite))?.[0] ?? (own && sources.find(([, suites]) => suites.includes(own))?.[0]);
  if (!uri) {
    throw new Error(`no apt source for "${suite}"${own ? ` or "${own}"` : ""} in /etc/apt/sources.list(.d); set BACKLOG_LAB_MIRROR`);
  }
  return uri;
}

/** True when apt here has a source for `suite` (its package index answers for that suite). */
function aptKnows(suite: string): boolean {
  return aptSources().some(([, suites]) => suites.includes(suite));
}

export function cacheDir(): string {
  return path.resolve(process.env.BACKLOG_CACHE_DIR || "/var/cache/pulumi-backlog");
}

/** Path of the cached root fs of `suite` for the current recipe (it may not exist yet). */
export function rootfsPath(suite: string): string {
  const rel = release(suite);
  const spec = JSON.stringify({ suite: rel.suite, packages: rel.packages, loadTools: LOAD_TOOLS, recipe: RECIPE });
  return path.join(cacheDir(), `rootfs-${createHash("sha256").update(spec).digest("hex").slice(0, 12)}`);
}

/** Returns the cached root fs of `suite`, building it first if needed. */
export async function ensureRootfs(suite: string): Promise<string> {
  const final = rootfsPath(suite);
  if (fs.existsSync(final)) return final;
  if (!fs.existsSync(cacheDir())) announce(`mkdir ${cacheDir()} (the lab's root fs cache, about 400 MB per Debian release)`);
  fs.mkdirSync(cacheDir(), { recursive: true });
  const lock = await lockFileAsync(`${final}.lock`, `another build of the ${suite} root fs`);
  try {
    if (fs.existsSync(final)) return final; // built while we waited
    const tmp = `${final}.tmp`;
    await removeTree(tmp); // left by an interrupted build
    const started = Date.now();
    const logFile = `${final}.build.log`;
    announce(`building the ${suite} root fs (once) into ${final}; log: ${logFile}`);
    await debootstrap(release(suite), tmp, logFile, lock.fd, started);
    configureRootfs(release(suite), tmp);
    fs.renameSync(tmp, final);
    const size = run("du", ["-sh", final]).split("\t")[0];
    log(`${suite} root fs built in ${Math.round((Date.now() - started) / 1000)} s (${size})`);
    return final;
  } finally {
    lock.release();
  }
}

/** Builds (or finds) the root fs of each suite, in parallel; returns suite -> path. */
export async function ensureRootfses(suites: string[]): Promise<Record<string, string>> {
  const unique = [...new Set(suites)];
  const paths = await Promise.all(unique.map((s) => ensureRootfs(s)));
  return Object.fromEntries(unique.map((s, i) => [s, paths[i]]));
}

/** Removes a directory tree after unmounting anything a killed debootstrap left mounted in it. */
async function removeTree(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  for (const m of mountsUnder(dir)) await unmount(m);
  run("rm", ["-rf", "--one-file-system", dir]);
}

function loadTool(suite: string): string | undefined {
  if (!aptKnows(suite)) return LOAD_TOOLS[0];
  const known = (pkg: string) => spawnSync("apt-cache", ["show", "--no-all-versions", pkg]).status === 0;
  let tool = LOAD_TOOLS.find(known);
  if (!tool) {
    aptUpdateOnce();
    tool = LOAD_TOOLS.find(known);
  }
  if (!tool) log(`none of ${LOAD_TOOLS.join(", ")} is available from apt; hosts get no load generator`);
  return tool;
}

/** debootstrap's phase lines, and what to call the phase each starts. */
const PHASES: [RegExp, string][] = [
  [/^I: Retrieving (InRelease|Release|Packages)\b/, "fetching the package index"],
  [/^I: Resolving dependencies/, "resolving dependencies"],
  [/^I: Retrieving \S+ \S+$/, "fetching packages"],
  [/^I: Extracting /, "extracting the essential packages"],
  [/^I: Installing core packages/, "installing the core packages"],
  [/^I: Unpacking required packages/, "unpacking the required packages"],
  [/^I: Configuring required packages/, "configuring the required packages"],
  [/^I: Unpacking the base system/, "unpacking the base system"],
  [/^I: Configuring the base system/, "configuring the base system"],
  [/^I: Base system installed successfully/, "debootstrap done"],
];

/**
 * Where a debootstrap is, from its log: its phase and the packages fetched (and validated),
 * unpacked and configured so far. debootstrap prints "I: Retrieving PKG VERSION" per .deb,
 * "I: Unpacking PKG..." and "I: Configuring PKG[...]" as dpkg goes (first the required
 * packages, then the base system), and a line when each phase begins. A few core packages are
 * installed without a line of their own, so the last counts stay a little under "fetched".
 */
export function debootstrapProgress(logText: string): { phase: string; fetched: number; unpacked: number; configured: number } {
  let fetched = 0,
    unpacked = 0,
    configured = 0,
    phase = "starting";
  for (const line of logText.split("\n")) {
    if (/^I: Retrieving \S+ \S+$/.test(line)) fetched++;
    else if (/^I: Unpacking \S+\.\.\.$/.test(line)) unpacked++;
    else if (/^I: Configuring \S+$/.test(line)) configured++; // "libc6" or "bash..."
    phase = PHASES.find(([re]) => re.test(line))?.[1] ?? phase;
  }
  return { phase, fetched, unpacked, configured };
}

/**
 * Runs debootstrap (asynchronously, printing progress); it holds `lockFd` too, so the lock
 * outlives a killed `up` until debootstrap ends.
 */
async function debootstrap(rel: Release, target: string, logFile: string, lockFd: number, started: number): Promise<void> {
  const tool = loadTool(rel.suite);
  const packages = tool ? [...rel.packages, tool] : rel.packages;
  const mirror = aptMirror(rel.suite);
  const args = ["--variant=minbase", `--include=${packages.join(",")}`, rel.suite, target, mirror];
  log(`debootstrap ${rel.suite} from ${mirror}`);
  const fd = fs.openSync(logFile, "w");
  const child = spawn("debootstrap", args, { stdio: ["ignore", fd, fd, lockFd] });
  fs.closeSync(fd);
  let lastPhase = "";
  let lastLine = 0;
  const report = (force: boolean) => {
    let text = "";
    try {
      text = fs.readFileSync(logFile, "utf8");
    } catch {
      // not there yet
    }
    const p = debootstrapProgress(text);
    if (!force && p.phase === lastPhase && Date.now() - lastLine < PROGRESS_EVERY_MS) return;
    log(
      `${rel.suite} root fs: ${Math.round((Date.now() - started) / 1000)} s, ${p.phase} ` +
        `(packages: ${p.fetched} fetched, ${p.unpacked} unpacked, ${p.configured} configured)`,
    );
    lastPhase = p.phase;
    lastLine = Date.now();
  };
  const timer = setInterval(() => report(false), 1_000);
  const code = await new Promise<number | string>((resolve) => {
    child.on("error", (e) => resolve(e.message));
    child.on("close", (c, sig) => resolve(c ?? sig ?? "?"));
  });
  clearInterval(timer);
  report(code !== 0); // the last phase, unless already said
  if (code !== 0) {
    const tail = fs.readFileSync(logFile, "utf8").split("\n").slice(-30).join("\n");
    throw new Error(`debootstrap ${args.join(" ")} failed (exit ${code}):\n${tail}`);
  }
}

/** Turns the fresh debootstrap tree into something like a Debian cloud image for nspawn. */
function configureRootfs(rel: Release, root: string): void {
  const put = (file: string, content: string, mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), content, { mode });
  };
  // cloud-init is installed but never runs (it would look for a datasource on the network).
  put("etc/cloud/cloud-init.disabled", "");
  put("etc/cloud/cloud.cfg.d/99-lab.cfg", "datasource_list: [ None ]\n");
  // sshd: root by key only, and only the per-host ed25519 key each host gets at `up`.
  put(
    "etc/ssh/sshd_config.d/lab.conf",
    ["PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "HostKey /etc/ssh/ssh_host_ed25519_key", ""].join(
      "\n",
    ),
  );
  for (const f of fs.readdirSync(path.join(root, "etc/ssh"))) {
    if (f.startsWith("ssh_host_")) fs.rmSync(path.join(root, "etc/ssh", f));
  }
  // Empty machine-id: each host gets its own at first boot (nspawn passes a random
  // one) and keeps it in its overlay. The hostname comes from nspawn --hostname.
  put("etc/machine-id", "", 0o444);
  const dbusId = path.join(root, "var/lib/dbus/machine-id");
  if (fs.existsSync(dbusId) && !fs.lstatSync(dbusId).isSymbolicLink()) fs.rmSync(dbusId);
  fs.rmSync(path.join(root, "etc/hostname"), { force: true });
  const php = `php${rel.php}-fpm`;
  run("systemctl", [`--root=${root}`, "enable", "ssh.service", `${php}.service`, "nginx.service"]);
  // Downloaded .debs are not needed any more.
  const archives = path.join(root, "var/cache/apt/archives");
  for (const f of fs.readdirSync(archives)) if (f.endsWith(".deb")) fs.rmSync(path.join(archives, f));
  for (const need of [
    "usr/lib/openssh/sftp-server",
    "usr/sbin/sshd",
    `usr/sbin/php-fpm${rel.php}`,
    "usr/sbin/nginx",
    `etc/php/${rel.php}/fpm/pool.d/www.conf`,
  ]) {
    if (!fs.existsSync(path.join(root, need))) throw new Error(`${rel.suite} root fs has no /${need}`);
  }
}
