/**
 * Converge: from a profile and what a probe read on a host, decide what the host needs (pure).
 * The result is everything the effectful shell needs: the apply plan (files, services and what
 * to do with them), the values verification expects, whether the host already matches (drift),
 * and the boot-time winner of each managed kernel key.
 */
import { basename } from "node:path";
import { unifiedDiff } from "./diff";
import { type ApplyPlan, type ManagedService, type RelistenSocket, STATE_DIR, type ServiceAction, checkOwner, contentHash } from "./plan";
import { type HostReport, effectiveOf } from "./report";
import { type BacklogProfile, type KernelValues, type SysctlKey, kernelTargets } from "./profile";
import { type HostPaths, type RenderedFile, render, resolvePaths } from "./render";
import { type ComparisonRow, type ExpectedValue, compare, expectedValues, persistedExpectations, phpVersionOfUnit, socketMatches } from "./verify";
import { SYSCTL_CONF, SYSCTL_SOURCE_DIRS, type SysctlConflict, type WantedValue, sysctlConflicts, NEUTRALIZED_MARKER } from "./sysctlSources";

/**
 * What to do with a line of another sysctl file that undoes the drop-in (see
 * src/core/sysctlSources.ts): `"report"` warns and lists it (stack output, verification row);
 * `"neutralize"` also comments it out with a marker (original kept, destroy puts it back).
 */
export type ConflictMode = "report" | "neutralize";

/** Every {@link ConflictMode}. */
export const CONFLICT_MODES: readonly ConflictMode[] = Object.freeze(["report", "neutralize"] as ConflictMode[]);

/**
 * Checks a conflicts setting; undefined gives `"report"`.
 *
 * @param where - what to name in the error (e.g. `web1: conflicts`, `backlog:conflicts`).
 * @throws Error naming the field, the value and the allowed values.
 */
export function conflictMode(value: unknown, where = "conflicts"): ConflictMode {
  if (value === undefined) return "report";
  if (typeof value !== "string" || !(CONFLICT_MODES as readonly string[]).includes(value)) {
    throw new Error(`${where} ${JSON.stringify(value)}: must be "report" or "neutralize"`);
  }
  return value as ConflictMode;
}

/** A sysctl file the library may comment lines out of: a real file among the sysctl sources. */
export function isSysctlSource(path: string): boolean {
  if (path === SYSCTL_CONF) return true;
  const cut = path.lastIndexOf("/");
  return SYSCTL_SOURCE_DIRS.includes(path.slice(0, cut)) && /^[A-Za-z0-9_.+@-]+\.conf$/.test(path.slice(cut + 1));
}

/** How services are named and tested on the host's distribution. */
export interface ServiceNames {
  /** systemd unit of php-fpm. Debian/Ubuntu: `php8.2-fpm`; RHEL/Fedora: `php-fpm`. */
  phpFpmUnit: string;
  /** php-fpm binary, used for `-t`. Debian/Ubuntu: `php-fpm8.2`; RHEL/Fedora: `php-fpm`. */
  phpFpmBinary: string;
  /** systemd unit of nginx. */
  nginxUnit: string;
  /** nginx binary, used for `-t`. */
  nginxBinary: string;
}

/** Debian 12 names. */
export const DEBIAN_12_SERVICES: ServiceNames = Object.freeze({
  phpFpmUnit: "php8.2-fpm",
  phpFpmBinary: "php-fpm8.2",
  nginxUnit: "nginx",
  nginxBinary: "nginx",
});

/**
 * The service names with defaults filled in, each checked (they reach systemctl and a shell, quoted,
 * but a name that cannot be a unit or a binary is a mistake to report, not to run).
 *
 * @throws an Error naming the field and the value.
 */
export function serviceNames(names?: Partial<ServiceNames>): ServiceNames {
  const all: ServiceNames = { ...DEBIAN_12_SERVICES, ...(names ?? {}) };
  for (const [k, v] of Object.entries(all)) {
    if (typeof v !== "string" || !/^[A-Za-z0-9@_.+-]{1,128}$/.test(v)) {
      throw new Error(`services.${k} ${JSON.stringify(v)}: must be a unit or binary name (1-128 letters, digits, @ _ . + -)`);
    }
  }
  return all;
}

export { STATE_DIR };

/** Everything one host needs, decided from the profile and the host's probe. */
export interface HostDecision {
  /** Files, kernel keys and services the apply script works on. */
  plan: ApplyPlan;
  /** What verification expects after the apply. */
  expected: ExpectedValue[];
  /** The host as it is now, against {@link expected}. */
  current: ComparisonRow[];
  /** True when every file has the wanted content and every value is as expected: nothing to do. */
  inSync: boolean;
  /** Human-readable reasons why the host is not in sync (drift or a changed profile). */
  reasons: string[];
  /** Fingerprint of what is wanted (files and expected values), for change detection. */
  desiredHash: string;
  /** Kernel values the host had before the first deploy (the ones destroy puts back). */
  before: KernelValues;
  /**
   * The {@link conflicts} that win at boot (tool `systemd-sysctl`), in the shape of 0.x: key, real
   * file, line text. Kept for compatibility; {@link conflicts} has the line numbers and every tool.
   */
  bootOverrides: BootOverride[];
  /** Lines of other sysctl files that undo the drop-in under some tool (see {@link sysctlConflicts}). */
  conflicts: SysctlConflict[];
  /** What this run does with {@link conflicts}. */
  conflictMode: ConflictMode;
  /** What this run changes on the host, for an operator to approve (empty lists: nothing). */
  changes: HostChanges;
}

/** What one run changes on one host: values, files, retired files and the action per service. */
export interface HostChanges {
  /** Each value that differs: kernel keys and sockets' effective backlogs, `current → wanted`. */
  settings: { setting: string; current: number | null; wanted: number; comparison: "equal" | "atLeast" }[];
  /** Each managed file that differs: created or updated, with a unified diff (host → profile, capped). */
  files: { path: string; change: "create" | "update"; diff: string }[];
  /** Files that go back to their originals (no longer in the profile). */
  retired: string[];
  /** Each service that is touched, with how and why. */
  services: { unit: string; action: ServiceAction; reason: string }[];
  /** An earlier run on the host was cut short: it is rolled back first. */
  recovers: boolean;
}

/** Whether a run changes nothing. */
export function noChanges(c: HostChanges): boolean {
  return c.settings.length === 0 && c.files.length === 0 && c.retired.length === 0 && c.services.length === 0 && !c.recovers;
}

/** The changes as text, one line per value and service, with each file's diff (`""` when none). */
export function formatChanges(c: HostChanges): string {
  if (noChanges(c)) return "";
  const out: string[] = [];
  if (c.recovers) out.push("an earlier deploy was cut short: it is rolled back first");
  for (const s of c.settings) out.push(`${s.setting}: ${s.current ?? "missing"} → ${s.comparison === "atLeast" ? ">=" : ""}${s.wanted}`);
  for (const f of c.files)
    out.push(
      `${f.path}: ${f.change === "create" ? "created" : "updated"}`,
      ...f.diff
        .replace(/\n$/, "")
        .split("\n")
        .map((l) => "    " + l),
    );
  for (const r of c.retired) out.push(`${r}: given back as it was before the first deploy`);
  for (const sv of c.services) out.push(`${sv.unit}: ${sv.action} (${sv.reason})`);
  return out.join("\n");
}

/** A file that sets a managed kernel key and is read after the library's drop-in at boot. */
export interface BootOverride {
  key: string;
  file: string;
  line: string;
}

/** The kernel keys this profile manages. */
export function managedKeys(profile: BacklogProfile): SysctlKey[] {
  return kernelTargets(profile).map((t) => t.key);
}

/**
 * @deprecated Not used by {@link decide} any more ({@link HostDecision.bootOverrides} is derived from
 * src/core/sysctlSources.ts `sysctlConflicts`, which also knows links, masking, `/dev/null`, byte
 * order and `sysctl --system`); kept for callers of 0.x.
 *
 * The files of `sources` (`file:line` as grep prints them) that systemd-sysctl reads after
 * `dropIn` at boot and that set one of `keys`. systemd-sysctl sorts all files by name across
 * /etc, /run, /usr/local/lib and /usr/lib (for equal names the first directory wins) and applies
 * them in that order, so the last assignment of a key wins. `/etc/sysctl.conf` counts only through
 * a sysctl.d link to it (Debian's 99-sysctl.conf), which appears in `sources` under the link's name.
 */
export function bootOverrides(sources: readonly string[], dropIn: string, keys: readonly string[]): BootOverride[] {
  const ours = basename(dropIn);
  const out: BootOverride[] = [];
  const seenNames = new Map<string, string>();
  for (const source of sources) {
    const m = /^([^:]+):(.*)$/.exec(source);
    if (!m) continue;
    const [, file, line] = m as unknown as [string, string, string];
    if (file === "/etc/sysctl.conf" || file === dropIn) continue;
    const name = basename(file);
    const first = seenNames.get(name);
    if (first !== undefined && first !== file) continue; // shadowed by an equal name in an earlier directory
    seenNames.set(name, file);
    if (name === ours) continue; // same name as ours in another directory: ours (/etc) shadows it
    const key = /^\s*-?\s*([a-z0-9_./]+)\s*=/.exec(line)?.[1]?.replace(/\//g, ".");
    if (key && keys.includes(key) && name > ours) {
      out.push({ key, file, line: line.trim() });
    }
  }
  return out;
}

/**
 * The host's own value of each key, the one mode `atLeast` never lowers: the running value when
 * it differs from what the last deploy set (someone changed it since, by hand or by another tool);
 * otherwise the own value the last deploy assumed (kept on the host), or the value from before the
 * first deploy. So a value this library raised is not taken for the host's own (lowering the
 * profile lowers the host again), while a value raised by hand stays the host's own deploy after
 * deploy.
 */
export function hostOwnValues(keys: readonly SysctlKey[], report: Pick<HostReport, "sysctls" | "before" | "applied" | "own">): KernelValues {
  const own: Partial<Record<SysctlKey, number>> = {};
  for (const k of keys) {
    const now = report.sysctls[k];
    const applied = report.applied[k];
    own[k] = applied !== undefined && now === applied ? (report.own[k] ?? report.before[k] ?? now) : now;
  }
  return own;
}

/** Inputs of {@link decide}. */
export interface DecideOptions {
  paths?: Partial<HostPaths>;
  services?: Partial<ServiceNames>;
  /** This deployment's name on the host: see plan.ts `ApplyPlan.owner`. */
  owner: string;
  /** The state directory name of the 0.1 layout (the resource's name), moved into place once. */
  legacyName?: string;
  /** What to do with conflicting sysctl lines. Default `"report"`. */
  conflicts?: ConflictMode;
}

/** The php-fpm a host runs: unit, binary and pool directory. */
export interface PhpFpm {
  unit: string;
  binary: string;
  poolDir: string;
}

/** Binary and pool directory of a php-fpm unit name (Debian `php8.2-fpm`, or `php-fpm` as on RHEL). */
export function phpFpmOf(unit: string): PhpFpm | undefined {
  if (unit === "php-fpm") return { unit, binary: "php-fpm", poolDir: "/etc/php-fpm.d" };
  const m = /^php(\d+\.\d+)-fpm$/.exec(unit);
  return m ? { unit, binary: `php-fpm${m[1]}`, poolDir: `/etc/php/${m[1]}/fpm/pool.d` } : undefined;
}

/**
 * The php-fpm to manage, when the host was asked (`report.phpUnits`): the options win field by
 * field; otherwise the one php-fpm unit found. None found with pools in the profile, or several
 * found without `services.phpFpmUnit`, is an error naming what was found. Undefined when nothing
 * was discovered (the options or the Debian 12 defaults apply as they are).
 *
 * @throws Error naming the units found and the option to set.
 */
export function resolvePhp(
  profile: BacklogProfile,
  report: Pick<HostReport, "phpUnits">,
  options: Pick<DecideOptions, "services" | "paths">,
): PhpFpm | undefined {
  if (report.phpUnits === undefined || profile.pools.length === 0) return undefined;
  const found = Object.entries(report.phpUnits);
  const named = options.services?.phpFpmUnit;
  let unit: string;
  if (named !== undefined) {
    unit = named;
  } else if (found.length === 1) {
    unit = (found[0] as [string, string])[0];
  } else if (found.length === 0) {
    throw new Error("no php-fpm on this host (no php*-fpm.service unit): install php-fpm, or name it with services.phpFpmUnit and paths.phpFpmPoolDir");
  } else {
    throw new Error(
      `several php-fpm versions on this host: ${found.map(([u, st]) => `${u} (${st})`).join(", ")}; name the one this profile is for with services.phpFpmUnit`,
    );
  }
  const derived = phpFpmOf(unit);
  const binary = options.services?.phpFpmBinary ?? derived?.binary;
  const poolDir = options.paths?.phpFpmPoolDir ?? derived?.poolDir;
  if (binary === undefined || poolDir === undefined) {
    throw new Error(`php-fpm unit ${unit}: its binary and pool directory cannot be derived from the name; set services.phpFpmBinary and paths.phpFpmPoolDir`);
  }
  return { unit, binary, poolDir };
}

/** How disruptive each action is, for picking the strongest one a service needs. */
const ACTION_RANK: Record<ServiceAction, number> = { none: 0, relisten: 1, reload: 2, restart: 3 };

/** One thing a service needs, with the action it takes and why. */
export interface ActionNeed {
  action: ServiceAction;
  reason: string;
}

/** The pool-file keys that make php-fpm's socket (php-fpm matches keys in any case). */
const PHP_SOCKET_KEYS = ["listen", "listen.owner", "listen.group", "listen.mode", "listen.acl_users", "listen.acl_groups"] as const;

/**
 * The socket a pool file gives php-fpm, as php-fpm reads it (pure): for each of the keys `listen`,
 * `listen.owner`, `listen.group`, `listen.mode`, `listen.acl_users` and `listen.acl_groups` (in any
 * case) the value of its last line, without the blanks around it or one pair of double quotes;
 * `listen.mode` as an octal number without leading zeros, `660` when unset or empty (php-fpm's
 * default). Two files with the same result make the same socket, so a reload, which keeps the
 * inherited socket, leaves nothing about it to change. A file with more than one `[pool]` section
 * gives `[` and its socket lines as they are, in order (no last-line merging across pools); any other
 * file its six values, one per line.
 */
export function phpSocketSettings(content: string): string {
  const lines = content.split("\n").map((l) => l.replace(/\r$/, ""));
  const key = (l: string) => /^[ \t]*(listen(?:\.owner|\.group|\.mode|\.acl_users|\.acl_groups)?)[ \t]*=/i.exec(l)?.[1]?.toLowerCase();
  if (lines.filter((l) => /^[ \t]*\[/.test(l)).length > 1) return ["[", ...lines.filter((l) => key(l) !== undefined)].join("\n");
  const value: Record<string, string> = {};
  for (const l of lines) {
    const k = key(l);
    if (k === undefined) continue;
    const v = l.slice(l.indexOf("=") + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    value[k] = v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
  }
  const mode = value["listen.mode"] ?? "";
  value["listen.mode"] = mode === "" ? "660" : /^[0-7]+$/.test(mode) ? mode.replace(/^0+/, "") || "0" : mode;
  return PHP_SOCKET_KEYS.map((k) => value[k] ?? "").join("\n");
}

/** A file's lines without its backlog values: equal before and after means only the backlog changed. */
export function withoutBacklog(service: "php-fpm" | "nginx", content: string): string {
  return service === "php-fpm"
    ? content
        .split("\n")
        .filter((l) => !/^\s*listen\.backlog\s*=/.test(l))
        .join("\n")
    : content.replace(/ backlog=\d+/g, "");
}

/**
 * What a change of one managed file needs (pure): `host` is the file's content on the host
 * (undefined: absent or not read), `wanted` the rendered one.
 * - only backlog values differ: `relisten` (listen() again on the running sockets);
 * - php-fpm: the socket it gives differs ({@link phpSocketSettings}: address, owner, group, mode,
 *   ACLs, as php-fpm reads them): `restart` (a reload keeps the inherited socket as it is); a new
 *   pool, and anything else (pm.*, extra directives, a line that only spells out a default):
 *   `reload` (the re-executed master opens the sockets it did not inherit, with their settings);
 * - nginx: `reload` (it re-listens, opens and closes sockets itself on reload).
 */
export function fileChangeNeed(service: "php-fpm" | "nginx", path: string, host: string | undefined, wanted: string): ActionNeed {
  if (host === undefined) {
    return service === "php-fpm"
      ? { action: "reload", reason: `${path} is new: php-fpm opens its pool's socket on reload` }
      : { action: "reload", reason: `${path} is new: nginx loads it on reload` };
  }
  if (withoutBacklog(service, host) === withoutBacklog(service, wanted)) {
    return { action: "relisten", reason: `${path}: only the backlog changes` };
  }
  if (service === "php-fpm" && phpSocketSettings(host) !== phpSocketSettings(wanted)) {
    return { action: "restart", reason: `${path}: the listen address or socket owner/group/mode changes` };
  }
  return { action: "reload", reason: `${path}: settings other than the listen socket change` };
}

/** The strongest of some needs (`none` when there are none); reasons of that strength joined. */
export function strongest(needs: readonly ActionNeed[]): ActionNeed {
  let best: ServiceAction = "none";
  for (const n of needs) if (ACTION_RANK[n.action] > ACTION_RANK[best]) best = n.action;
  const reasons = [...new Set(needs.filter((n) => n.action === best).map((n) => n.reason))];
  return { action: best, reason: reasons.join("; ") };
}

/**
 * Decides what a host needs. `report` is what plan.ts `probeScript` printed on it. Kernel values
 * come from the host: in mode `atLeast` a running value above the profile is kept (and written
 * to the drop-in so boot keeps it too); the originals kept since the first deploy are what destroy
 * restores. Each service gets the least disruptive action that makes its sockets right.
 */
export function decide(profile: BacklogProfile, report: HostReport, options: DecideOptions): HostDecision {
  const owner = checkOwner(options.owner);
  const keys = managedKeys(profile);
  const missing = keys.filter((k) => report.sysctls[k] === undefined);
  if (missing.length > 0) {
    throw new Error(
      `${missing.join(", ")}: not exposed in /proc/sys on this host. The host is probably a container in a network ` +
        "namespace owned by an unprivileged user namespace, where the kernel hides these keys; tune it from the machine that owns the namespace.",
    );
  }
  const global = kernelTargets(profile)
    .filter((t) => t.scope === "machine")
    .map((t) => t.key);
  if (global.length > 0 && report.container !== "none" && report.container !== "") {
    throw new Error(
      `${global.join(", ")}: global to the machine, not to the host's network namespace, and this host is a container ` +
        `(${report.container}): setting it here would change every container on the machine, or fail. Set it on the machine itself, ` +
        "or leave netdevMaxBacklog out of this profile.",
    );
  }
  const before: Partial<Record<SysctlKey, number>> = {};
  for (const k of keys) before[k] = report.before[k] ?? report.sysctls[k];
  const own = hostOwnValues(keys, report);

  const php = resolvePhp(profile, report, options);
  const paths = resolvePaths({ ...options.paths, ...(php ? { phpFpmPoolDir: php.poolDir } : {}) });
  const names = serviceNames({ ...options.services, ...(php ? { phpFpmUnit: php.unit, phpFpmBinary: php.binary } : {}) });
  const files: RenderedFile[] = render(profile, { paths, hostBefore: own });
  const mode = conflictMode(options.conflicts);
  const kernelExpected = expectedValues(profile, own, phpVersionOfUnit(names.phpFpmUnit));
  // What the drop-in will set, and the lines of other files that undo it under some tool.
  const wanted: Record<string, WantedValue> = Object.fromEntries(
    kernelExpected.flatMap((e) => (e.target.kind === "sysctl" ? [[e.target.key, { value: e.expected, comparison: e.comparison }]] : [])),
  );
  const conflicts = sysctlConflicts({ files: report.sysctlFiles ?? [], lines: report.sysctlLines ?? [] }, paths.sysctlDropIn, wanted);
  // Verification also checks what boot and sysctl --system would leave; in mode report a conflict
  // shows there (advisory: it does not fail the deploy), in mode neutralize it must be gone.
  const expected = [...kernelExpected, ...persistedExpectations(kernelExpected, mode === "report")];
  const current = compare(expected, effectiveOf(report));

  const reasons: string[] = [];
  if (report.journalOpen) reasons.push("an earlier deploy on this host was cut short: it is rolled back first");
  const needs: Record<"php-fpm" | "nginx", ActionNeed[]> = { "php-fpm": [], nginx: [] };
  for (const f of files) {
    const have = report.files[f.path];
    if (have === contentHash(f.content)) continue;
    reasons.push(have === null || have === undefined ? `${f.path} is missing` : `${f.path} differs from the profile`);
    if (f.kind === "php-fpm-pool" || f.kind === "nginx") {
      const service = f.kind === "nginx" ? "nginx" : "php-fpm";
      // A file present but too large to read back counts as changed beyond its backlog.
      needs[service].push(fileChangeNeed(service, f.path, have ? (report.contents[f.path] ?? "\u0000") : undefined, f.content));
    }
  }
  // Files an earlier deploy of this owner managed that this profile no longer has go back to their
  // originals; files another owner (another stack, a renamed resource) manages are left to it.
  const mine = report.owners[owner] ?? (Object.keys(report.owners).length === 0 ? report.managed : []);
  const others = new Set(
    Object.entries(report.owners)
      .filter(([o]) => o !== owner)
      .flatMap(([, list]) => list),
  );
  // Conflicting lines to comment out (mode neutralize), per real file; a file neutralized by an
  // earlier deploy stays this owner's (destroy gives it back) while the mode stays neutralize.
  const neutralize: { path: string; lines: { line: number; text: string }[] }[] = [];
  if (mode === "neutralize") {
    for (const c of conflicts) {
      if (!isSysctlSource(c.file)) {
        reasons.push(`${c.file}:${c.line} sets ${c.key} = ${c.value} but is not a sysctl file this library edits: change it by hand`);
        continue;
      }
      let entry = neutralize.find((n) => n.path === c.file);
      if (!entry) {
        entry = { path: c.file, lines: [] };
        neutralize.push(entry);
      }
      if (!entry.lines.some((l) => l.line === c.line)) entry.lines.push({ line: c.line, text: c.text });
      reasons.push(`${c.file}:${c.line} (${c.key} = ${c.value}) undoes the drop-in under ${c.tools.join(", ")}: it is commented out`);
    }
    for (const n of neutralize) n.lines.sort((a, b) => a.line - b.line);
  }
  const neutralized =
    mode === "neutralize" ? mine.filter((path) => isSysctlSource(path) && path !== paths.sysctlDropIn && !files.some((f) => f.path === path)).sort() : [];
  const retired = mine.filter((path) => !files.some((f) => f.path === path) && !others.has(path) && !neutralized.includes(path)).sort();
  const poolDir = paths.phpFpmPoolDir.replace(/\/+$/, "") + "/";
  for (const path of retired) {
    reasons.push(`${path} is no longer in the profile: its original comes back`);
    // A restart, not a reload: a pool file given back may name a socket the retired one listened on,
    // which a reload would keep as it is (inherited), with the retired profile's backlog.
    if (path.startsWith(poolDir)) needs["php-fpm"].push({ action: "restart", reason: `${path} goes: its pool stops listening on restart` });
    if (path === paths.nginxConf) needs.nginx.push({ action: "reload", reason: `${path} goes back to its original` });
  }
  // Advisory rows (a conflict left in mode report) are shown, not acted on: no apply can fix them.
  const badRows = current.filter((r, i) => !r.ok && !expected[i]?.advisory);
  for (const r of badRows) {
    reasons.push(`${r.setting}: expected ${r.comparison === "atLeast" ? ">=" : ""}${r.expected}, host has ${r.effective ?? "nothing"}`);
  }
  // Sockets: a missing one needs a restart, unless its service's files change (nginx binds the
  // listeners of a new configuration on reload, php-fpm's re-executed master opens the sockets it did
  // not inherit; the apply waits for them before it commits); one with another backlog is listened
  // again in place.
  const fileChanges = (kind: RenderedFile["kind"]) => files.some((f) => f.kind === kind && report.files[f.path] !== contentHash(f.content));
  const filesChange = { nginx: fileChanges("nginx"), "php-fpm": fileChanges("php-fpm-pool") };
  const relisten: Record<"php-fpm" | "nginx", RelistenSocket[]> = { "php-fpm": [], nginx: [] };
  expected.forEach((e, i) => {
    if (e.target.kind !== "socket" || (current[i] as ComparisonRow).ok) return;
    const service = e.target.service;
    const selector = e.target.socket;
    const found = report.sockets.filter((s) => socketMatches(selector, s));
    if (found.length === 0) {
      needs[service].push(
        filesChange[service]
          ? { action: "reload", reason: `${e.setting}: no listening socket yet: ${service} opens it on reload` }
          : { action: "restart", reason: `${e.setting}: no listening socket` },
      );
      return;
    }
    for (const s of found) {
      if (s.backlog === e.expected || s.inode === undefined) continue;
      relisten[service].push({ inode: s.inode, backlog: e.expected, oldBacklog: s.backlog, label: s.path ?? s.local });
    }
    needs[service].push({ action: "relisten", reason: `${e.setting}: ${found.map((s) => s.backlog).join("/")} → ${e.expected}` });
  });
  const unitOf = { "php-fpm": names.phpFpmUnit, nginx: names.nginxUnit };
  for (const service of ["php-fpm", "nginx"] as const) {
    const state = report.units[unitOf[service]] ?? report.phpUnits?.[unitOf[service]];
    if (state !== undefined && state !== "active" && state !== "reloading") {
      needs[service].push({ action: "restart", reason: `${unitOf[service]} is ${state}` });
    }
  }

  const tcpPorts = (service: "php-fpm" | "nginx") =>
    service === "nginx" ? profile.listeners.map((l) => l.listen.port) : profile.pools.flatMap((p) => (p.listen.kind === "tcp" ? [p.listen.endpoint.port] : []));
  const services: ManagedService[] = [];
  const serviceOf = (service: "php-fpm" | "nginx", unit: string, test: string[]) => {
    const need = strongest(needs[service]);
    services.push({
      unit,
      test,
      action: need.action,
      ...(need.reason ? { reason: need.reason } : {}),
      ...(need.action === "relisten" || need.action === "reload" ? { relisten: relisten[service] } : {}),
      ports: [...new Set(tcpPorts(service))].sort((a, b) => a - b),
    });
  };
  if (profile.pools.length > 0 || needs["php-fpm"].length > 0) serviceOf("php-fpm", names.phpFpmUnit, [names.phpFpmBinary, "-t"]);
  if (profile.listeners.length > 0 || needs.nginx.length > 0) serviceOf("nginx", names.nginxUnit, [names.nginxBinary, "-t"]);

  const plan: ApplyPlan = {
    stateDir: STATE_DIR,
    owner,
    files: files.map(({ path, content, mode, owner: user, group }) => ({ path, content, mode, owner: user, group })),
    sysctlFile: paths.sysctlDropIn,
    sysctlKeys: keys,
    services,
    retired,
    // What the next deploy should take for the host's own value while nobody changes it: the value
    // this deploy kept (mode atLeast, host above the profile), else the original from before the
    // first deploy (so after a deploy in mode exact a value once raised by hand is forgotten).
    hostOwn: Object.fromEntries(
      kernelTargets(profile, own)
        .map((t) => [t.key, t.keptHostValue ? t.value : before[t.key]])
        .filter(([, v]) => v !== undefined),
    ) as Record<string, number>,
    sockets: socketsToObserve(profile),
    generation: report.generation,
    ...(neutralize.length ? { neutralize } : {}),
    ...(neutralized.length ? { neutralized } : {}),
    ...(options.legacyName ? { legacyName: options.legacyName } : {}),
  };
  const desiredHash = contentHash(
    JSON.stringify({ files: plan.files, expected, units: services.map((s) => s.unit), ...(mode === "neutralize" ? { mode } : {}) }),
  );
  const changes: HostChanges = {
    settings: current
      .filter((r, i) => !r.ok && !expected[i]?.advisory)
      .map((r) => ({ setting: r.setting, current: r.effective, wanted: r.expected, comparison: r.comparison })),
    files: files
      .filter((f) => report.files[f.path] !== contentHash(f.content))
      .map((f) => {
        const have = report.files[f.path];
        const host = have ? report.contents[f.path] : "";
        return {
          path: f.path,
          change: have ? ("update" as const) : ("create" as const),
          diff: host === undefined ? "(the file on the host is too large to show)\n" : unifiedDiff(host, f.content, { maxLines: 60 }),
        };
      })
      .concat(
        neutralize.map((n) => ({
          path: n.path,
          change: "update" as const,
          diff: n.lines.map((l) => `@@ line ${l.line} @@\n-${l.text}\n+${NEUTRALIZED_MARKER}${l.text}\n`).join(""),
        })),
      ),
    retired,
    services: services.filter((sv) => sv.action !== "none").map((sv) => ({ unit: sv.unit, action: sv.action, reason: sv.reason ?? "" })),
    recovers: report.journalOpen,
  };
  return {
    plan,
    expected,
    current,
    inSync: reasons.length === 0,
    reasons,
    desiredHash,
    before,
    // The conflicts that win at boot, in the older shape (one model: sysctlConflicts).
    bootOverrides: conflicts.filter((c) => c.tools.includes("systemd-sysctl")).map((c) => ({ key: c.key, file: c.file, line: c.text })),
    conflicts,
    conflictMode: mode,
    changes,
  };
}

/** The unix paths and TCP ports whose listening sockets a profile's verification reads. */
export function socketsToObserve(profile: BacklogProfile): { unixPaths: string[]; tcpPorts: number[] } {
  const unixPaths = profile.pools.flatMap((p) => (p.listen.kind === "unix" ? [p.listen.path] : []));
  const tcpPorts = [...profile.pools.flatMap((p) => (p.listen.kind === "tcp" ? [p.listen.endpoint.port] : [])), ...profile.listeners.map((l) => l.listen.port)];
  return { unixPaths: [...new Set(unixPaths)].sort(), tcpPorts: [...new Set(tcpPorts)].sort((a, b) => a - b) };
}
