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
export const SYSCTL_SOURCE_DIRS: readonly string[] = Object.freeze([
  "/etc/sysctl.d",
  "/run/sysctl.d",
  "/usr/local/lib/sysctl.d",
  "/usr/lib/sysctl.d",
  "/lib/sysctl.d",
]);

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
export function valuesAfter(
  sources: SysctlSources,
  tool: SysctlTool,
  keys: readonly string[],
  running: Record<string, number | undefined>,
): Record<string, number | undefined> {
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
          entry = {
            c: { key, file: a.file, line: a.line, value: a.value, text: a.text, wanted: (wanted[key] as WantedValue).value },
            tools: new Set(),
            via: new Set(),
          };
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

/**
 * What a warning about a conflict says after {@link formatConflict}'s sentence, by conflicts mode
 * (shared by BacklogHost's warnings and the standalone script's lines).
 */
export function conflictAdvice(mode: "report" | "neutralize"): string {
  return mode === "neutralize"
    ? "Mode neutralize: this run comments it out (destroy puts it back)."
    : 'Left in place (conflicts: "report"); set conflicts: "neutralize" to comment it out, or change the file.';
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

// ---------------------------------------------------------------------------------------
// The same model in awk, for the standalone script (which decides on the host, without Node)

/** Sentinels that {@link sysctlSourcesAwk} fills into {@link formatConflict}'s own sentence. */
const SENTINEL = Object.freeze({ file: "@PB_FILE@", line: 987654301, key: "@PB_KEY@", value: 987654302, wanted: 987654303, tool: "@PB_TOOL", via: "@PB_VIA" });

/** {@link formatConflict}'s sentence as awk templates: without and with links, and the joiners of lists. */
function conflictTemplates(): { plain: string; via: string; toolSep: string; viaSep: string } {
  const base = { key: SENTINEL.key, file: SENTINEL.file, line: SENTINEL.line, value: SENTINEL.value, text: "", wanted: SENTINEL.wanted };
  const tools = [`${SENTINEL.tool}1@`, `${SENTINEL.tool}2@`] as unknown as SysctlTool[];
  const two = formatConflict({ ...base, tools, via: [`${SENTINEL.via}1@`, `${SENTINEL.via}2@`] });
  const between = (a: string, b: string) => two.slice(two.indexOf(a) + a.length, two.indexOf(b));
  const toolSep = between(`${SENTINEL.tool}1@`, `${SENTINEL.tool}2@`);
  const viaSep = between(`${SENTINEL.via}1@`, `${SENTINEL.via}2@`);
  const one = (via: string[]) => formatConflict({ ...base, tools: [`${SENTINEL.tool}@`] as unknown as SysctlTool[], via });
  const plain = one([]);
  const via = one([`${SENTINEL.via}@`]);
  for (const t of [plain, via]) {
    for (const s of [SENTINEL.file, String(SENTINEL.line), SENTINEL.key, String(SENTINEL.value), String(SENTINEL.wanted), `${SENTINEL.tool}@`]) {
      if (!t.includes(s) || /[\\&\t\n"]/.test(t)) throw new Error("sysctlSourcesAwk: formatConflict changed shape; update conflictTemplates");
    }
  }
  return { plain, via, toolSep, viaSep };
}

/**
 * A POSIX awk program (Debian's mawk runs it; with `LC_ALL=C`, so that strings compare byte by
 * byte, as file names sort for systemd and procps) that reads what {@link sysctlListing} (plan.ts)
 * prints, `@files` and then `@lines` before each part, and applies this module's model to it:
 * {@link loadOrder}, {@link appliedAssignments}, {@link winners}, {@link withDropIn} and
 * {@link sysctlConflicts}, generated from the same constants ({@link SYSCTL_SOURCE_DIRS},
 * {@link SYSCTL_CONF}, {@link SYSCTL_TOOLS}) and {@link formatConflict}'s sentence.
 * test/unit/core/sysctlSources.test.ts runs it beside the TypeScript on the same sources.
 *
 * Variables (`-v`):
 * - `dropin`: the drop-in's path;
 * - `want`: the managed keys with the drop-in's values, `KEY=VALUE=equal|atLeast` separated by spaces;
 * - `planned`: `1` to take the drop-in as holding `want` (its present lines ignored, counted as
 *   present even when absent: {@link withDropIn}), empty to read it as it is;
 * - `out`: `messages` (one line per conflict: `1` or `0` for whether the file is one the library may
 *   comment lines out of, a tab, then {@link formatConflict}'s sentence), `neutralize`
 *   (`FILE<TAB>LINE<TAB>TEXT` per conflicting line in such a file) or `winners` (per tool and key,
 *   `TOOL<TAB>KEY<TAB>VALUE<TAB>FILE:LINE`, VALUE and source empty when no file sets the key).
 * No `'` (it is passed quoted to a shell) and no `{{` (SSM reads `{{ … }}` as a parameter).
 */
export function sysctlSourcesAwk(): string {
  const t = conflictTemplates();
  const q = (s: string) => `"${s}"`;
  const awk = `
function cmp(a, b) { return a < b ? -1 : (a > b ? 1 : 0) }
function trim(s) { sub(/^[ \\t\\r\\v\\f]+/, "", s); sub(/[ \\t\\r\\v\\f]+$/, "", s); return s }
function base(p) { return substr(p, match(p, /[^\\/]*$/)) }
function dir(p) { return substr(p, 1, length(p) - length(base(p)) - 1) }
function issource(f,    i) {
  if (f == conf) return 1
  for (i = 1; i <= ndirs; i++) if (dir(f) == dirs[i] && base(f) ~ /^[A-Za-z0-9_.+@-]+\\.conf$/) return 1
  return 0
}
function order(tool,    i, j, k, n, p, r, nm, have, names, nn, x) {
  no = 0
  if (tool == "sysctl -p") { if (conf in present) seqp[++no] = conf; return }
  nn = 0
  for (i = 1; i <= nfiles + extra; i++) {
    p = i <= nfiles ? files[i] : dropin
    r = 0
    for (j = 1; j <= ndirs; j++) if (dir(p) == dirs[j]) { r = j; break }
    if (r == 0 || p !~ /\\.conf$/) continue
    nm = base(p)
    if (!(nm in rank)) { names[++nn] = nm; rank[nm] = r; by[nm] = p }
    else if (r < rank[nm]) { rank[nm] = r; by[nm] = p }
  }
  for (i = 2; i <= nn; i++) { x = names[i]; for (j = i - 1; j >= 1 && cmp(names[j], x) > 0; j--) names[j + 1] = names[j]; names[j + 1] = x }
  for (i = 1; i <= nn; i++) { seqp[++no] = by[names[i]]; delete rank[names[i]]; delete by[names[i]] }
  if (tool == "sysctl --system" && (conf in present)) seqp[++no] = conf
}
function assignments(tool,    i, j, p, f) {
  na = 0
  order(tool)
  for (i = 1; i <= no; i++) {
    p = seqp[i]
    if ((p in target) && target[p] == "/dev/null") continue
    f = (p in target) ? target[p] : p
    if (planned != "" && p == dropin) {
      for (j = 1; j <= nkeys; j++) { na++; ap[na] = p; af[na] = f; al[na] = j; ak[na] = keys[j]; av[na] = wv[keys[j]]; at[na] = keys[j] " = " wv[keys[j]] }
      continue
    }
    for (j = 1; j <= nlines; j++) {
      if (lp[j] != p || !(lk[j] in wv)) continue
      na++; ap[na] = p; af[na] = f; al[na] = ln[j]; ak[na] = lk[j]; av[na] = lv[j]; at[na] = lt[j]
    }
  }
}
function ok(v, k) { return wc[k] == "atLeast" ? v + 0 >= wv[k] + 0 : v + 0 == wv[k] + 0 }
BEGIN {
  ndirs = split(${q(SYSCTL_SOURCE_DIRS.join(" "))}, dirs, " ")
  conf = ${q(SYSCTL_CONF)}
  ntools = split(${q(SYSCTL_TOOLS.join(","))}, tools, ",")
  nkeys = split(want, w, " ")
  for (i = 1; i <= nkeys; i++) { split(w[i], kv, "="); keys[i] = kv[1]; wv[kv[1]] = kv[2]; wc[kv[1]] = kv[3] }
  section = ""; nfiles = 0; nlines = 0
}
$0 == "@files" || $0 == "@lines" { section = $0; next }
section == "@files" && $0 != "" {
  p = $0; t = ""
  i = index($0, " -> ")
  if (i > 0) { p = substr($0, 1, i - 1); t = substr($0, i + 4) }
  if (p in present) next
  present[p] = 1; files[++nfiles] = p
  if (i > 0) target[p] = t
  next
}
section == "@lines" && $0 != "" {
  i = index($0, ":"); if (i == 0) next
  p = substr($0, 1, i - 1); rest = substr($0, i + 1)
  i = index(rest, ":"); if (i == 0) next
  n = substr(rest, 1, i - 1); text = trim(substr(rest, i + 1))
  if (n !~ /^[0-9]+$/) next
  s = text; sub(/^-/, "", s); s = trim(s)
  if (!match(s, /^[A-Za-z0-9_.\\/-]+/)) next
  k = substr(s, 1, RLENGTH); s = trim(substr(s, RLENGTH + 1))
  if (substr(s, 1, 1) != "=") next
  v = trim(substr(s, 2))
  gsub(/\\//, ".", k)
  if (v !~ /^[0-9]+$/ || length(v) > 10 || v + 0 > 4294967295) v = ""
  nlines++; lp[nlines] = p; ln[nlines] = n + 0; lk[nlines] = k; lv[nlines] = v; lt[nlines] = text
}
END {
  extra = (planned != "" && !(dropin in present)) ? 1 : 0
  if (out == "winners") {
    for (ti = 1; ti <= ntools; ti++) {
      assignments(tools[ti])
      for (j = 1; j <= nkeys; j++) {
        wvv = ""; src = ""
        for (i = 1; i <= na; i++) if (ak[i] == keys[j] && av[i] != "") { wvv = av[i]; src = af[i] ":" al[i] }
        printf "%s\\t%s\\t%s\\t%s\\n", tools[ti], keys[j], wvv, src
      }
    }
    exit
  }
  nc = 0
  for (ti = 1; ti <= ntools; ti++) {
    assignments(tools[ti])
    for (j = 1; j <= nkeys; j++) {
      k = keys[j]; after = 0
      for (i = 1; i <= na; i++) if (ak[i] == k && ap[i] == dropin) after = i
      for (i = after + 1; i <= na; i++) {
        if (ak[i] != k || ap[i] == dropin || av[i] == "" || ok(av[i], k)) continue
        id = af[i] SUBSEP al[i] SUBSEP k
        if (!(id in cidx)) { cidx[id] = ++nc; cf[nc] = af[i]; cl[nc] = al[i]; ck[nc] = k; cv[nc] = av[i]; ct[nc] = at[i]; ctools[nc] = ""; cvia[nc] = "" }
        c = cidx[id]
        if (index(ctools[c], "|" tools[ti] "|") == 0) ctools[c] = ctools[c] "|" tools[ti] "|"
        if (ap[i] != af[i] && index(cvia[c], "|" ap[i] "|") == 0) cvia[c] = cvia[c] "|" ap[i] "|"
      }
    }
  }
  for (i = 1; i <= nc; i++) srt[i] = i
  for (i = 2; i <= nc; i++) {
    x = srt[i]
    for (j = i - 1; j >= 1; j--) { y = srt[j]; r = cmp(cf[y], cf[x]); if (r < 0 || (r == 0 && cl[y] <= cl[x])) break; srt[j + 1] = y }
    srt[j + 1] = x
  }
  for (s = 1; s <= nc; s++) {
    c = srt[s]
    if (out == "neutralize") { if (issource(cf[c])) printf "%s\\t%s\\t%s\\n", cf[c], cl[c], ct[c]; continue }
    tl = ""
    for (ti = 1; ti <= ntools; ti++) if (index(ctools[c], "|" tools[ti] "|")) tl = tl (tl == "" ? "" : ${q(t.toolSep)}) tools[ti]
    nv = split(cvia[c], vs, "|"); vl = ""; m = 0
    for (i = 1; i <= nv; i++) if (vs[i] != "") vv[++m] = vs[i]
    for (i = 2; i <= m; i++) { x = vv[i]; for (j = i - 1; j >= 1 && cmp(vv[j], x) > 0; j--) vv[j + 1] = vv[j]; vv[j + 1] = x }
    for (i = 1; i <= m; i++) vl = vl (i == 1 ? "" : ${q(t.viaSep)}) vv[i]
    msg = m > 0 ? ${q(t.via)} : ${q(t.plain)}
    msg = fill(msg, ${q(SENTINEL.file)}, cf[c]); msg = fill(msg, ${q(String(SENTINEL.line))}, cl[c]); msg = fill(msg, ${q(SENTINEL.key)}, ck[c])
    msg = fill(msg, ${q(String(SENTINEL.value))}, cv[c]); msg = fill(msg, ${q(String(SENTINEL.wanted))}, wv[ck[c]])
    msg = fill(msg, ${q(SENTINEL.tool + "@")}, tl); msg = fill(msg, ${q(SENTINEL.via + "@")}, vl)
    printf "%s\\t%s\\n", issource(cf[c]), msg
  }
}
function fill(s, a, b,    i) { i = index(s, a); if (i == 0) return s; return substr(s, 1, i - 1) b substr(s, i + length(a)) }
`;
  if (awk.includes("'") || awk.includes("{{")) throw new Error("sysctlSourcesAwk: the program holds a ' or {{");
  // Indentation off: the program travels in EC2 user data (16 KB after gzip).
  return (
    awk
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .join("\n") + "\n"
  );
}
