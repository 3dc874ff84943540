/**
 * Which sysctl line wins under which tool, and which lines undo the drop-in. The cases follow what
 * systemd-sysctl and procps did on lab hosts of Debian 11, 12 and 13 (docs/sysctl.md).
 */
import { NEUTRALIZED_PREFIX } from "../../../src/core/plan";
import {
  NEUTRALIZED_MARKER,
  type SysctlAssignment,
  type SysctlFile,
  type SysctlSources,
  formatConflict,
  loadOrder,
  parseAssignmentText,
  sysctlConflicts,
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
      lines: [line("/etc/sysctl.d/zzzz.conf", 1, "net.core.somaxconn = 10"), line("/etc/sysctl.d/zzzz.conf", 2, "net/core/somaxconn=20"), line("/etc/sysctl.d/zzzz.conf", 3, "net.core.somaxconn = lots")],
    };
    expect(winners(s, "systemd-sysctl", [S])[S]).toMatchObject({ line: 2, value: 20 });
  });
});

describe("sysctlConflicts", () => {
  const want = { [S]: { value: 4096 } };

  it("Debian 11/12: /etc/sysctl.conf read through 99-sysctl.conf is harmless at boot, but wins under sysctl --system and sysctl -p (one entry, the link named)", () => {
    const c = sysctlConflicts(sysctlConf128(), DROP_IN, want);
    expect(c).toEqual([{
      key: S, file: "/etc/sysctl.conf", line: 69, value: 128, text: "net.core.somaxconn = 128", wanted: 4096,
      tools: ["sysctl --system", "sysctl -p"], via: [],
    }]);
    expect(formatConflict(c[0]!)).toBe("/etc/sysctl.conf:69 sets net.core.somaxconn = 128 (the profile wants 4096); it wins over the drop-in under sysctl --system, sysctl -p");
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
    expect(sysctlConflicts(s, DROP_IN, want)).toEqual([expect.objectContaining({
      file: "/srv/tuning/local.conf", line: 2, value: 1024, tools: ["systemd-sysctl", "sysctl --system"], via: ["/etc/sysctl.d/zzzz-local.conf"],
    })]);
  });

  it("masking: a conflicting /usr/lib file shadowed by a same-named /etc file (or a /dev/null link) is no conflict", () => {
    const lines = [line("/usr/lib/sysctl.d/zzz-vendor.conf", 1, "net.core.somaxconn = 64")];
    const open: SysctlSources = { files: [{ path: "/usr/lib/sysctl.d/zzz-vendor.conf" }], lines };
    expect(sysctlConflicts(open, DROP_IN, want)).toHaveLength(1);
    const masked: SysctlSources = { files: [{ path: "/usr/lib/sysctl.d/zzz-vendor.conf" }, { path: "/etc/sysctl.d/zzz-vendor.conf" }], lines };
    expect(sysctlConflicts(masked, DROP_IN, want)).toEqual([]);
    const nulled: SysctlSources = { files: [{ path: "/usr/lib/sysctl.d/zzz-vendor.conf" }, { path: "/run/sysctl.d/zzz-vendor.conf", target: "/dev/null" }], lines };
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
    expect(sysctlConflicts(s, DROP_IN, want).map((c) => [c.line, c.value])).toEqual([[1, 128], [9, 256]]);
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
