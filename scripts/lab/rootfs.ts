/**
 * Machine prerequisites and the cached Debian root file system that every lab
 * host boots from (read-only, as the lower layer of its own overlay).
 *
 * The root fs is built once per recipe into
 *   ${BACKLOG_CACHE_DIR:-/var/cache/pulumi-backlog}/rootfs-<hash>
 * where <hash> covers the suite, the package list and RECIPE. It is built in
 * a temp dir under a lock and renamed when complete, so an interrupted build is
 * never used and two concurrent `up`s never both build.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { lockFile, log, mountsUnder, run, unmount } from "./util.ts";

export const SUITE = "bookworm";

/**
 * What a Debian cloud image has that the lab needs (--include of debootstrap),
 * sudo included: cloud images log in as a user with sudo, and the library supports that.
 * python3-cffi-backend is named because debootstrap does not resolve virtual
 * packages: cloud-init -> python3-cryptography needs python3-cffi-backend-api-*.
 */
const PACKAGES = [
  "systemd", "systemd-sysv", "dbus", "openssh-server", "openssh-sftp-server", "iproute2",
  "php8.2-fpm", "nginx-light", "procps", "python3-minimal", "cloud-init", "python3-cffi-backend",
  "ca-certificates", "curl", "sudo",
];
/** Load generators for tests run from inside a host: the first one apt knows is added. */
const LOAD_TOOLS = ["wrk", "apache2-utils"];
/** Bump when configureRootfs() changes, so hosts get a freshly built root fs. */
const RECIPE = 1;

/** Debian packages that provide the commands the lab runs on this machine. */
const HOST_PACKAGES: Record<string, string> = {
  debootstrap: "debootstrap",
  "systemd-container": "systemd-nspawn",
  socat: "socat",
  "openssh-client": "ssh, ssh-keygen",
  "util-linux": "nsenter, flock, mount",
};

let aptUpdated = false;
function aptUpdateOnce(): void {
  if (aptUpdated) return;
  log("apt-get update");
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
  log(`installing ${missing.join(" ")}`);
  aptUpdateOnce();
  spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  const still = missing.filter((p) => !installed(p));
  if (still.length) throw new Error(`apt-get could not install ${still.join(" ")}`);
}

/**
 * The archive URI that apt on this machine uses for `suite`, read from
 * /etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line and deb822
 * formats); BACKLOG_LAB_MIRROR overrides it.
 */
export function aptMirror(suite = SUITE): string {
  if (process.env.BACKLOG_LAB_MIRROR) return process.env.BACKLOG_LAB_MIRROR;
  const dir = "/etc/apt/sources.list.d";
  const files = ["/etc/apt/sources.list"];
  if (fs.existsSync(dir)) {
    for (const f of fs.readdirSync(dir).sort()) if (/\.(list|sources)$/.test(f)) files.push(path.join(dir, f));
  }
  for (const file of files.filter((f) => fs.existsSync(f))) {
    const text = fs.readFileSync(file, "utf8");
    if (file.endsWith(".sources")) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (key: string) =>
          stanza.match(new RegExp(`^${key}:\\s*(.*)$`, "mi"))?.[1].trim().split(/\s+/) ?? [];
        if (field("Enabled")[0]?.toLowerCase() === "no") continue;
        if (field("Types").includes("deb") && field("Suites").includes(suite) && field("URIs")[0]) {
          return field("URIs")[0];
        }
      }
    } else {
      for (const line of text.split("\n")) {
        const m = line.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/);
        if (m && m[2] === suite) return m[1];
      }
    }
  }
  throw new Error(`no apt source for "${suite}" in /etc/apt/sources.list(.d); set BACKLOG_LAB_MIRROR`);
}

export function cacheDir(): string {
  return path.resolve(process.env.BACKLOG_CACHE_DIR || "/var/cache/pulumi-backlog");
}

/** Path of the cached root fs for the current recipe (it may not exist yet). */
export function rootfsPath(): string {
  const spec = JSON.stringify({ suite: SUITE, packages: PACKAGES, loadTools: LOAD_TOOLS, recipe: RECIPE });
  return path.join(cacheDir(), `rootfs-${createHash("sha256").update(spec).digest("hex").slice(0, 12)}`);
}

/** Returns the cached root fs, building it first if needed. */
export async function ensureRootfs(): Promise<string> {
  const final = rootfsPath();
  if (fs.existsSync(final)) return final;
  fs.mkdirSync(cacheDir(), { recursive: true });
  const lock = lockFile(`${final}.lock`, "another root fs build");
  try {
    if (fs.existsSync(final)) return final; // built while we waited
    const tmp = `${final}.tmp`;
    await removeTree(tmp); // left by an interrupted build
    const started = Date.now();
    const logFile = `${final}.build.log`;
    log(`building the root fs (once) into ${final}; log: ${logFile}`);
    debootstrap(tmp, logFile, lock.fd);
    configureRootfs(tmp);
    fs.renameSync(tmp, final);
    const size = run("du", ["-sh", final]).split("\t")[0];
    log(`root fs built in ${Math.round((Date.now() - started) / 1000)} s (${size})`);
    return final;
  } finally {
    lock.release();
  }
}

/** Removes a directory tree after unmounting anything a killed debootstrap left mounted in it. */
async function removeTree(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  for (const m of mountsUnder(dir)) await unmount(m);
  run("rm", ["-rf", "--one-file-system", dir]);
}

function loadTool(): string | undefined {
  const known = (pkg: string) => spawnSync("apt-cache", ["show", "--no-all-versions", pkg]).status === 0;
  let tool = LOAD_TOOLS.find(known);
  if (!tool) {
    aptUpdateOnce();
    tool = LOAD_TOOLS.find(known);
  }
  if (!tool) log(`none of ${LOAD_TOOLS.join(", ")} is available from apt; hosts get no load generator`);
  return tool;
}

/** Runs debootstrap; it holds `lockFd` too, so the lock outlives a killed `up` until debootstrap ends. */
function debootstrap(target: string, logFile: string, lockFd: number): void {
  const tool = loadTool();
  const packages = tool ? [...PACKAGES, tool] : PACKAGES;
  const args = ["--variant=minbase", `--include=${packages.join(",")}`, SUITE, target, aptMirror()];
  const fd = fs.openSync(logFile, "w");
  const r = spawnSync("debootstrap", args, { stdio: ["ignore", fd, fd, lockFd] });
  fs.closeSync(fd);
  if (r.status !== 0) {
    const tail = fs.readFileSync(logFile, "utf8").split("\n").slice(-30).join("\n");
    throw new Error(`debootstrap ${args.join(" ")} failed (exit ${r.status ?? r.signal}):\n${tail}`);
  }
}

/** Turns the fresh debootstrap tree into something like a Debian cloud image for nspawn. */
function configureRootfs(root: string): void {
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
    [
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "HostKey /etc/ssh/ssh_host_ed25519_key",
      "",
    ].join("\n"),
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
  run("systemctl", [`--root=${root}`, "enable", "ssh.service", "php8.2-fpm.service", "nginx.service"]);
  // Downloaded .debs are not needed any more.
  const archives = path.join(root, "var/cache/apt/archives");
  for (const f of fs.readdirSync(archives)) if (f.endsWith(".deb")) fs.rmSync(path.join(archives, f));
  for (const need of ["usr/lib/openssh/sftp-server", "usr/sbin/sshd", "usr/sbin/php-fpm8.2", "usr/sbin/nginx"]) {
    if (!fs.existsSync(path.join(root, need))) throw new Error(`root fs has no /${need}`);
  }
}
