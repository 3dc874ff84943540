/**
 * Which sysctl line wins under which tool, and which lines undo the drop-in. The cases follow what
 * systemd-sysctl and procps did on lab hosts of Debian 11, 12 and 13 (docs/sysctl.md).
 */
import { spawnSync } from "node:child_process";
import { isSysctlSource } from "../../../src/core/converge";
import { NEUTRALIZED_PREFIX } from "../../../src/core/plan";
import {
  NEUTRALIZED_MARKER,
  type SysctlAssignment,
  type SysctlFile,
  type SysctlSources,
  type WantedValue,
  formatConflict,
  loadOrder,
  parseAssignmentText,
  sysctlConflicts,
  sysctlSourcesAwk,
  valuesAfter,
  winners,
} from "../../../src/core/sysctlSources";

const DROP_IN = "/etc/sysctl.d/zz-pulumi-backlog.conf";
const S = "net.core.somaxconn";
const SYN = "net.ipv4.tcp_max_syn_backlog";

function line(path: string, n: number, text: string): SysctlAssignment {
  const a = parseAssignmentText(text)!;
  return { path, line: n, key: a.key, value: a.value, text: text.trim() };
}

/** Debian 12 as built: the link to /etc/sysctl.conf, package files in /usr/lib and /lib (one directory, merged /usr). */
const BOOKWORM: SysctlFile[] = [
  { path: "/etc/sysctl.d/99-sysctl.conf", target: "/etc/sysctl.conf" },
  { path: "/usr/lib/sysctl.d/50-pid-max.conf" },
  { path: "/usr/lib/sysctl.d/99-protect-links.conf" },
  { path: "/lib/sysctl.d/50-pid-max.conf" },
  { path: "/lib/sysctl.d/99-protect-links.conf" },
  { path: "/etc/sysctl.conf" },
];

/** The sysctl.conf case of issue 14: `net.core.somaxconn = 128` in /etc/sysctl.conf, read through the link too. */
function sysctlConf128(files: SysctlFile[] = BOOKWORM): SysctlSources {
  const lines = [line("/etc/sysctl.conf", 69, "net.core.somaxconn = 128")];
  if (files.some((f) => f.path === "/etc/sysctl.d/99-sysctl.conf")) lines.unshift(line("/etc/sysctl.d/99-sysctl.conf", 69, "net.core.somaxconn = 128"));
  return { files, lines };
}

describe("loadOrder", () => {
  const files: SysctlFile[] = [
    { path: "/etc/sysctl.d/50-a.conf" },
    { path: "/run/sysctl.d/50-a.conf" },
    { path: "/usr/lib/sysctl.d/60-b.conf" },
    { path: "/etc/sysctl.d/60-b.conf", target: "/dev/null" },
    { path: "/run/sysctl.d/70-c.conf" },
    { path: "/usr/local/lib/sysctl.d/70-c.conf" },
    { path: "/etc/sysctl.d/B.conf" },
    { path: "/etc/sysctl.d/99-sysctl.conf", target: "/etc/sysctl.conf" },
    { path: "/usr/lib/sysctl.d/protect-links.conf" },
    { path: "/etc/sysctl.conf" },
  ];

  it("sorts by file name across directories in byte order, the first directory masking the same name later (as systemd-sysctl 247/252/257 printed it)", () => {
    expect(loadOrder(files, "systemd-sysctl", DROP_IN)).toEqual([
      "/etc/sysctl.d/50-a.conf", // masks /run/sysctl.d/50-a.conf
      "/etc/sysctl.d/60-b.conf", // the /dev/null link masks /usr/lib/sysctl.d/60-b.conf
      "/run/sysctl.d/70-c.conf", // masks /usr/local/lib/sysctl.d/70-c.conf
      "/etc/sysctl.d/99-sysctl.conf",
      "/etc/sysctl.d/B.conf", // "B" (0x42) sorts after "9" and before "p" and "z"
      "/usr/lib/sysctl.d/protect-links.conf",
      DROP_IN,
    ]);
  });

  it("sysctl --system reads the same files, then /etc/sysctl.conf once more, last; sysctl -p reads only /etc/sysctl.conf", () => {
    const boot = loadOrder(files, "systemd-sysctl", DROP_IN);
    expect(loadOrder(files, "sysctl --system", DROP_IN)).toEqual([...boot, "/etc/sysctl.conf"]);
    expect(loadOrder(files, "sysctl -p", DROP_IN)).toEqual(["/etc/sysctl.conf"]);
  });

  it("without /etc/sysctl.conf (Debian 13) neither --system nor -p reads it", () => {
    const trixie = files.filter((f) => f.path !== "/etc/sysctl.conf" && f.path !== "/etc/sysctl.d/99-sysctl.conf");
    expect(loadOrder(trixie, "sysctl --system")).not.toContain("/etc/sysctl.conf");
    expect(loadOrder(trixie, "sysctl -p")).toEqual([]);
  });

  it("ignores files outside the sysctl directories and names not ending in .conf", () => {
    expect(loadOrder([{ path: "/etc/sysctl.d/README.sysctl" }, { path: "/opt/x/10-a.conf" }], "systemd-sysctl")).toEqual([]);
  });
});

describe("winners and valuesAfter", () => {
  const sources: SysctlSources = {
    files: [
      { path: "/etc/sysctl.d/50-a.conf" },
      { path: "/run/sysctl.d/50-a.conf" },
      { path: "/usr/lib/sysctl.d/60-b.conf" },
      { path: "/etc/sysctl.d/60-b.conf", target: "/dev/null" },
      ...BOOKWORM,
      { path: DROP_IN },
    ],
    lines: [
      line("/etc/sysctl.d/50-a.conf", 1, "net.core.somaxconn = 1001"),
      line("/run/sysctl.d/50-a.conf", 1, "net.core.somaxconn = 1002"),
      line("/usr/lib/sysctl.d/60-b.conf", 1, "net.core.somaxconn = 1003"),
      line("/etc/sysctl.d/99-sysctl.conf", 3, "net.core.somaxconn = 128"),
      line("/etc/sysctl.conf", 3, "net.core.somaxconn = 128"),
      line(DROP_IN, 5, "net.core.somaxconn = 4000"),
      line(DROP_IN, 6, "net.ipv4.tcp_max_syn_backlog = 4000"),
    ],
  };

  it("boot: the drop-in (sorted last) wins; --system and -p: /etc/sysctl.conf wins", () => {
    const boot = winners(sources, "systemd-sysctl", [S, SYN]);
    expect(boot[S]).toMatchObject({ path: DROP_IN, value: 4000 });
    expect(winners(sources, "sysctl --system", [S])[S]).toMatchObject({ path: "/etc/sysctl.conf", file: "/etc/sysctl.conf", line: 3, value: 128 });
    expect(winners(sources, "sysctl -p", [S])[S]).toMatchObject({ path: "/etc/sysctl.conf", value: 128 });
  });

  it("a key no file sets keeps the running value", () => {
    expect(valuesAfter(sources, "sysctl -p", [S, SYN], { [S]: 4000, [SYN]: 7 })).toEqual({ [S]: 128, [SYN]: 7 });
    expect(valuesAfter(sources, "sysctl --system", [S, SYN], { [S]: 4000, [SYN]: 7 })).toEqual({ [S]: 128, [SYN]: 4000 });
  });

  it("within one file the last line wins; a value that is not a number has no effect", () => {
    const s: SysctlSources = {
      files: [{ path: "/etc/sysctl.d/zzzz.conf" }],
      lines: [
        line("/etc/sysctl.d/zzzz.conf", 1, "net.core.somaxconn = 10"),
        line("/etc/sysctl.d/zzzz.conf", 2, "net/core/somaxconn=20"),
        line("/etc/sysctl.d/zzzz.conf", 3, "net.core.somaxconn = lots"),
      ],
    };
    expect(winners(s, "systemd-sysctl", [S])[S]).toMatchObject({ line: 2, value: 20 });
  });
});

describe("sysctlConflicts", () => {
  const want = { [S]: { value: 4096 } };

  it("Debian 11/12: /etc/sysctl.conf read through 99-sysctl.conf is harmless at boot, but wins under sysctl --system and sysctl -p (one entry, the link named)", () => {
    const c = sysctlConflicts(sysctlConf128(), DROP_IN, want);
    expect(c).toEqual([
      {
        key: S,
        file: "/etc/sysctl.conf",
        line: 69,
        value: 128,
        text: "net.core.somaxconn = 128",
        wanted: 4096,
        tools: ["sysctl --system", "sysctl -p"],
        via: [],
      },
    ]);
    expect(formatConflict(c[0]!)).toBe(
      "/etc/sysctl.conf:69 sets net.core.somaxconn = 128 (the profile wants 4096); it wins over the drop-in under sysctl --system, sysctl -p",
    );
  });

  it("Debian 13 (no link): the same line, same tools", () => {
    const trixie = BOOKWORM.filter((f) => f.path !== "/etc/sysctl.d/99-sysctl.conf");
    expect(sysctlConflicts(sysctlConf128(trixie), DROP_IN, want).map((c) => c.tools)).toEqual([["sysctl --system", "sysctl -p"]]);
  });

  it("a drop-in that sorts after ours wins at boot and under --system, not under -p; the link's real file is named, with the link", () => {
    const s: SysctlSources = {
      files: [...BOOKWORM, { path: "/etc/sysctl.d/zzzz-local.conf", target: "/srv/tuning/local.conf" }],
      lines: [line("/etc/sysctl.d/zzzz-local.conf", 2, "net.core.somaxconn=1024")],
    };
    expect(sysctlConflicts(s, DROP_IN, want)).toEqual([
      expect.objectContaining({
        file: "/srv/tuning/local.conf",
        line: 2,
        value: 1024,
        tools: ["systemd-sysctl", "sysctl --system"],
        via: ["/etc/sysctl.d/zzzz-local.conf"],
      }),
    ]);
  });

  it("masking: a conflicting /usr/lib file shadowed by a same-named /etc file (or a /dev/null link) is no conflict", () => {
    const lines = [line("/usr/lib/sysctl.d/zzz-vendor.conf", 1, "net.core.somaxconn = 64")];
    const open: SysctlSources = { files: [{ path: "/usr/lib/sysctl.d/zzz-vendor.conf" }], lines };
    expect(sysctlConflicts(open, DROP_IN, want)).toHaveLength(1);
    const masked: SysctlSources = { files: [{ path: "/usr/lib/sysctl.d/zzz-vendor.conf" }, { path: "/etc/sysctl.d/zzz-vendor.conf" }], lines };
    expect(sysctlConflicts(masked, DROP_IN, want)).toEqual([]);
    const nulled: SysctlSources = {
      files: [{ path: "/usr/lib/sysctl.d/zzz-vendor.conf" }, { path: "/run/sysctl.d/zzz-vendor.conf", target: "/dev/null" }],
      lines,
    };
    expect(sysctlConflicts(nulled, DROP_IN, want)).toEqual([]);
  });

  it("lines read before the drop-in, lines with the wanted value, and (mode atLeast) larger values are no conflict", () => {
    const s: SysctlSources = {
      files: [{ path: "/etc/sysctl.d/10-early.conf" }, { path: "/etc/sysctl.d/zzzz-a.conf" }, { path: "/etc/sysctl.d/zzzz-b.conf" }],
      lines: [
        line("/etc/sysctl.d/10-early.conf", 1, "net.core.somaxconn = 5"),
        line("/etc/sysctl.d/zzzz-a.conf", 1, "net.core.somaxconn = 4096"),
        line("/etc/sysctl.d/zzzz-b.conf", 1, "net.core.somaxconn = 8192"),
      ],
    };
    expect(sysctlConflicts(s, DROP_IN, { [S]: { value: 4096, comparison: "atLeast" } })).toEqual([]);
    expect(sysctlConflicts(s, DROP_IN, { [S]: { value: 4096 } }).map((c) => c.file)).toEqual(["/etc/sysctl.d/zzzz-b.conf"]);
  });

  it("the drop-in's present content does not count: a stale drop-in line is replaced by the wanted value", () => {
    const s: SysctlSources = { files: [{ path: DROP_IN }], lines: [line(DROP_IN, 3, "net.core.somaxconn = 1")] };
    expect(sysctlConflicts(s, DROP_IN, want)).toEqual([]);
  });

  it("every conflicting line after the drop-in is listed, even one a later line overrides (all must go for the drop-in to hold)", () => {
    const s: SysctlSources = {
      files: [{ path: "/etc/sysctl.conf" }],
      lines: [line("/etc/sysctl.conf", 1, "net.core.somaxconn = 128"), line("/etc/sysctl.conf", 9, "-net.core.somaxconn = 256")],
    };
    expect(sysctlConflicts(s, DROP_IN, want).map((c) => [c.line, c.value])).toEqual([
      [1, 128],
      [9, 256],
    ]);
  });

  it("only the wanted keys count", () => {
    const s: SysctlSources = { files: [{ path: "/etc/sysctl.conf" }], lines: [line("/etc/sysctl.conf", 1, "net.ipv4.tcp_max_syn_backlog = 128")] };
    expect(sysctlConflicts(s, DROP_IN, want)).toEqual([]);
    expect(sysctlConflicts(s, DROP_IN, { ...want, [SYN]: { value: 4096 } })).toHaveLength(1);
  });
});

describe("parseAssignmentText", () => {
  it.each([
    ["net.core.somaxconn = 128", S, 128],
    ["  -net/core/somaxconn=4096  ", S, 4096],
    ["net.core.somaxconn = 0x80", S, null],
    ["net.core.somaxconn = 99999999999", S, null],
  ])("%j", (text, key, value) => {
    expect(parseAssignmentText(text)).toEqual({ key, value });
  });
  it("a line without = is not an assignment", () => {
    expect(parseAssignmentText("net.core.somaxconn")).toBeUndefined();
  });
});

test("the apply script's neutralize prefix is the marker this module documents", () => {
  expect(NEUTRALIZED_PREFIX).toBe(NEUTRALIZED_MARKER);
});

// ---------------------------------------------------------------------------------------
// The awk port (the standalone script's) beside the TypeScript, on the same sources

describe("sysctlSourcesAwk: the standalone script's port agrees with this module", () => {
  const program = sysctlSourcesAwk();
  const TOOLS = ["systemd-sysctl", "sysctl --system", "sysctl -p"] as const;

  /** What plan.ts sysctlListing prints for these sources (lines in file order, as grep -n prints them). */
  function listing(s: SysctlSources): string {
    const files = s.files.map((f) => (f.target !== undefined ? `${f.path} -> ${f.target}` : f.path));
    const lines = s.files.flatMap((f) =>
      s.lines
        .filter((l) => l.path === f.path)
        .sort((a, b) => a.line - b.line)
        .map((l) => `${l.path}:${l.line}:${l.text}`),
    );
    return ["@files", ...files, "@lines", ...lines, ""].join("\n");
  }

  function awk(s: SysctlSources, vars: Record<string, string>): string[] {
    const args = Object.entries(vars).flatMap(([k, v]) => ["-v", `${k}=${v}`]);
    const r = spawnSync("awk", [...args, program], { input: listing(s), encoding: "utf8", env: { ...process.env, LC_ALL: "C" } });
    if (r.status !== 0) throw new Error(`awk failed (${r.status}): ${r.stderr}`);
    return r.stdout.split("\n").filter((l) => l !== "");
  }

  function check(s: SysctlSources, wanted: Record<string, WantedValue>): void {
    const want = Object.entries(wanted)
      .map(([k, w]) => `${k}=${w.value}=${w.comparison ?? "equal"}`)
      .join(" ");
    const conflicts = sysctlConflicts(s, DROP_IN, wanted);
    expect(awk(s, { dropin: DROP_IN, want, planned: "1", out: "messages" })).toEqual(
      conflicts.map((c) => `${isSysctlSource(c.file) ? 1 : 0}\t${formatConflict(c)}`),
    );
    expect(awk(s, { dropin: DROP_IN, want, planned: "1", out: "neutralize" })).toEqual(
      conflicts.filter((c) => isSysctlSource(c.file)).map((c) => `${c.file}\t${c.line}\t${c.text}`),
    );
    const keys = Object.keys(wanted);
    expect(awk(s, { dropin: DROP_IN, want, planned: "", out: "winners" })).toEqual(
      TOOLS.flatMap((tool) => {
        const w = winners(s, tool, keys);
        return keys.map((k) => `${tool}\t${k}\t${w[k]?.value ?? ""}\t${w[k] ? `${w[k]!.file}:${w[k]!.line}` : ""}`);
      }),
    );
  }

  test("issue #14 on Debian 12: /etc/sysctl.conf read through 99-sysctl.conf, and a later drop-in", () => {
    const s: SysctlSources = {
      files: [...BOOKWORM, { path: "/etc/sysctl.d/zzzz-local.conf" }, { path: DROP_IN }, { path: "/etc/sysctl.conf" }],
      lines: [
        line("/etc/sysctl.d/99-sysctl.conf", 69, "net.core.somaxconn = 128"),
        line("/etc/sysctl.conf", 69, "net.core.somaxconn = 128"),
        line("/etc/sysctl.d/zzzz-local.conf", 2, "-net/ipv4/tcp_max_syn_backlog=\t100 "),
        line(DROP_IN, 5, "net.core.somaxconn = 4096"),
      ],
    };
    check(s, { [S]: { value: 8192 }, [SYN]: { value: 8192, comparison: "atLeast" } });
    // And the drop-in as it is (not planned): what it sets now wins where nothing comes after it.
    expect(sysctlConflicts(s, DROP_IN, { [S]: { value: 8192 } }).map((c) => `${c.file}:${c.line}`)).toEqual(["/etc/sysctl.conf:69"]);
  });

  test("random sources: masking, links (/dev/null, unsafe, to another file), byte order, values that are no number", () => {
    let seed = 14;
    const rnd = (n: number) => {
      seed = (seed * 48271) % 2147483647;
      return seed % n;
    };
    const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)] as T;
    const dirs = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d", "/etc/other.d"];
    const names = ["10-a.conf", "99-sysctl.conf", "B.conf", "a.conf", "zz-pulumi-backlog.conf", "zzzz-local.conf", "Z_x.conf", "50-x.txt", "99-sysctl.conf"];
    const texts = (k: string) => [
      `${k} = ${rnd(20000)}`,
      `${k}=${rnd(20000)}`,
      `-${k} = ${rnd(20000)}`,
      `${k.replace(/\./g, "/")} = 8192`,
      `${k} = 8192`,
      `${k} = abc`,
      `${k} = 99999999999`,
      `${k}\t=\t${rnd(20000)}`,
      `${k} = 1 2`,
    ];
    let found = 0;
    for (let round = 0; round < 60; round++) {
      const files: SysctlFile[] = [];
      const seen = new Set<string>();
      const n = 1 + rnd(7);
      for (let i = 0; i < n; i++) {
        const path = rnd(6) === 0 ? "/etc/sysctl.conf" : `${pick(dirs)}/${pick(names)}`;
        if (seen.has(path)) continue;
        seen.add(path);
        const link = rnd(5);
        files.push(link === 0 ? { path, target: pick(["/etc/sysctl.conf", "/dev/null", "!unsafe", "/usr/lib/sysctl.d/real.conf"]) } : { path });
      }
      const lines: SysctlAssignment[] = [];
      for (const f of files) {
        let at = 0;
        for (let j = rnd(4); j > 0; j--) {
          at += 1 + rnd(30);
          lines.push(line(f.path, at, pick(texts(pick([S, SYN, "net.core.netdev_max_backlog"])))));
        }
      }
      const mode = rnd(2) === 0 ? "equal" : "atLeast";
      const wanted: Record<string, WantedValue> = { [S]: { value: 8192, comparison: mode }, [SYN]: { value: 1 + rnd(16384), comparison: mode } };
      found += sysctlConflicts({ files, lines }, DROP_IN, wanted).length;
      check({ files, lines }, wanted);
    }
    expect(found).toBeGreaterThan(20);
  });
});
