/**
 * `npm run doctor`: checks, in a second, everything `npm run demo` and `npm test` need from this
 * machine, and prints one line per item: `ok` or `FAIL` with what to do about it. Exit status 1 when
 * anything fails. `npm run demo` and `npm test` run it first and stop with its message, so a
 * missing prerequisite shows up now and not as a stack trace ten minutes later.
 *
 * The checks are pure functions of the facts gathered from the machine (`checks(facts)`), so the
 * unit tests (test/unit/doctor.test.ts) run them on made-up machines. Disk thresholds were measured
 * on a clean machine (see NEED_BYTES).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** A place on disk: the file system it is on (device number) and what is free there. */
export interface Place {
  path: string;
  device: number;
  freeBytes: number;
}

/** What the checks look at, gathered by `gatherFacts()` on this machine or made up in tests. */
export interface Facts {
  platform: string; // process.platform
  uid: number | undefined; // process.getuid(); undefined on Windows
  kernelRelease: string; // uname -r
  goVersion: string | null; // output of `go version`; null when there is no go on PATH
  toolchain: { cached: boolean; dir: string; ambient?: string }; // ambient: a new enough `pulumi` on PATH
  rootfs: { suite: string; cached: boolean; path: string }[]; // the lab's Debian root fs, per release
  /** Where things go: the toolchain and root fs caches, Go's caches (null without go), the lab dir. */
  disks: { toolchain: Place | null; goCaches: Place | null; rootfs: Place | null; lab: Place | null };
  mountinfo: string; // /proc/self/mountinfo
  apt: boolean; // apt-get and dpkg-query on PATH
  missingPackages: string[]; // the lab's Debian packages (LAB_PACKAGES) not installed here
  nodeModulesNode: string | null; // `node_modules/.bin/node --version`; null when missing
}

export interface Check {
  item: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

export const MIN_GO: [number, number] = [1, 26];
export const MIN_KERNEL: [number, number] = [5, 6];
export const MIN_NODE = 22;
const GB = 1e9;
/**
 * Disk space needed, measured on this project's first run on a clean 2-core machine, with headroom:
 * - toolchain: the four binaries (163 MB) in the cache dir, built in a temp dir next to it;
 * - goCaches: what a build from scratch leaves in Go's module cache (1.85 GB) and build cache
 *   (2.06 GB), measured with both empty at the start;
 * - rootfs: a lab root fs (399 MB for bookworm) plus the .debs debootstrap downloads while building
 *   it; one per Debian release the lab boots (the tests boot each);
 * - lab: the hosts' overlays, logs and the Pulumi state, whatever was cached.
 */
export const NEED_BYTES = { toolchain: 0.3 * GB, goCaches: 4.5 * GB, rootfs: 0.8 * GB, lab: 0.5 * GB };
/** Debian packages the lab installs on this machine (scripts/lab/rootfs.ts, HOST_PACKAGES). */
export const LAB_PACKAGES = ["debootstrap", "systemd-container", "socat", "openssh-client", "util-linux", "strace"];

/** [major, minor] of the first "X.Y" in a version text, or null. */
export function majorMinor(text: string, prefix = ""): [number, number] | null {
  const m = text.match(new RegExp(`${prefix}(\\d+)\\.(\\d+)`));
  return m ? [Number(m[1]), Number(m[2])] : null;
}

const atLeast = (have: [number, number], want: [number, number]) => have[0] > want[0] || (have[0] === want[0] && have[1] >= want[1]);

const gb = (bytes: number) => `${(bytes / GB).toFixed(1)} GB`;

/** Free space needed per file system: the caches that are not built yet, and the lab's working space. */
export function diskNeeds(f: Facts): { place: Place; needBytes: number; for: string[] }[] {
  const needs = new Map<number, { place: Place; needBytes: number; for: string[] }>();
  const add = (place: Place | null, bytes: number, what: string) => {
    if (!place || bytes === 0) return;
    const n = needs.get(place.device) ?? { place, needBytes: 0, for: [] };
    n.needBytes += bytes;
    n.for.push(`${what} ${gb(bytes)}`);
    needs.set(place.device, n);
  };
  const buildToolchain = !f.toolchain.cached && !f.toolchain.ambient;
  if (buildToolchain) add(f.disks.toolchain, NEED_BYTES.toolchain, "Pulumi toolchain");
  if (buildToolchain) add(f.disks.goCaches, NEED_BYTES.goCaches, "Go's caches for building it");
  const rootfses = f.rootfs.filter((r) => !r.cached).map((r) => r.suite);
  if (rootfses.length) add(f.disks.rootfs, NEED_BYTES.rootfs * rootfses.length, `lab root fs (${rootfses.join(", ")})`);
  add(f.disks.lab, NEED_BYTES.lab, "lab hosts");
  return [...needs.values()];
}

/** Every prerequisite of the demo and the tests, checked against the facts. */
export function checks(f: Facts): Check[] {
  const out: Check[] = [];
  const linux = f.platform === "linux";
  out.push(
    linux
      ? { item: "Linux", ok: true, detail: `kernel ${f.kernelRelease}` }
      : {
          item: "Linux",
          ok: false,
          detail: `this is ${f.platform}; the lab hosts are systemd-nspawn containers`,
          fix: "use a Linux machine or VM (Debian or Ubuntu); `npm run test:unit` runs the unit tests anywhere",
        },
  );
  out.push(
    f.uid === 0
      ? { item: "root", ok: true, detail: "uid 0" }
      : {
          item: "root",
          ok: false,
          detail: `you are uid ${f.uid ?? "unknown"}; lab hosts need root (containers, network namespaces, mounts)`,
          fix: "run as root, e.g. `sudo -i`, then the same command; `npm run test:unit` needs no root",
        },
  );

  if (linux) {
    const kernel = majorMinor(f.kernelRelease);
    const want = MIN_KERNEL.join(".");
    out.push(
      kernel && atLeast(kernel, MIN_KERNEL)
        ? { item: `kernel >= ${want}`, ok: true, detail: `${kernel.join(".")} (pidfd_getfd: re-listen on a running socket)` }
        : {
            item: `kernel >= ${want}`,
            ok: false,
            detail: `${f.kernelRelease}: no pidfd_getfd, which the library uses to give a running socket a new backlog`,
            fix: `use a machine with Linux ${want} or newer (Debian 11+, Ubuntu 20.10+)`,
          },
    );
    out.push(cgroupCheck(f.mountinfo));
  }

  out.push(goCheck(f));

  if (linux) {
    const needs = diskNeeds(f);
    const short = needs.filter((n) => n.place.freeBytes < n.needBytes);
    const cachedRootfs = f.rootfs.filter((r) => r.cached).map((r) => r.suite);
    const cached = [
      f.toolchain.cached || f.toolchain.ambient ? "Pulumi toolchain" : "",
      cachedRootfs.length ? `lab root fs (${cachedRootfs.join(", ")})` : "",
    ].filter(Boolean);
    const cachedNote = cached.length ? `; already cached: ${cached.join(", ")}` : "";
    const where = (n: (typeof needs)[number]) => `${gb(n.place.freeBytes)} free at ${n.place.path}, needs ${gb(n.needBytes)} (${n.for.join(", ")})`;
    out.push(
      short.length === 0
        ? { item: "disk space", ok: true, detail: `${needs.map(where).join("; ")}${cachedNote}` }
        : {
            item: "disk space",
            ok: false,
            detail: `${short.map(where).join("; ")}${cachedNote}`,
            fix: `free ${short.map((n) => `${gb(n.needBytes - n.place.freeBytes)} at ${n.place.path}`).join(" and ")}, or point BACKLOG_CACHE_DIR (and GOMODCACHE, GOCACHE) at a bigger disk`,
          },
    );

    const pkgs = f.missingPackages;
    out.push(
      !f.apt
        ? {
            item: "apt (Debian packages)",
            ok: false,
            detail: "no apt-get/dpkg-query: the lab installs its packages and builds its Debian root fs with apt and debootstrap",
            fix: "use Debian or Ubuntu",
          }
        : pkgs.length === 0
          ? { item: "lab packages", ok: true, detail: `installed: ${LAB_PACKAGES.join(" ")}` }
          : { item: "lab packages", ok: true, detail: `the first run installs ${pkgs.join(" ")} with apt-get` },
    );
  }

  const node = f.nodeModulesNode === null ? null : majorMinor(f.nodeModulesNode);
  out.push(
    node && node[0] >= MIN_NODE
      ? { item: `Node >= ${MIN_NODE} in node_modules`, ok: true, detail: f.nodeModulesNode!.trim() }
      : {
          item: `Node >= ${MIN_NODE} in node_modules`,
          ok: false,
          detail: node ? `${f.nodeModulesNode!.trim()} is too old` : "node_modules/.bin/node is missing",
          fix: "run `npm ci` (it installs Node 24, the npm package `node`)",
        },
  );
  return out;
}

function goCheck(f: Facts): Check {
  const item = `Go >= ${MIN_GO.join(".")}`;
  const have = f.goVersion === null ? null : majorMinor(f.goVersion, "go");
  const token = f.goVersion?.match(/go\d+\.\d+[\w.-]*/)?.[0];
  const found = f.goVersion === null ? "no go on PATH" : token && have ? token : `unrecognised: ${f.goVersion.trim()}`;
  if (f.toolchain.ambient) return { item, ok: true, detail: `not needed: using ${f.toolchain.ambient} (${found})` };
  if (f.toolchain.cached) return { item, ok: true, detail: `not needed: the Pulumi toolchain is already built in ${f.toolchain.dir} (${found})` };
  const fix = `install Go ${MIN_GO.join(".")} or newer (https://go.dev/dl/) and put its bin/ first on PATH; the first run builds the Pulumi toolchain with it`;
  if (f.goVersion === null) return { item, ok: false, detail: "no `go` on PATH", fix };
  if (!have) return { item, ok: false, detail: `cannot tell the version: \`go version\` says "${f.goVersion.trim()}"`, fix };
  if (!atLeast(have, MIN_GO)) return { item, ok: false, detail: `${found} is too old`, fix };
  return { item, ok: true, detail: `${found}; builds the Pulumi toolchain on the first run (about 10 minutes on 2 cores)` };
}

/** cgroup v2, unified (/sys/fs/cgroup) or hybrid (next to v1 hierarchies), mounted read-write. */
export function cgroupCheck(mountinfo: string): Check {
  const item = "cgroup v2";
  const v2 = mountinfo
    .split("\n")
    .map((line) => {
      const [left, right] = line.split(" - ");
      if (!right) return null;
      const fields = left.split(" ");
      return right.split(" ")[0] === "cgroup2" ? { mountPoint: fields[4], options: fields[5].split(",") } : null;
    })
    .filter((m): m is { mountPoint: string; options: string[] } => m !== null);
  const fix =
    "the lab hosts run systemd, which needs a writable cgroup v2 hierarchy: boot the machine with cgroup v2 " +
    "(the default since Debian 11 / Ubuntu 21.10; kernel option systemd.unified_cgroup_hierarchy=1), or use a VM";
  if (v2.length === 0) return { item, ok: false, detail: "only cgroup v1 is mounted", fix };
  const rw = v2.filter((m) => m.options.includes("rw"));
  if (rw.length === 0) return { item, ok: false, detail: `mounted read-only at ${v2[0].mountPoint}`, fix };
  const unified = rw.find((m) => m.mountPoint === "/sys/fs/cgroup");
  return unified
    ? { item, ok: true, detail: "unified hierarchy at /sys/fs/cgroup" }
    : { item, ok: true, detail: `hybrid: cgroup2 at ${rw[0].mountPoint} next to v1 controllers (the lab uses both)` };
}

/** The report: one line per check, then a summary line. */
export function formatReport(list: Check[]): string[] {
  const width = Math.max(...list.map((c) => c.item.length));
  const lines = list.map((c) => `  ${(c.ok ? "ok" : "FAIL").padEnd(4)}  ${c.item.padEnd(width)}  ${c.detail}${c.fix ? ` -- fix: ${c.fix}` : ""}`);
  const failed = list.filter((c) => !c.ok).length;
  lines.push(
    failed === 0
      ? `doctor: all ${list.length} prerequisites are met`
      : `doctor: ${failed} of ${list.length} prerequisites missing (FAIL above); fix them and run \`npm run doctor\` again`,
  );
  return lines;
}

// ---- gathering the facts on this machine ----

function output(cmd: string, args: string[], cwd?: string): string | null {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 30_000 });
  return r.status === 0 ? r.stdout : null;
}

const onPath = (cmd: string) => output("sh", ["-c", `command -v ${cmd}`]) !== null;

/** The file system holding `p` (or its nearest existing parent: caches are created on first use). */
function place(p: string): Place | null {
  try {
    let dir = path.resolve(p);
    while (!fs.existsSync(dir)) dir = path.dirname(dir);
    const s = fs.statfsSync(dir);
    return { path: p, device: fs.statSync(dir).dev, freeBytes: s.bavail * s.bsize };
  } catch {
    return null;
  }
}

function cmpVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

export async function gatherFacts(repo: string): Promise<Facts> {
  const goVersion = onPath("go") ? output("go", ["version"]) : null;
  // The same choice as scripts/env.sh: a `pulumi` on PATH at least the pinned version, or the built toolchain.
  const goMod = fs.readFileSync(path.join(repo, "scripts/toolchain/go.mod"), "utf8");
  const pinned = goMod.match(/^\s*github\.com\/pulumi\/pulumi\/pkg\/v3 v(\S+)/m)?.[1] ?? "";
  let ambient: string | undefined;
  if (!process.env.BACKLOG_BUILD_TOOLCHAIN && onPath("pulumi")) {
    const have = output("pulumi", ["version"])?.trim().replace(/^v/, "");
    if (have && pinned && cmpVersions(have, pinned) >= 0) ambient = `pulumi ${have} from PATH`;
  }
  const tc = spawnSync("bash", [path.join(repo, "scripts/toolchain/build.sh"), "--is-cached"], { encoding: "utf8" });
  const cacheDefault =
    process.getuid?.() === 0 ? "/var/cache/pulumi-backlog" : path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "pulumi-backlog");
  const toolchainDir = tc.stdout.trim() || path.join(process.env.BACKLOG_CACHE_DIR || cacheDefault, "toolchain", "pulumi");
  // Root fs paths come from the lab itself (a .ts module: loaded by path, at run time only).
  const lab = (await import(path.join(repo, "scripts/lab/rootfs.ts"))) as {
    rootfsPath(suite: string): string;
    RELEASES?: Record<string, unknown>;
    DEFAULT_SUITE?: string;
  };
  const suites = lab.RELEASES ? Object.keys(lab.RELEASES) : [lab.DEFAULT_SUITE ?? "bookworm"];
  const rootfs = suites.map((suite) => {
    const p = lab.rootfsPath(suite);
    return { suite, path: p, cached: fs.existsSync(p) };
  });
  const [modCache] = goVersion === null ? [] : (output("go", ["env", "GOMODCACHE"]) ?? "").split("\n");
  const apt = onPath("apt-get") && onPath("dpkg-query");
  const installed = (pkg: string) => (output("dpkg-query", ["-W", "-f=${Status}", pkg]) ?? "").includes("install ok installed");
  let mountinfo = "";
  try {
    mountinfo = fs.readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    // not Linux
  }
  return {
    platform: process.platform,
    uid: process.getuid?.(),
    kernelRelease: os.release(),
    goVersion,
    toolchain: { cached: tc.status === 0, dir: toolchainDir, ambient },
    rootfs,
    disks: {
      toolchain: place(path.dirname(path.dirname(toolchainDir))),
      goCaches: modCache ? place(modCache) : null,
      rootfs: place(path.dirname(rootfs[0].path)),
      lab: place(process.env.BACKLOG_LAB_DIR || path.join(repo, ".lab")),
    },
    mountinfo,
    apt,
    missingPackages: apt ? LAB_PACKAGES.filter((p) => !installed(p)) : [],
    nodeModulesNode: output(path.join(repo, "node_modules/.bin/node"), ["--version"]),
  };
}

async function main(): Promise<number> {
  const repo = path.resolve(path.dirname(process.argv[1]), "..");
  console.log("doctor: checking what `npm run demo` and `npm test` need from this machine");
  const list = checks(await gatherFacts(repo));
  for (const line of formatReport(list)) console.log(line);
  return list.every((c) => c.ok) ? 0 : 1;
}

// Run as a script (`node scripts/doctor.ts`), not when the unit tests import it.
if (process.argv[1] && path.basename(process.argv[1]) === "doctor.ts") {
  main().then(
    (code) => process.exit(code),
    (e: Error) => {
      console.error(`doctor: ${e.stack ?? e.message}`);
      process.exit(2);
    },
  );
}
