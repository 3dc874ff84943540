/**
 * Where a kernel value comes from (pure): from the sysctl files a probe found on a host, which
 * file and line wins for each key under each tool that loads them, and which lines undo the
 * library's drop-in. Nothing here touches a host.
 *
 * Load orders, as observed on Debian 11, 12 and 13 (procps 3.3.17 / 4.0.2 / 4.0.4, systemd 247 /
 * 252 / 257; docs/sysctl.md has the transcript):
 * - `systemd-sysctl` (boot): every `*.conf` in {@link SYSCTL_SOURCE_DIRS}, one per file name (the
 *   first directory in that list that has the name wins; a link to `/dev/null` masks the name),
 *   sorted by file name (byte order, so `B.conf` sorts before `a.conf`), applied in that order.
 *   `/etc/sysctl.conf` only counts through a link to it (Debian 11 and 12 ship
 *   `/etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf`; Debian 13 has neither).
 * - `sysctl --system` (procps): the same files in the same order, then `/etc/sysctl.conf` once
 *   more, last, when it exists. So a line there wins over every drop-in.
 * - `sysctl -p` (procps, no argument): `/etc/sysctl.conf` only.
 * Within the load order the last assignment of a key wins.
 *
 * @packageDocumentation
 */

/** Directories of sysctl.d files, in precedence order for equal file names (first wins). */
export const SYSCTL_SOURCE_DIRS: readonly string[] = Object.freeze(["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"]);

/** The classic file: read by `sysctl -p`, last by `sysctl --system`, at boot only through a link. */
export const SYSCTL_CONF = "/etc/sysctl.conf";

/** A tool that loads sysctl files. */
export type SysctlTool = "systemd-sysctl" | "sysctl --system" | "sysctl -p";

/** Every {@link SysctlTool}, in the order reports list them. */
export const SYSCTL_TOOLS: readonly SysctlTool[] = Object.freeze(["systemd-sysctl", "sysctl --system", "sysctl -p"] as SysctlTool[]);

/** A sysctl file found on a host. */
export interface SysctlFile {
  /** Path as found (`/etc/sysctl.d/99-sysctl.conf`, `/etc/sysctl.conf`). */
  readonly path: string;
  /** For a symbolic link: what it resolves to (`readlink -f`), e.g. `/etc/sysctl.conf` or `/dev/null`. */
  readonly target?: string;
}

/** One line of a sysctl file that assigns a key. */
export interface SysctlAssignment {
  /** The file the line was read through (a link's own path when read through a link). */
  readonly path: string;
  /** 1-based line number. */
  readonly line: number;
  /** Dotted key (`net/core/somaxconn` is read as `net.core.somaxconn`). */
  readonly key: string;
  /** The value, or `null` when it is not a whole number (the kernel refuses it: no effect). */
  readonly value: number | null;
  /** The line as written (trimmed). */
  readonly text: string;
}

/** What a probe found: the sysctl files and the lines that assign a managed key. */
export interface SysctlSources {
  readonly files: readonly SysctlFile[];
  readonly lines: readonly SysctlAssignment[];
}

/** An assignment as a tool applies it: the line, the file it really is in, and its place in the order. */
export interface AppliedAssignment extends SysctlAssignment {
  /** The real file (a link's target; else {@link SysctlAssignment.path}). */
  readonly file: string;
  /** Position in the tool's sequence of assignments (0 = first applied). */
  readonly order: number;
}

/** What a key needs to be: the drop-in's value, compared like verification compares it. */
export interface WantedValue {
  readonly value: number;
  /** `equal`, or `atLeast` (a larger value does not undo the profile). Default `equal`. */
  readonly comparison?: "equal" | "atLeast";
}

/** A line that undoes the drop-in under at least one tool. */
export interface SysctlConflict {
  readonly key: string;
  /** The real file to change (a link's target). */
  readonly file: string;
  /** 1-based line number in {@link file}. */
  readonly line: number;
  readonly value: number;
  /** The line as written. */
  readonly text: string;
  /** The value the profile wants. */
  readonly wanted: number;
  /** The tools that apply this line after the drop-in (so it wins unless a later line sets the key again). */
  readonly tools: SysctlTool[];
  /** The links it is also read through (`/etc/sysctl.d/99-sysctl.conf` for `/etc/sysctl.conf`). */
  readonly via: string[];
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

function dirname(p: string): string {
  return p.slice(0, p.lastIndexOf("/"));
}

/** Byte-order comparison of file names (what systemd and procps use, whatever the locale). */
function byteOrder(a: string, b: string): number {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return Buffer.compare(x, y);
}

/**
 * The files a tool reads, in order, as paths found (links not resolved). `dropIn`, when given, is
 * counted as present even if the host does not have it yet (a deploy is about to write it).
 */
export function loadOrder(files: readonly SysctlFile[], tool: SysctlTool, dropIn?: string): string[] {
  const present = new Set(files.map((f) => f.path));
  const hasConf = present.has(SYSCTL_CONF);
  if (tool === "sysctl -p") return hasConf ? [SYSCTL_CONF] : [];
  const all = [...files.map((f) => f.path), ...(dropIn && !present.has(dropIn) ? [dropIn] : [])];
  const byName = new Map<string, { path: string; rank: number }>();
  for (const path of all) {
    const rank = SYSCTL_SOURCE_DIRS.indexOf(dirname(path));
    if (rank < 0 || !path.endsWith(".conf")) continue;
    const name = basename(path);
    const have = byName.get(name);
    if (have === undefined || rank < have.rank) byName.set(name, { path, rank });
  }
  const order = [...byName.entries()].sort(([a], [b]) => byteOrder(a, b)).map(([, v]) => v.path);
  if (tool === "sysctl --system" && hasConf) order.push(SYSCTL_CONF);
  return order;
}

/** Every assignment of `keys` a tool makes, in the order it makes them (masked files and `/dev/null` links read nothing). */
export function appliedAssignments(sources: SysctlSources, tool: SysctlTool, keys: readonly string[], dropIn?: string): AppliedAssignment[] {
  const targets = new Map(sources.files.map((f) => [f.path, f.target]));
  const out: AppliedAssignment[] = [];
  for (const path of loadOrder(sources.files, tool, dropIn)) {
    const target = targets.get(path);
    if (target === "/dev/null") continue;
    const lines = sources.lines.filter((l) => l.path === path && keys.includes(l.key)).sort((a, b) => a.line - b.line);
    for (const l of lines) out.push({ ...l, file: target ?? path, order: out.length });
  }
  return out;
}

/** The assignment of each key that a tool leaves in force (undefined: no file sets it; the running value stays). */
export function winners(sources: SysctlSources, tool: SysctlTool, keys: readonly string[], dropIn?: string): Record<string, AppliedAssignment | undefined> {
  const out: Record<string, AppliedAssignment | undefined> = {};
  for (const k of keys) out[k] = undefined;
  for (const a of appliedAssignments(sources, tool, keys, dropIn)) if (a.value !== null) out[a.key] = a;
  return out;
}

/**
 * The value each key has after a tool ran: the winning line's value, else the running value
 * (`running`, from /proc/sys) when no file sets it.
 */
export function valuesAfter(sources: SysctlSources, tool: SysctlTool, keys: readonly string[], running: Record<string, number | undefined>): Record<string, number | undefined> {
  const w = winners(sources, tool, keys);
  return Object.fromEntries(keys.map((k) => [k, w[k]?.value ?? running[k]]));
}

/**
 * The sources as they will be once the drop-in holds `wanted`: the drop-in's own lines (whatever
 * the host has now) replaced by one line per key.
 */
export function withDropIn(sources: SysctlSources, dropIn: string, wanted: Record<string, WantedValue>): SysctlSources {
  const files = sources.files.some((f) => f.path === dropIn) ? sources.files : [...sources.files, { path: dropIn }];
  const lines = [
    ...sources.lines.filter((l) => l.path !== dropIn),
    ...Object.entries(wanted).map(([key, w], i) => ({ path: dropIn, line: i + 1, key, value: w.value, text: `${key} = ${w.value}` })),
  ];
  return { files, lines };
}

function satisfies(value: number, w: WantedValue): boolean {
  return (w.comparison ?? "equal") === "atLeast" ? value >= w.value : value === w.value;
}

/**
 * The lines that undo the drop-in (pure): for each tool, every assignment of a wanted key applied
 * after the drop-in's last assignment of it (for `sysctl -p`, which does not read the drop-in:
 * every assignment in `/etc/sysctl.conf`) whose value is not what the profile wants. One entry per
 * real file and line, with the tools that let it win; ordered by file, then line.
 *
 * @param sources - what the probe found (the drop-in's present content is ignored: see {@link withDropIn}).
 * @param dropIn - absolute path of the library's drop-in.
 * @param wanted - per managed key, the value the drop-in sets.
 */
export function sysctlConflicts(sources: SysctlSources, dropIn: string, wanted: Record<string, WantedValue>): SysctlConflict[] {
  const keys = Object.keys(wanted);
  const planned = withDropIn(sources, dropIn, wanted);
  const found = new Map<string, { c: Omit<SysctlConflict, "tools" | "via">; tools: Set<SysctlTool>; via: Set<string> }>();
  for (const tool of SYSCTL_TOOLS) {
    const seq = appliedAssignments(planned, tool, keys, dropIn);
    for (const key of keys) {
      const ours = seq.filter((a) => a.key === key && a.path === dropIn).map((a) => a.order);
      const after = ours.length ? Math.max(...ours) : -1;
      for (const a of seq) {
        if (a.key !== key || a.order <= after || a.path === dropIn || a.value === null) continue;
        if (satisfies(a.value, wanted[key] as WantedValue)) continue;
        const id = `${a.file}\u0000${a.line}\u0000${key}`;
        let entry = found.get(id);
        if (!entry) {
          entry = { c: { key, file: a.file, line: a.line, value: a.value, text: a.text, wanted: (wanted[key] as WantedValue).value }, tools: new Set(), via: new Set() };
          found.set(id, entry);
        }
        entry.tools.add(tool);
        if (a.path !== a.file) entry.via.add(a.path);
      }
    }
  }
  return [...found.values()]
    .map(({ c, tools, via }) => ({ ...c, tools: SYSCTL_TOOLS.filter((t) => tools.has(t)), via: [...via].sort() }))
    .sort((a, b) => byteOrder(a.file, b.file) || a.line - b.line);
}

/** One conflict as a sentence, e.g. for a warning. */
export function formatConflict(c: SysctlConflict): string {
  const via = c.via.length ? ` (also read as ${c.via.join(", ")})` : "";
  return `${c.file}:${c.line}${via} sets ${c.key} = ${c.value} (the profile wants ${c.wanted}); it wins over the drop-in under ${c.tools.join(", ")}`;
}

/** The marker that starts a neutralized line; the original line follows it. */
export const NEUTRALIZED_MARKER = "# pulumi-backlog neutralized (conflicts with the drop-in; destroy puts it back): ";

/**
 * Parses one line of a sysctl file that the probe selected (`key = value`, optional leading `-`).
 * Returns undefined when the line is not an assignment.
 */
export function parseAssignmentText(text: string): { key: string; value: number | null } | undefined {
  const m = /^\s*-?\s*([A-Za-z0-9_./-]+?)\s*=\s*(.*?)\s*$/.exec(text);
  if (!m) return undefined;
  const key = (m[1] as string).replace(/\//g, ".");
  const raw = m[2] as string;
  const value = /^\d{1,10}$/.test(raw) && Number(raw) <= 4294967295 ? Number(raw) : null;
  return { key, value };
}
