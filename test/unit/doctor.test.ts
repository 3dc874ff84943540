/**
 * `npm run doctor` (scripts/doctor.ts): the checks on made-up machines, and the progress the
 * toolchain build (scripts/toolchain/build.sh) prints while it runs, with a stand-in `go`.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checks, type Check, type Facts, formatReport, NEED_BYTES } from "../../scripts/doctor";

const GB = 1e9;
const UNIFIED = [
  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw",
  "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate",
].join("\n");
const HYBRID = [
  "22 1 8:1 / / rw,relatime - ext4 /dev/vda rw",
  "30 22 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
  "32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd",
  "33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
].join("\n");
const V1_ONLY = HYBRID.split("\n")
  .filter((l) => !l.includes("cgroup2"))
  .join("\n");

const disk = (freeGB: number, device = 1, path = "/var/cache/pulumi-backlog") => ({ path, device, freeBytes: freeGB * GB });

/** A fresh machine where everything is in order: nothing built or cached yet. */
function fine(over: Partial<Facts> = {}): Facts {
  return {
    platform: "linux",
    uid: 0,
    kernelRelease: "6.1.0-18-amd64",
    goVersion: "go version go1.26.2 linux/amd64\n",
    toolchain: { cached: false, dir: "/var/cache/pulumi-backlog/toolchain/pulumi-3.274.1-0123456789abcdef" },
    rootfs: [
      { suite: "bookworm", cached: false, path: "/var/cache/pulumi-backlog/rootfs-aaaaaaaaaaaa" },
      { suite: "trixie", cached: false, path: "/var/cache/pulumi-backlog/rootfs-bbbbbbbbbbbb" },
    ],
    disks: { toolchain: disk(50), goCaches: disk(50, 1, "/root/go/pkg/mod"), rootfs: disk(50), lab: disk(50, 1, "/src/.lab") },
    mountinfo: UNIFIED,
    apt: true,
    missingPackages: [],
    nodeModulesNode: "v24.9.0\n",
    ...over,
  };
}

const byItem = (list: Check[], prefix: string): Check => {
  const c = list.find((x) => x.item.startsWith(prefix));
  if (!c) throw new Error(`no check "${prefix}" in ${list.map((x) => x.item).join(", ")}`);
  return c;
};
const failed = (f: Facts) =>
  checks(f)
    .filter((c) => !c.ok)
    .map((c) => c.item);

describe("doctor: checks", () => {
  it("all fine: every item ok, one line each and a summary", () => {
    const list = checks(fine());
    expect(list.map((c) => c.item)).toEqual([
      "Linux",
      "root",
      "kernel >= 5.6",
      "cgroup v2",
      "Go >= 1.26",
      "disk space",
      "lab packages",
      "Node >= 22 in node_modules",
    ]);
    expect(list.filter((c) => !c.ok)).toEqual([]);
    const lines = formatReport(list);
    expect(lines).toHaveLength(list.length + 1);
    expect(lines.slice(0, -1).every((l) => /^ {2}ok {4}/.test(l))).toBe(true);
    expect(lines.at(-1)).toBe("doctor: all 8 prerequisites are met");
    expect(byItem(list, "Go").detail).toContain("go1.26.2");
  });

  it("not root: FAIL with how to run as root and what works without", () => {
    const list = checks(fine({ uid: 1000 }));
    expect(failed(fine({ uid: 1000 }))).toEqual(["root"]);
    const root = byItem(list, "root");
    expect(root.detail).toContain("uid 1000");
    expect(root.fix).toMatch(/sudo/);
    expect(root.fix).toContain("npm run test:unit");
    const lines = formatReport(list);
    expect(lines.find((l) => l.includes("FAIL"))).toMatch(/^ {2}FAIL {2}root .* -- fix: run as root/);
    expect(lines.at(-1)).toMatch(/^doctor: 1 of 8 prerequisites missing/);
  });

  it("no Go: FAIL with where to get it, unless the toolchain is already built or a new enough pulumi is on PATH", () => {
    expect(failed(fine({ goVersion: null }))).toEqual(["Go >= 1.26"]);
    const go = byItem(checks(fine({ goVersion: null })), "Go");
    expect(go.detail).toBe("no `go` on PATH");
    expect(go.fix).toContain("https://go.dev/dl/");
    const built = fine({ goVersion: null, toolchain: { cached: true, dir: "/var/cache/pulumi-backlog/toolchain/x" } });
    expect(failed(built)).toEqual([]);
    expect(byItem(checks(built), "Go").detail).toMatch(/^not needed: the Pulumi toolchain is already built/);
    const ambient = fine({ goVersion: null, toolchain: { cached: false, dir: "/x", ambient: "pulumi 3.280.0 from PATH" } });
    expect(failed(ambient)).toEqual([]);
  });

  it("Go too old: FAIL naming the version found; newer, rc and devel versions pass", () => {
    for (const old of ["go version go1.25.3 linux/amd64", "go version go1.9 linux/amd64", "go version go1.22rc1 linux/amd64"]) {
      const go = byItem(checks(fine({ goVersion: old })), "Go");
      expect(go.ok).toBe(false);
      expect(go.detail).toBe(`${old.split(" ")[2]} is too old`);
      expect(go.fix).toContain("Go 1.26 or newer");
    }
    for (const ok of [
      "go version go1.26.0 linux/arm64",
      "go version go1.27rc1 linux/amd64",
      "go version go2.0 linux/amd64",
      "go version devel go1.27-0a1b2c3 linux/amd64",
    ]) {
      expect(byItem(checks(fine({ goVersion: ok })), "Go").ok).toBe(true);
    }
    expect(byItem(checks(fine({ goVersion: "go: command is broken" })), "Go")).toMatchObject({
      ok: false,
      detail: 'cannot tell the version: `go version` says "go: command is broken"',
    });
  });

  it("too little disk: FAIL with what needs the space, how much to free and where", () => {
    const f = fine({ disks: { toolchain: disk(3), goCaches: disk(3), rootfs: disk(3), lab: disk(3) } });
    const need = NEED_BYTES.toolchain + NEED_BYTES.goCaches + 2 * NEED_BYTES.rootfs + NEED_BYTES.lab;
    expect(failed(f)).toEqual(["disk space"]);
    const d = byItem(checks(f), "disk");
    expect(d.detail).toContain(`3.0 GB free at /var/cache/pulumi-backlog, needs ${(need / GB).toFixed(1)} GB`);
    expect(d.detail).toContain("Go's caches for building it");
    expect(d.detail).toContain("lab root fs (bookworm, trixie)");
    expect(d.fix).toContain(`free ${((need - 3 * GB) / GB).toFixed(1)} GB at /var/cache/pulumi-backlog`);
    expect(d.fix).toContain("BACKLOG_CACHE_DIR");
  });

  it("disk: what is cached needs no space; separate file systems are checked separately", () => {
    const cached = fine({
      toolchain: { cached: true, dir: "/var/cache/pulumi-backlog/toolchain/x" },
      rootfs: [{ suite: "bookworm", cached: true, path: "/var/cache/pulumi-backlog/rootfs-a" }],
      disks: { toolchain: disk(1), goCaches: disk(1), rootfs: disk(1), lab: disk(1) },
    });
    expect(failed(cached)).toEqual([]);
    expect(byItem(checks(cached), "disk").detail).toContain("already cached: Pulumi toolchain, lab root fs (bookworm)");
    // Go's caches on a small root fs, the rest on a big disk: only the root fs is short.
    const split = fine({
      disks: {
        toolchain: disk(100, 2, "/data/cache"),
        goCaches: disk(2, 1, "/root/go/pkg/mod"),
        rootfs: disk(100, 2, "/data/cache"),
        lab: disk(100, 2, "/data/src/.lab"),
      },
    });
    const d = byItem(checks(split), "disk");
    expect(d.ok).toBe(false);
    expect(d.detail).toMatch(/^2\.0 GB free at \/root\/go\/pkg\/mod, needs 4\.5 GB \(Go's caches for building it 4\.5 GB\)$/);
    expect(d.fix).toMatch(/^free 2\.5 GB at \/root\/go\/pkg\/mod,/);
  });

  it("kernel older than 5.6: FAIL (no pidfd_getfd)", () => {
    expect(failed(fine({ kernelRelease: "5.4.0-150-generic" }))).toEqual(["kernel >= 5.6"]);
    expect(byItem(checks(fine({ kernelRelease: "4.19.0-26-amd64" })), "kernel").detail).toContain("pidfd_getfd");
    expect(failed(fine({ kernelRelease: "5.6.0" }))).toEqual([]);
    expect(failed(fine({ kernelRelease: "5.10.0-28-amd64" }))).toEqual([]);
  });

  it("cgroups: unified or hybrid v2 pass; v1 only or read-only fail", () => {
    expect(byItem(checks(fine({ mountinfo: UNIFIED })), "cgroup").detail).toBe("unified hierarchy at /sys/fs/cgroup");
    expect(byItem(checks(fine({ mountinfo: HYBRID })), "cgroup").detail).toContain("hybrid: cgroup2 at /sys/fs/cgroup/unified");
    expect(failed(fine({ mountinfo: V1_ONLY }))).toEqual(["cgroup v2"]);
    expect(byItem(checks(fine({ mountinfo: V1_ONLY })), "cgroup").fix).toContain("systemd.unified_cgroup_hierarchy=1");
    const ro = UNIFIED.replace("/sys/fs/cgroup rw,", "/sys/fs/cgroup ro,");
    expect(byItem(checks(fine({ mountinfo: ro })), "cgroup").detail).toBe("mounted read-only at /sys/fs/cgroup");
  });

  it("lab packages: missing ones are fine when apt can install them; no apt fails", () => {
    const missing = checks(fine({ missingPackages: ["debootstrap", "socat"] }));
    expect(byItem(missing, "lab packages")).toMatchObject({ ok: true, detail: "the first run installs debootstrap socat with apt-get" });
    expect(failed(fine({ apt: false }))).toEqual(["apt (Debian packages)"]);
  });

  it("Node in node_modules: missing or older than 22 fails with `npm ci`", () => {
    expect(byItem(checks(fine({ nodeModulesNode: null })), "Node")).toMatchObject({ ok: false, detail: "node_modules/.bin/node is missing" });
    expect(byItem(checks(fine({ nodeModulesNode: "v20.20.2" })), "Node")).toMatchObject({ ok: false, detail: "v20.20.2 is too old" });
    expect(byItem(checks(fine({ nodeModulesNode: null })), "Node").fix).toContain("npm ci");
  });

  it("not Linux: says so and leaves out the Linux-only checks", () => {
    const list = checks(fine({ platform: "darwin", uid: 501, kernelRelease: "23.4.0", mountinfo: "" }));
    expect(list.map((c) => c.item)).toEqual(["Linux", "root", "Go >= 1.26", "Node >= 22 in node_modules"]);
    expect(list.filter((c) => !c.ok).map((c) => c.item)).toEqual(["Linux", "root"]);
    expect(byItem(list, "Linux").fix).toContain("npm run test:unit");
  });
});

/** The longest time between consecutive lines (ms), the start counting as a line. */
function longestSilence(times: number[], start: number): number {
  let prev = start;
  let longest = 0;
  for (const t of times) {
    longest = Math.max(longest, t - prev);
    prev = t;
  }
  return longest;
}

const repo = join(__dirname, "..", "..");
const buildSh = join(repo, "scripts", "toolchain", "build.sh");

describe("toolchain build: progress lines", () => {
  it("prints a progress line at least every 30 s by default", () => {
    const m = readFileSync(buildSh, "utf8").match(/BACKLOG_PROGRESS_SECONDS:-(\d+)/);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(30);
  });

  it("longestSilence measures the gaps", () => {
    expect(longestSilence([], 0)).toBe(0);
    expect(longestSilence([5, 7, 20], 0)).toBe(13);
    expect(longestSilence([40], 10)).toBe(30);
  });

  // A stand-in for go that takes a few seconds per step, runs "link" as its child like go does,
  // and writes the binaries; build.sh runs against it with a 1 s progress interval.
  const linux = process.platform === "linux" && existsSync("/proc/self/stat");
  (linux ? it : it.skip)(
    "a build without a cached toolchain: every phase announced, no silence longer than the interval, plain lines",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "doctor-test-"));
      try {
        for (const d of ["bin", "tools", "sdk/nodejs/dist", "cache"]) mkdirSync(join(dir, d), { recursive: true });
        const exe = (file: string, text: string) => {
          writeFileSync(join(dir, file), text);
          chmodSync(join(dir, file), 0o755);
        };
        exe("sdk/nodejs/dist/pulumi-resource-pulumi-nodejs", "#!/bin/sh\n");
        exe("tools/link", '#!/bin/bash\nfor i in $(seq 1 "$1"); do sleep 0.25; done\n');
        exe(
          "bin/go",
          `#!/bin/bash
set -e
here=${JSON.stringify(dir)}
out=""; prev=""; for a in "$@"; do [ "$prev" = -o ] && out="$a"; prev="$a"; done
case "$1 $2" in
  "mod download") for i in $(seq 1 12); do echo "# get https://proxy.golang.org/m$i/@v/v1.0.0.zip"; sleep 0.25; echo "# get https://proxy.golang.org/m$i/@v/v1.0.0.zip: 200 OK (0.1s)"; done ;;
  "list -deps") seq 1 12 | sed 's|^|pkg/|' ;;
  "list -m") echo "$here/sdk" ;;
  "build -v") for i in $(seq 1 12); do echo "pkg/$i" >&2; sleep 0.25; done
    "$here/tools/link" 12
    printf '#!/bin/sh\\necho v3.0.0\\n' > "$out"; chmod +x "$out" ;;
  "install -v") echo "go: downloading example.com/m v1.0.0" >&2; for i in $(seq 1 6); do echo "pkg/$i" >&2; sleep 0.25; done
    "$here/tools/link" 6
    printf '#!/bin/sh\\n' > "$GOBIN/pulumi-language-yaml"; chmod +x "$GOBIN/pulumi-language-yaml" ;;
  *) echo "stand-in go: unexpected $*" >&2; exit 2 ;;
esac
`,
        );
        const env = { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH}`, BACKLOG_CACHE_DIR: join(dir, "cache"), BACKLOG_PROGRESS_SECONDS: "1" };
        const run = () =>
          new Promise<{ code: number | null; stdout: string; lines: { t: number; text: string }[]; raw: string; start: number }>((resolve) => {
            const start = Date.now();
            const child = spawn("bash", [buildSh], { env, stdio: ["ignore", "pipe", "pipe"] });
            let stdout = "";
            let raw = "";
            let partial = "";
            const lines: { t: number; text: string }[] = [];
            child.stdout.on("data", (d) => (stdout += d));
            child.stderr.on("data", (d) => {
              raw += d;
              const parts = (partial + d).split("\n");
              partial = parts.pop()!;
              for (const text of parts) lines.push({ t: Date.now(), text });
            });
            child.on("close", (code) => resolve({ code, stdout, lines, raw, start }));
          });

        const isCached = () => spawnSync("bash", [buildSh, "--is-cached"], { env, encoding: "utf8" });
        expect(isCached().status).toBe(1);
        const first = await run();
        expect(first.code).toBe(0);
        const out = first.stdout.trim();
        expect(out).toMatch(new RegExp(`^${join(dir, "cache", "toolchain")}/pulumi-[\\d.]+-[0-9a-f]{16}$`));
        for (const bin of ["pulumi", "pulumi-language-nodejs", "pulumi-resource-pulumi-nodejs", "pulumi-language-yaml"]) {
          expect(existsSync(join(out, bin))).toBe(true);
        }
        const texts = first.lines.map((l) => l.text);
        // Plain lines for terminals and CI logs alike.
        expect(first.raw).not.toContain("\r");
        expect(texts.every((t) => t.startsWith("toolchain: "))).toBe(true);
        // Every phase, in order, with elapsed time; compiling and then linking seen while go runs.
        const order = [
          /about 10 minutes/,
          /\[0m\d\ds\] 1\/4 downloading Go modules \(\d+;/,
          /\[0m\d\ds\] 1\/4 downloading Go modules: \d+ of \d+ module archives fetched/,
          /\[0m\d\ds\] 1\/4 Go modules downloaded \(12 fetched/,
          /\[0m\d\ds\] 2\/4 compiling the Pulumi engine: 12 packages/,
          /\[0m\d\ds\] 2\/4 compiling the Pulumi engine: \d+ of up to 12 packages compiled/,
          /\[0m\d\ds\] 2\/4 linking the Pulumi engine \(12 packages compiled\)/,
          /\[0m\d\ds\] 3\/4 building pulumi-language-nodejs/,
          /\[0m\d\ds\] 4\/4 building pulumi-language-yaml/,
          /\[0m\d\ds\] 4\/4 (compiling|linking) pulumi-language-yaml/,
          /\[0m\d\ds\] built: /,
        ];
        let at = 0;
        for (const re of order) {
          const i = texts.findIndex((t, k) => k >= at && re.test(t));
          if (i < 0) throw new Error(`no line matching ${re} after line ${at} in:\n${texts.join("\n")}`);
          at = i;
        }
        // Never silent for longer than the interval (1 s here, 20 s by default) plus the 0.5 s poll and
        // slack for a busy machine; each step of the stand-in takes 3 s or more, so without the ticker
        // this fails.
        expect(
          longestSilence(
            first.lines.map((l) => l.t),
            first.start,
          ),
        ).toBeLessThan(3_000);

        // Cached now: only the directory, at once, and --is-cached says so.
        const second = await run();
        expect(second.code).toBe(0);
        expect(second.stdout.trim()).toBe(out);
        expect(second.lines).toEqual([]);
        expect(isCached()).toMatchObject({ status: 0, stdout: `${out}\n` });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
