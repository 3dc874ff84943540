/**
 * The standalone script: one POSIX `sh` script, generated from a profile, that applies and verifies
 * it on the host it runs on, with nothing else involved (no SSH, no Pulumi on the host). It is what
 * the AWS paths carry (EC2 user data run by cloud-init, an SSM `aws:runShellScript` step), and it
 * runs the same way by hand: `sudo sh script.sh`.
 *
 * It is made of the parts the SSH components use, so there is one way to apply and verify:
 * - the files are {@link render}'s, written, tested, loaded and rolled back by {@link applyScript}
 *   (plan.ts), in a subshell whose report goes to a log file; plan.ts's shell library
 *   (`scriptLibrary`: lock, journal, `pb_relisten`, …) is loaded once at the top and shared by the
 *   apply and the service actions. Files this script managed last time and the profile no longer
 *   has (a pool removed) are given back to their originals (`ApplyPlan.retireStale`);
 * - the kernel values follow {@link kernelTargets}: in mode `atLeast` the host's own value is kept
 *   when it is above the profile (the larger value is written into the drop-in, so boot keeps it
 *   too). Which value is the host's own follows `hostOwnValues` of the SSH path (converge.ts): the
 *   running value, unless it is the one the last run set from the profile, then the value from
 *   before the first run. One difference: a value the last run kept (recorded in `kept.<key>`)
 *   stays the host's own, so a value raised by hand after the first run is not lowered by the
 *   run after the one that kept it. The drop-in is byte for byte `render(profile, { hostBefore: own })`;
 * - what each service gets is converge.ts `decide()`'s decision, taken here at run time where the
 *   SSH path takes it in the program before (see {@link decisionShell}): the service files are
 *   copied before the apply and each change classified once they are written (`ApplyPlan.beforeServices`) as `fileChangeNeed` does, retired
 *   files, the profile's sockets (`ss`) and the units are checked, and per service the least
 *   disruptive action runs: relisten (listen() again on the running socket: a backlog or
 *   somaxconn change loses no request; a restart where it cannot work, with the reason), reload
 *   (+ relisten) or restart. All of it runs inside the apply's transaction, as on the SSH path: a
 *   failed reload or restart, or a socket of the profile that no socket of the units listens on after them (plan.ts
 *   `LISTEN_WAIT_SECONDS`), puts every file and value back and the services back on them (exit 12);
 * - sysctl conflicts follow the SSH path's model (src/core/sysctlSources.ts, run on the host as
 *   `sysctlSourcesAwk`, see {@link conflictShell}): each line of another sysctl file that undoes
 *   the drop-in is reported, and with `conflicts: "neutralize"` commented out inside the apply's
 *   transaction with the SSH path's marker (plan.ts `ApplyPlan.neutralizeOnHost`); the rows of what
 *   boot and `sysctl --system` would leave are verified (advisory in mode `report`);
 * - verification is {@link expectedValues} and {@link compare}'s: each sysctl equal to the value
 *   applied, each socket's effective backlog (`ss` Send-Q) equal to `min(backlog, somaxconn)`, the
 *   sockets matched as {@link socketMatches} does, and the same hints.
 *
 * Output: a few lines of what it did, a table (SETTING, EXPECTED, EFFECTIVE, RESULT, with a hint
 * under each mismatch), then `pulumi-backlog: OK …` or `pulumi-backlog: MISMATCH …`.
 * Exit status: see {@link STANDALONE_EXIT}.
 *
 * @packageDocumentation
 */

import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { STATE_DIR, type ServiceNames, managedKeys, serviceNames, socketsToObserve } from "./converge";
import { type ApplyPlan, type ManagedFile, type ManagedService, applyScript, backupName, procPath, scriptLibrary } from "./plan";
import { type BacklogProfile, type KernelValues, type ProfileInput, SOMAXCONN, type SysctlKey, toProfile, kernelTargets } from "./profile";
import { type HostPaths, type RenderedFile, render, renderSysctlDropIn, resolvePaths } from "./render";
import { quote } from "./shell";
import { type ExpectedValue, type ListeningSocket, type SocketSelector, compare, expectedValues } from "./verify";
import { canonicalIpv6 } from "./validation";
import { type ConflictMode, conflictMode, isSysctlSource } from "./converge";
import { SYSCTL_CONF, SYSCTL_SOURCE_DIRS, conflictAdvice, sysctlSourcesAwk } from "./sysctlSources";
import { persistedExpectations } from "./verify";
import { sysctlListing } from "./plan";

/** Exit status of the standalone script. */
export const STANDALONE_EXIT = Object.freeze({
  /** Applied (or already in place) and verified. */
  ok: 0,
  /** Cannot run here: not root, or a managed key is not exposed in /proc/sys. Nothing changed. */
  cannotRun: 2,
  /** `php-fpm -t` or `nginx -t` failed: every file was put back, no service touched. */
  configTest: 10,
  /** `sysctl -p` of the drop-in failed: every file was put back. */
  sysctl: 11,
  /** A service failed to reload or restart (its status is printed): every file was put back and the service started again on the old files. */
  restart: 12,
  /** A file could not be written: every file was put back. */
  write: 13,
  /** Another pulumi-backlog run held the host's lock too long (its holder is printed). */
  locked: 14,
  /** Applied, but the host does not have what the profile says (the table shows what differs). */
  mismatch: 20,
});

/** Options of {@link standaloneScript}. */
export interface StandaloneOptions {
  /** File locations on the host. Default: Debian 12 (see `DEBIAN_12_PATHS`). */
  readonly paths?: Partial<HostPaths>;
  /** Unit and binary names of php-fpm and nginx. Default: Debian 12 (`php8.2-fpm`, `php-fpm8.2`, `nginx`). */
  readonly services?: Partial<ServiceNames>;
  /**
   * Name of the host's state directory, `/var/lib/pulumi-backlog/<stateName>`: the originals from
   * before the first run and the values the last run set. Default `"standalone"`, shared by the user
   * data and the SSM document so that both see the same history. Pattern `[A-Za-z0-9_.-]{1,64}`.
   */
  readonly stateName?: string;
  /** What carries the script, shown in its header comment, e.g. `"EC2 user data"`. Default: none. */
  readonly carrier?: string;
  /**
   * What to do with a line of another sysctl file that undoes the drop-in under boot,
   * `sysctl --system` or `sysctl -p` (docs/sysctl.md), decided on the host with the SSH path's model
   * (src/core/sysctlSources.ts, run as `sysctlSourcesAwk`): `"report"` (default) prints a line per
   * conflict and shows what boot and `sysctl --system` would leave as advisory verification rows;
   * `"neutralize"` also comments the line out with the SSH path's marker, inside the apply's
   * transaction (original kept in the state directory), and those rows must then hold; `"none"`
   * leaves sysctl conflicts out of the script (as before issue #14: about 3 KB less after gzip,
   * what EC2 user data's 16 KB needs; `backlogUserData`'s default).
   */
  readonly conflicts?: ConflictMode | "none";
  /**
   * Carry the sysctl conflict functions ({@link conflictShell}) gzipped in base64 rather than as
   * text: for a carrier that is size-limited and not compressed (the SSM document, 64 KB); a
   * carrier that gzips the whole script (EC2 user data) does better with text. Default `false`.
   */
  readonly compact?: boolean;
}

/** Default state directory name of the standalone script. */
export const STANDALONE_STATE_NAME = "standalone";

/** A profile given as input or already defined: validated here (throws `ProfileError`). */
export function resolveProfile(profile: ProfileInput | BacklogProfile): BacklogProfile {
  return toProfile(profile);
}

/** What a component that carries the standalone script (user data, SSM document) takes of its arguments. */
export interface StandaloneCarrierArgs {
  profile: ProfileInput | BacklogProfile;
  paths?: Partial<HostPaths>;
  services?: Partial<ServiceNames>;
  stateName?: string;
  conflicts?: ConflictMode | "none";
}

/**
 * A carrier's arguments resolved once: the validated profile and paths, the options of the
 * script's builder, and the values the component records as its inputs (defaults filled in, so a
 * stack policy sees what the hosts get). `defaultConflicts` is the carrier's own default.
 */
export function resolveCarrier(args: StandaloneCarrierArgs, defaultConflicts: ConflictMode | "none") {
  const profile = resolveProfile(args.profile);
  const paths = resolvePaths(args.paths);
  const conflicts = args.conflicts ?? defaultConflicts;
  return {
    profile,
    options: { paths: args.paths, services: args.services, stateName: args.stateName, conflicts },
    recorded: { profile, paths, services: args.services ?? {}, stateName: args.stateName ?? STANDALONE_STATE_NAME, conflicts },
  };
}

// ---------------------------------------------------------------------------------------
// The sysctl drop-in with run-time values

/** Placeholders of kernel key number `i` (in {@link kernelTargets} order) in the drop-in. */
export function dropInPlaceholders(i: number): { value: string; kept: string } {
  return { value: `@VALUE_${i}@`, kept: `@KEPT_${i}@` };
}

/** Shell variables the script sets for kernel key number `i`: the value to apply, and the kept host value (or empty). */
export function kernelVariables(i: number): { want: string; kept: string } {
  return { want: `pb_want_${i}`, kept: `pb_kept_${i}` };
}

/**
 * Fills the placeholders of a {@link ManagedFile.runtimeValues} file as the apply script does: a
 * placeholder whose variable is set becomes its value, a line holding one whose variable is empty
 * or unset is left out. The TypeScript twin of the `sed` in plan.ts, for checks and tests.
 */
export function fillRuntimeValues(content: string, runtimeValues: Readonly<Record<string, string>>, env: Readonly<Record<string, string | undefined>>): string {
  const lines = content
    .split("\n")
    .filter((line) => !Object.entries(runtimeValues).some(([placeholder, variable]) => line.includes(placeholder) && !env[variable]));
  let out = lines.join("\n");
  for (const [placeholder, variable] of Object.entries(runtimeValues)) {
    const v = env[variable];
    if (v) out = out.split(placeholder).join(v);
  }
  return out;
}

/**
 * The sysctl drop-in of `profile` with its kernel values left to the host: in mode `atLeast`, each
 * key's value line holds a placeholder for the value to apply, and the note "The host had N before"
 * one for the kept host value (its line is left out when nothing is kept). Filled in with
 * {@link fillRuntimeValues}, it is byte for byte `renderSysctlDropIn(profile, { hostBefore })` for
 * any host values; that is checked here for the two extremes and throws if the template ever
 * changes shape. In mode `exact` the values do not depend on the host and there are no placeholders.
 */
export function dropInTemplate(profile: BacklogProfile, templateDir?: string): { content: string; runtimeValues: Record<string, string> } {
  const plain = renderSysctlDropIn(profile, { templateDir });
  if (profile.mode !== "atLeast") return { content: plain, runtimeValues: {} };
  const targets = kernelTargets(profile);
  // Host values above the profile's make render() take the "kept" branch for every key; they are
  // distinct (above every profile value) so that each value and note line names one key.
  const probe: Partial<Record<SysctlKey, number>> = {};
  const base = Math.max(...targets.map((t) => t.profileValue)) + 1;
  targets.forEach((t, i) => {
    const v = base + i <= 2147483647 ? base + i : t.profileValue + 1;
    if (t.profileValue < 2147483647 && !Object.values(probe).includes(v)) probe[t.key] = v;
  });
  const kept = renderSysctlDropIn(profile, { templateDir, hostBefore: probe });
  const plainLines = new Set(plain.split("\n"));
  const runtimeValues: Record<string, string> = {};
  let lines = kept.split("\n");
  targets.forEach((t, i) => {
    const v = probe[t.key];
    if (v === undefined) return; // nothing can be above the largest value: the profile's is written as it is
    const ph = dropInPlaceholders(i);
    const vars = kernelVariables(i);
    let valueLines = 0;
    let noteLines = 0;
    lines = lines.map((line) => {
      if (line === `${t.key} = ${v}`) {
        valueLines++;
        return `${t.key} = ${ph.value}`;
      }
      if (!plainLines.has(line) && line.startsWith("#") && line.includes(` ${v} `)) {
        noteLines++;
        return line.replace(` ${v} `, ` ${ph.kept} `);
      }
      return line;
    });
    if (valueLines !== 1 || noteLines !== 1) {
      throw new Error(
        `standalone script: the sysctl drop-in template changed shape (${t.key}: ${valueLines} value line(s), ${noteLines} note line(s)); update dropInTemplate`,
      );
    }
    runtimeValues[ph.value] = vars.want;
    runtimeValues[ph.kept] = vars.kept;
  });
  const content = lines.join("\n");
  // Self-check against render() itself: nothing kept, and every value kept.
  const env = (keep: boolean) =>
    Object.fromEntries(
      targets.flatMap((t, i) => {
        const v = keep ? probe[t.key] : undefined;
        return [
          [kernelVariables(i).want, String(v ?? t.profileValue)],
          [kernelVariables(i).kept, v === undefined ? "" : String(v)],
        ];
      }),
    );
  if (fillRuntimeValues(content, runtimeValues, env(false)) !== plain || fillRuntimeValues(content, runtimeValues, env(true)) !== kept) {
    throw new Error("standalone script: the sysctl drop-in with placeholders does not fill back to render()'s output; update dropInTemplate");
  }
  return { content, runtimeValues };
}

// ---------------------------------------------------------------------------------------
// Verification in shell

/**
 * awk program: reads `ss -H -l -n -t [-e]` and `ss -H -l -n -x` output and prints the smallest
 * Send-Q of the listening sockets the selector in the environment names, and `1` when they all have
 * the same one (`missing` when none does). Parsing and matching follow `parseSs` and
 * `socketMatches` in verify.ts line by line; rows parseSs would reject are skipped. Selector:
 * `PB_KIND` (`unix` or `tcp`), `PB_PATH`; `PB_PORT`, `PB_HOST` (empty for every address),
 * `PB_FAMILY`, `PB_DUAL`. With `-v list=1` it prints instead one line per matching socket,
 * `INODE SEND-Q` in input order (`-` for an inode it cannot see: a TCP row read without `-e`),
 * and nothing when none matches: the decisions need each socket's inode to listen() on it again.
 * POSIX awk only (run here with Debian's mawk); no `'` and no `{{` (SSM reads `{{ … }}` as a
 * parameter).
 */
export const SOCKET_AWK = `
function hit(v, ino) {
  v = v + 0
  if (list != "") { if (ino !~ /^[0-9]+$/) ino = "-"; print ino " " v }
  if (n == 0) { low = v; first = v } else { if (v < low) low = v; if (v != first) same = 0 }
  n++
}
BEGIN {
  kind = ENVIRON["PB_KIND"]; spath = ENVIRON["PB_PATH"]; sport = ENVIRON["PB_PORT"] + 0
  shost = ENVIRON["PB_HOST"]; fam = ENVIRON["PB_FAMILY"]; dual = ENVIRON["PB_DUAL"]
  split("LISTEN UNCONN ESTAB SYN-SENT SYN-RECV FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT CLOSE-WAIT LAST-ACK CLOSING CLOSED UNKNOWN", names, " ")
  for (i in names) state[names[i]] = 1
  n = 0; same = 1
}
{
  nf = NF
  for (i = 1; i <= NF; i++) if (substr($i, 1, 7) == "users:(") { nf = i - 1; break }
  f = 1; netid = ""
  if (!($1 in state)) { netid = $1; f = 2 }
  if (!($f in state)) next
  if (nf - f + 1 < 5) next
  if ($f != "LISTEN") next
  q = $(f + 2)
  if (q !~ /^[0-9]+$/) next
  r = f + 3
  c = substr($r, 1, 1)
  if (substr(netid, 1, 2) == "u_" || c == "/" || c == "@") {
    if (nf - r + 1 < 4) next
    p = $r
    for (i = r + 1; i <= nf - 3; i++) p = p " " $i
    if (kind == "unix" && p == spath) hit(q, $(nf - 2))
    next
  }
  if (kind != "tcp") next
  a = $r
  for (i = length(a); i > 0; i--) if (substr(a, i, 1) == ":") break
  if (i <= 1) next
  h = substr(a, 1, i - 1); port = substr(a, i + 1)
  if (port !~ /^[0-9]+$/ || length(port) > 5 || port + 0 != sport) next
  if (substr(h, 1, 1) == "[") { j = index(h, "]"); if (j == 0) next; h = substr(h, 2, j - 2) substr(h, j + 1) }
  sub(/%[^%]*$/, "", h)
  h = tolower(h)
  if (shost == "") m = (h == "*" || h == "::" || h == "0.0.0.0")
  else if (shost == "0.0.0.0") m = (h == "0.0.0.0" || h == "*")
  else if (shost == "::") m = (h == "::" || h == "*" || (dual == "1" && h == "0.0.0.0"))
  else if (fam == "ipv4" && substr(h, 1, 7) == "::ffff:") m = (substr(h, 8) == shost)
  else m = (h == shost)
  if (!m) next
  ino = ""
  for (i = r + 2; i <= NF; i++) if ($i ~ /^ino:[0-9]+$/) { ino = substr($i, 5); break }
  hit(q, ino)
}
END { if (list != "") exit; if (n == 0) print "missing"; else print low " " same }
`;

/** Environment assignments (quoted) that select one socket for {@link SOCKET_AWK}. */
export function socketSelectorEnv(selector: SocketSelector): string {
  if (selector.kind === "unix") return `PB_KIND=unix PB_PATH=${quote(selector.path)}`;
  const e = selector.endpoint;
  const host = e.host === null ? "" : e.family === "ipv6" ? (canonicalIpv6(e.host) ?? e.host) : e.host;
  return `PB_KIND=tcp PB_PORT=${e.port} PB_HOST=${quote(host)} PB_FAMILY=${e.family} PB_DUAL=${selector.dualStack ? 1 : 0}`;
}

/** Hint texts of one row, from verify.ts's own `compare`, for each way it can differ. */
interface RowHints {
  missing: string;
  low: string;
  /** Socket truncated by a small somaxconn: text before and after the running somaxconn. */
  truncated: [string, string] | null;
  high: string;
}

function syntheticSocket(selector: SocketSelector, backlog: number): ListeningSocket {
  if (selector.kind === "unix") {
    return { kind: "unix", netid: "u_str", recvQ: 0, backlog, local: selector.path, host: null, port: null, path: selector.path };
  }
  const host = selector.endpoint.host ?? "*";
  return { kind: "tcp", netid: null, recvQ: 0, backlog, local: `${host}:${selector.endpoint.port}`, host, port: selector.endpoint.port, path: null };
}

function rowHints(e: ExpectedValue): RowHints {
  // Synthetic host states around an expected value x >= 2, so that x - 1 is still a backlog.
  const x = Math.max(e.expected, 2);
  const ex: ExpectedValue = { ...e, expected: x, comparison: "equal" };
  if (e.target.kind === "sysctl") {
    const key = e.target.key;
    return {
      missing: rowHintsFor(ex, {}, []),
      low: rowHintsFor(ex, { [key]: x - 1 }, []),
      truncated: null,
      high: rowHintsFor(ex, { [key]: x + 1 }, []),
    };
  }
  if (e.target.kind !== "socket") throw new Error(`standalone script: row ${JSON.stringify(e.setting)} is not a kernel or socket row`);
  const selector = e.target.socket;
  const smaller = x - 1;
  const truncatedText = rowHintsFor(ex, { [SOMAXCONN]: smaller }, [syntheticSocket(selector, smaller)]);
  const marker = `somaxconn ${smaller}`;
  const at = truncatedText.indexOf(marker);
  return {
    missing: rowHintsFor(ex, { [SOMAXCONN]: x }, []),
    low: rowHintsFor(ex, { [SOMAXCONN]: x }, [syntheticSocket(selector, smaller)]),
    truncated: at < 0 ? null : [truncatedText.slice(0, at) + "somaxconn ", truncatedText.slice(at + marker.length)],
    high: rowHintsFor(ex, { [SOMAXCONN]: x + 1 }, [syntheticSocket(selector, x + 1)]),
  };
}

/** The hint verify.ts's `compare` gives for `e` on a host with these values (which must differ from `e`). */
function rowHintsFor(e: ExpectedValue, sysctls: KernelValues, sockets: ListeningSocket[]): string {
  const [row] = compare([e], { sysctls, sockets });
  if (row === undefined || row.ok || row.hint === "") throw new Error(`standalone script: no hint for ${e.setting}`);
  return row.hint;
}

// ---------------------------------------------------------------------------------------
// The script

/** One row the script verifies, with how its expected value is computed on the host. */
interface ScriptRow {
  expected: ExpectedValue;
  /** Shell word for the expected value. */
  expectedWord: string;
  /** Shell word that yields `VALUE SAME` or `missing`. */
  effectiveWord: string;
  group: "sysctl" | "php" | "nginx";
  hints: RowHints;
}

function rows(profile: BacklogProfile): ScriptRow[] {
  const targets = kernelTargets(profile);
  const expected = expectedValues(profile);
  const somaxconnIndex = targets.findIndex((t) => t.key === SOMAXCONN);
  const want = (i: number) => `"$${kernelVariables(i).want}"`;
  // The application backlogs behind the socket rows, in expectedValues' order: pools, then each
  // nginx address once (its first listener's backlog).
  const seen = new Set<string>();
  const appBacklogs = [
    ...profile.pools.map((p) => p.backlog),
    ...profile.listeners.filter((l) => (seen.has(l.address) ? false : (seen.add(l.address), true))).map((l) => l.backlog),
  ];
  let socketIndex = 0;
  const profileSomaxconn = profile.sysctls[SOMAXCONN];
  return expected.map((e): ScriptRow => {
    const hints = rowHints(e);
    if (e.target.kind === "sysctl") {
      const i = targets.findIndex((t) => t.key === (e.target as { key: SysctlKey }).key);
      return { expected: e, expectedWord: want(i), effectiveWord: `"$(pb_sysctl ${quote(procPath(e.target.key))})"`, group: "sysctl", hints };
    }
    if (e.target.kind !== "socket") throw new Error(`standalone script: row ${JSON.stringify(e.setting)} is not a kernel or socket row`);
    const backlog = appBacklogs[socketIndex++];
    if (backlog === undefined || Math.min(backlog, profileSomaxconn) !== e.expected) {
      throw new Error(`standalone script: socket row ${JSON.stringify(e.setting)} does not follow expectedValues; update standalone.ts`);
    }
    return {
      expected: e,
      // min(application backlog, somaxconn applied), as expectedValues computes it for the host's values.
      expectedWord: `"$(pb_min ${backlog} ${want(somaxconnIndex)})"`,
      effectiveWord: `"$(printf '%s\\n' "$pb_socks" | ${socketSelectorEnv(e.target.socket)} pb_sock "$pb_list")"`,
      group: e.target.service === "php-fpm" ? "php" : "nginx",
      hints,
    };
  });
}

/** A row of what boot or `sysctl --system` would leave (verify.ts `persistedExpectations`), with its hint's parts. */
interface PersistedRow {
  setting: string;
  tool: string;
  key: SysctlKey;
  /** Index of the key in {@link kernelTargets}. */
  index: number;
  advisory: boolean;
  /** compare()'s hint around the effective value and its source (`[a, b, c]`: a VALUE b SOURCE c), and without a source (`[d, e]`). */
  withSource: [string, string, string];
  withoutSource: [string, string];
}

function persistedRows(profile: BacklogProfile, advisory: boolean): PersistedRow[] {
  const targets = kernelTargets(profile);
  const kernel = expectedValues(profile).filter((e) => e.target.kind === "sysctl");
  const value = 987654311;
  const src = "@PB_SOURCE@";
  return persistedExpectations(kernel, advisory).map((e): PersistedRow => {
    if (e.target.kind !== "persisted") throw new Error("standalone script: persistedExpectations gave a row that is not persisted");
    const { key, tool } = e.target;
    const hint = (source?: string) => {
      const [row] = compare([{ ...e, comparison: "equal" }], {
        sysctls: {},
        sockets: [],
        persisted: { [tool]: { [key]: { value, ...(source ? { source } : {}) } } },
      });
      if (row === undefined || row.ok || !row.hint) throw new Error(`standalone script: no hint for ${e.setting}`);
      return row.hint;
    };
    const a = hint(src);
    const b = hint();
    const [a1, rest = ""] = a.split(String(value)) as [string, string?];
    const [a2, a3 = ""] = rest.split(src) as [string, string?];
    const [b1, b2 = ""] = b.split(String(value)) as [string, string?];
    if (!a.includes(src) || a.split(String(value)).length !== 2 || b.split(String(value)).length !== 2) {
      throw new Error(`standalone script: the hint of ${e.setting} changed shape; update persistedRows`);
    }
    return {
      setting: e.setting,
      tool,
      key,
      index: targets.findIndex((t) => t.key === key),
      advisory: e.advisory === true,
      withSource: [a1, a2, a3],
      withoutSource: [b1, b2],
    };
  });
}

/** The shell `case` pattern of the sysctl files the library may comment lines out of (converge.ts `isSysctlSource`). */
function sysctlSourcePattern(): string {
  const pattern = [quote(SYSCTL_CONF), ...SYSCTL_SOURCE_DIRS.map((d) => `${quote(d)}/*.conf`)].join("|");
  // The glob's * may match a '/': the case arm is checked again with isSysctlSource's rule below.
  if (!isSysctlSource(SYSCTL_CONF) || !SYSCTL_SOURCE_DIRS.every((d) => isSysctlSource(`${d}/x.conf`)))
    throw new Error("standalone script: isSysctlSource changed; update sysctlSourcePattern");
  return pattern;
}

/**
 * The shell functions of the sysctl conflicts in the standalone script for `profile` (plain text;
 * the script carries them gzipped, see {@link standaloneScript}), empty when no kernel key is managed:
 * - `pb_sysctl_awk OUT PLANNED` lists the host's sysctl sources (plan.ts `sysctlListing`, the
 *   probe's own commands) into `sysctlSourcesAwk` (src/core/sysctlSources.ts) with the drop-in's
 *   values (`$pb_wantspec`, `KEY=VALUE=equal …`);
 * - `pb_conflict_lines FUNCTION` calls FUNCTION with one sentence per conflicting line
 *   (`formatConflict`'s, then `conflictAdvice`'s);
 * - `pb_neutral_list` (mode neutralize; run by the apply under its lock) says each on descriptor 3
 *   and prints `FILE<TAB>LINE<TAB>TEXT` per line to comment out;
 * - `pb_prows` prints the verification rows of what boot and `sysctl --system` would leave that
 *   differ (verify.ts `persistedExpectations`, compare()'s hint with the winning file:line), advisory
 *   (`pb_adv`) in mode report, else mismatches (`pb_pbad`). Needs `pb_out`, `pb_read`, `pb_say`, `pb_tell`.
 *
 * @param profileInput - the profile (validated here).
 * @param options - `paths` (the drop-in's path; default Debian 12) and `conflicts` (default `"report"`).
 */
export function conflictShell(profileInput: ProfileInput | BacklogProfile, options: Pick<StandaloneOptions, "paths" | "conflicts"> = {}): string {
  const profile = resolveProfile(profileInput);
  if (options.conflicts === "none") return "";
  const mode = conflictMode(options.conflicts, "conflicts");
  const listing = sysctlListing(managedKeys(profile));
  if (!listing) return "";
  const dropIn = resolvePaths(options.paths).sysctlDropIn;
  const rows = persistedRows(profile, mode === "report");
  const advice = quote(conflictAdvice(mode));
  const other = mode === "neutralize" ? quote("Not a sysctl file this library edits: change it by hand.") : advice;
  // The parts of compare()'s hints that do not depend on the row are given once.
  const [first] = rows;
  if (
    first &&
    rows.some(
      (r) =>
        r.withSource[1] !== first.withSource[1] ||
        r.withSource[2] !== first.withSource[2] ||
        r.withoutSource[1] !== first.withoutSource[1] ||
        r.withSource[0] !== r.withoutSource[0],
    )
  ) {
    throw new Error("standalone script: the persisted rows' hints differ beyond their start; update conflictShell");
  }
  return [
    `pb_sysctl_awk() { { echo @files; ${listing.files}; echo @lines; ${listing.lines}; } 2>/dev/null | LC_ALL=C awk -v dropin=${quote(dropIn)} -v want="$pb_wantspec" -v planned="$2" -v out="$1" ${quote(sysctlSourcesAwk())}; }`,
    "pb_conflict_lines() {",
    "  pb_sysctl_awk messages 1 | while IFS= read -r pb_m; do",
    mode === "neutralize"
      ? `    case $pb_m in 1*) "$1" "\${pb_m#??}. "${advice};; *) "$1" "\${pb_m#??}. "${other};; esac`
      : `    "$1" "\${pb_m#??}. "${advice}`,
    "  done",
    "}",
    mode === "neutralize" ? "pb_tell_conflict() { pb_tell 'sysctl conflict' \"$1\"; }" : 'pb_say_conflict() { pb_say "sysctl conflict: $1"; }',
    ...(mode === "neutralize" ? ["pb_neutral_list() { pb_conflict_lines pb_tell_conflict; pb_sysctl_awk neutralize 1; }"] : []),
    // pb_prow SETTING EXPECTED TOOL KEY PROC ADVISORY HINT_START
    "pb_prow() {",
    '  pb_w=$(printf \'%s\\n\' "$pb_winners" | awk -F \'\\t\' -v t="$3" -v k="$4" \'$1 == t && $2 == k { print $3 " " $4; exit }\')',
    "  pb_eff=${pb_w%% *}; pb_src=${pb_w#* }",
    '  if [ -z "$pb_eff" ]; then pb_src=\'\'; pb_eff=$(pb_read "$5") || pb_eff=missing; fi',
    // Shown only when it differs (the console of an SSM run shows 2,500 characters).
    '  if [ "$pb_eff" != missing ] && [ "$pb_eff" -eq "$2" ]; then return 0; fi',
    '  if [ -n "$6" ]; then pb_adv=$((pb_adv + 1)); pb_out "$1" "$2" "$pb_eff" advisory; else pb_pbad=$((pb_pbad + 1)); pb_out "$1" "$2" "$pb_eff" MISMATCH; fi',
    ...(first
      ? [
          `  if [ -n "$pb_src" ]; then printf '    hint: %s%s%s%s%s\\n' "$7" "$pb_eff" ${quote(first.withSource[1])} "$pb_src" ${quote(first.withSource[2])}; ` +
            `else printf '    hint: %s%s%s\\n' "$7" "$pb_eff" ${quote(first.withoutSource[1])}; fi`,
        ]
      : []),
    "}",
    "pb_prows() {",
    "  pb_winners=$(pb_sysctl_awk winners '')",
    ...rows.map(
      (r) =>
        `  pb_prow ${quote(r.setting)} "$${kernelVariables(r.index).want}" ${quote(r.tool)} ${quote(r.key)} ${quote(procPath(r.key))} ${r.advisory ? 1 : "''"} ` +
        quote(r.withSource[0]),
    ),
    "  return 0",
    "}",
    "",
  ].join("\n");
}

function say(text: string): string {
  return `pb_say ${quote(text)}`;
}

// ---------------------------------------------------------------------------------------
// Decisions in shell: converge.ts's decide(), made on the host at run time

/**
 * converge.ts `phpSocketSettings()` in POSIX awk: the socket a pool file (standard input) gives
 * php-fpm, printed in the same form.
 */
export const PHP_SOCKET_AWK = [
  'function k(l){if(l!~/^[ \\t]*listen(\\.(owner|group|mode|acl_users|acl_groups))?[ \\t]*=/)return"";sub(/^[ \\t]*/,"",l);sub(/[ \\t]*=.*/,"",l);return l}',
  '{sub(/\\r$/,"");n++;L[n]=$0;K[n]=k(tolower($0));if(/^[ \\t]*\\[/)s++}',
  'END{if(s>1)print"[";for(i=1;i<=n;i++)if(K[i]!=""){if(s>1){print L[i];continue}v=L[i];sub(/^[^=]*=[ \\t]*/,"",v);sub(/[ \\t]*$/,"",v);if(v~/^".*"$/&&length(v)>1)v=substr(v,2,length(v)-2);V[K[i]]=v}',
  'if(s>1)exit;m=V["listen.mode"];if(m=="")m=660;else if(m~/^[0-7]+$/){sub(/^0+/,"",m);if(m=="")m=0}',
  'OFS="\\n";print V["listen"],V["listen.owner"],V["listen.group"],m,V["listen.acl_users"],V["listen.acl_groups"]}',
].join("\n");

/** What the decision shell of one profile needs, resolved. */
interface DecisionInputs {
  profile: BacklogProfile;
  paths: HostPaths;
  names: ServiceNames;
  files: readonly RenderedFile[];
  checked: readonly ScriptRow[];
  /** Further settings the table shows (the width of its first column). Default: none. */
  extraSettings?: readonly string[];
}

function decisionLines(d: DecisionInputs): string[] {
  const { paths, names, files, checked } = d;
  const sockets = socketsToObserve(d.profile);
  const poolDir = paths.phpFpmPoolDir.replace(/\/+$/, "") + "/";
  const svc = (kind: RenderedFile["kind"]) => (kind === "nginx" ? "nginx" : "php");
  const serviceFiles = files.map((f, i) => ({ f, i })).filter(({ f }) => f.kind !== "sysctl");
  const width = Math.max("SETTING".length, ...checked.map((r) => r.expected.setting.length), ...(d.extraSettings ?? []).map((x) => x.length));
  const format = quote(`%-${width}s  %-9s  %-9s  %s\\n`);
  return [
    "# Decisions: converge.ts decide() at run time (pulumi-backlog test/unit/decisions.test.ts).",
    "pb_read() { pb_r=$(cat \"$1\" 2>/dev/null) || return 1; case $pb_r in ''|*[!0-9]*) return 1;; esac; printf '%s' \"$pb_r\"; }",
    'pb_sysctl() { if pb_r=$(pb_read "$1"); then printf \'%s 1\' "$pb_r"; else printf missing; fi; }',
    'pb_min() { if [ "$1" -lt "$2" ]; then printf \'%s\' "$1"; else printf \'%s\' "$2"; fi; }',
    `pb_sock() { awk -v list="\${1-}" ${quote(SOCKET_AWK)}; }`,
    // Only the sockets the profile names, selected by ss itself (a socket name holding a newline and
    // a fake row never matches an exact path filter); TCP with -e for the inodes. The probe's order.
    `pb_ss() { { ${[...sockets.unixPaths.map((u) => `ss -H -l -n -x src ${quote(u)};`), ...sockets.tcpPorts.map((p) => `ss -H -l -n -t -e ${quote(`sport = :${p}`)};`)].join(" ") || ":;"} } 2>/dev/null; }`,
    // The service files: pb_files FUNCTION DIR calls FUNCTION DIR SERVICE I PATH BACKUP for each.
    "pb_files() {",
    ...serviceFiles.map(({ f, i }) => `  "$1" "$2" ${svc(f.kind)} ${i} ${quote(f.path)} ${backupName(f.path)}`),
    "  return 0",
    "}",
    // pb_keep DIR SERVICE I PATH BACKUP: the file as the probe reads it (while an earlier run's journal
    // is open, the copy its rollback gives back) copied to DIR/I, or DIR/I.absent; neither: unreadable.
    "pb_keep() {",
    "  pb_f=$4",
    '  if [ -e "$S/txn/open" ] && [ -f "$S/txn/f/$5.path" ]; then',
    '    if [ -f "$S/txn/f/$5.absent" ]; then : > "$1/$3.absent"; return 0; fi',
    "    pb_f=$S/txn/f/$5.file",
    "  fi",
    '  if [ -f "$pb_f" ]; then cp "$pb_f" "$1/$3" 2>/dev/null || rm -f "$1/$3"; else : > "$1/$3.absent"; fi',
    "}",
    'pb_save_before() { pb_files pb_keep "$1"; }',
    // pb_need SERVICE ACTION REASON: converge.ts strongest(): the strongest action, its distinct reasons joined.
    "pb_need() {",
    "  case $2 in relisten) pb_n=1;; reload) pb_n=2;; *) pb_n=3;; esac",
    '  if [ "$1" = php ]; then pb_b=$pb_rank_php; pb_w=$pb_why_php; else pb_b=$pb_rank_nginx; pb_w=$pb_why_nginx; fi',
    '  if [ "$pb_n" -gt "$pb_b" ]; then pb_b=$pb_n; pb_w=$3',
    '  elif [ "$pb_n" = "$pb_b" ]; then case "; $pb_w; " in *"; $3; "*) ;; *) pb_w="$pb_w; $3";; esac',
    "  fi",
    '  if [ "$1" = php ]; then pb_rank_php=$pb_b; pb_why_php=$pb_w; else pb_rank_nginx=$pb_b; pb_why_nginx=$pb_w; fi',
    "}",
    // converge.ts phpSocketSettings(): the socket a pool file on standard input gives php-fpm.
    `pb_socket_of() { awk ${quote(PHP_SOCKET_AWK)}; }`,
    // converge.ts withoutBacklog(): the file without its backlog values.
    "pb_strip() { if [ \"$1\" = php ]; then sed '/^[[:space:]]*listen\\.backlog[[:space:]]*=/d'; else sed 's/ backlog=[0-9][0-9]*//g'; fi; }",
    // pb_file_need DIR SERVICE I PATH: converge.ts fileChangeNeed() of the file as it was (DIR/I) and is now (PATH).
    "pb_file_need() {",
    "  pb_o=$1/$3",
    '  if [ -f "$pb_o.absent" ]; then',
    '    [ -f "$4" ] || return 0',
    '    if [ "$2" = php ]; then pb_php_changed=1; pb_need php reload "$4 is new: php-fpm opens its pool\'s socket on reload"; else pb_nginx_changed=1; pb_need nginx reload "$4 is new: nginx loads it on reload"; fi',
    "    return 0",
    "  fi",
    '  if [ ! -f "$pb_o" ]; then',
    '    if [ "$2" = php ]; then pb_php_changed=1; pb_need php restart "$4 may have changed (not compared)"; else pb_nginx_changed=1; pb_need nginx reload "$4 may have changed (not compared)"; fi',
    "    return 0",
    "  fi",
    '  cmp -s "$pb_o" "$4" && return 0',
    '  if [ "$2" = php ]; then pb_php_changed=1; else pb_nginx_changed=1; fi',
    '  pb_strip "$2" < "$pb_o" > "$pb_o.a"; pb_strip "$2" < "$4" > "$pb_o.b"',
    '  if cmp -s "$pb_o.a" "$pb_o.b"; then pb_need "$2" relisten "$4: only the backlog changes"; return 0; fi',
    '  if [ "$2" = php ]; then',
    '    pb_socket_of < "$pb_o" > "$pb_o.a"; pb_socket_of < "$4" > "$pb_o.b"',
    '    if ! cmp -s "$pb_o.a" "$pb_o.b"; then pb_need php restart "$4: the listen address or socket owner/group/mode changes"; return 0; fi',
    "  fi",
    '  pb_need "$2" reload "$4: settings other than the listen socket change"',
    "}",
    // pb_sock_need SERVICE EXPECTED SETTING LIST (`INODE SEND-Q` lines of the matching sockets): none:
    // restart (a service whose files changed: reload, it opens the sockets itself); a Send-Q that
    // differs: listen() again on that socket with the expected backlog.
    "pb_sock_need() {",
    '  if [ -z "$4" ] && [ "$1" = nginx ] && [ -n "${pb_nginx_changed-}" ]; then pb_need nginx reload "$3: no listening socket yet: nginx opens it on reload"; return 0; fi',
    '  if [ -z "$4" ] && [ "$1" = php ] && [ -n "${pb_php_changed-}" ]; then pb_need php reload "$3: no listening socket yet: php-fpm opens it on reload"; return 0; fi',
    '  if [ -z "$4" ]; then pb_need "$1" restart "$3: no listening socket"; return 0; fi',
    "  pb_qs=''; pb_differs=''",
    "  while read -r pb_ino pb_q; do",
    '    pb_qs="${pb_qs:+$pb_qs/}$pb_q"',
    '    [ "$pb_q" != "$2" ] || continue',
    "    pb_differs=1",
    '    [ "$pb_ino" != - ] || continue',
    '    if [ "$1" = php ]; then pb_pairs_php="$pb_pairs_php $pb_ino=$2"; pb_olds_php="$pb_olds_php $pb_ino=$pb_q"; else pb_pairs_nginx="$pb_pairs_nginx $pb_ino=$2"; pb_olds_nginx="$pb_olds_nginx $pb_ino=$pb_q"; fi',
    "  done <<PB_SOCKETS",
    "$4",
    "PB_SOCKETS",
    '  [ -z "$pb_differs" ] || pb_need "$1" relisten "$3: $pb_qs \u2192 $2"',
    "}",
    "pb_unit_need() {",
    '  pb_v=$(systemctl is-active "$2" 2>/dev/null | head -n 1)',
    '  case ${pb_v:-unknown} in active|reloading) ;; *) pb_need "$1" restart "$2 is ${pb_v:-unknown}";; esac',
    "}",
    // One row per expected value (verify.ts's expectedValues), shared by the decision (pb_list=1: each
    // socket row's sockets to pb_sock_need) and the verification (pb_list='': the table row, compare()'s result and hint).
    // pb_row GROUP SETTING EXPECTED "VALUE SAME"|missing|LIST HINT_MISSING HINT_LOW HINT_TRUNC_BEFORE HINT_TRUNC_AFTER HINT_HIGH
    "pb_row() {",
    '  if [ -n "$pb_list" ]; then [ "$1" = sysctl ] || pb_sock_need "$1" "$3" "$2" "$4"; return 0; fi',
    "  pb_total=$((pb_total + 1)); pb_eff=${4% *}; pb_same=${4#* }",
    '  if [ "$4" = missing ]; then pb_eff=missing; pb_same=1; fi',
    '  if [ "$pb_eff" != missing ] && [ "$pb_same" = 1 ] && [ "$pb_eff" -eq "$3" ]; then',
    `    printf ${format} "$2" "$3" "$pb_eff" ok; return 0`,
    "  fi",
    "  pb_bad=$((pb_bad + 1))",
    '  if [ "$pb_eff" = missing ]; then pb_hint=$5',
    '  elif [ "$pb_eff" -lt "$3" ] && [ -n "$7" ] && [ -n "$pb_sx" ] && [ "$pb_sx" -lt "$3" ]; then pb_hint="$7$pb_sx$8"',
    '  elif [ "$pb_eff" -lt "$3" ]; then pb_hint=$6',
    "  else pb_hint=$9; fi",
    `  printf ${format} "$2" "$3" "$pb_eff" MISMATCH`,
    "  printf '    hint: %s\\n' \"$pb_hint\"",
    "}",
    "pb_rows() {",
    ...checked.map(
      (r) =>
        `  pb_row ${r.group} ${quote(r.expected.setting)} ${r.expectedWord} ${r.effectiveWord} ` +
        `${quote(r.hints.missing)} ${quote(r.hints.low)} ${quote(r.hints.truncated?.[0] ?? "")} ${quote(r.hints.truncated?.[1] ?? "")} ${quote(r.hints.high)}`,
    ),
    "  return 0",
    "}",
    `pb_head() { printf ${format} SETTING EXPECTED EFFECTIVE RESULT; }`,
    `pb_out() { printf ${format} "$1" "$2" "$3" "$4"; }`,
    // pb_decide BEFORE_DIR APPLY_LOG: sets pb_act_SERVICE, pb_why_SERVICE, pb_pairs_SERVICE (inode=backlog) and pb_retired.
    "pb_decide() {",
    "  pb_rank_php=0; pb_why_php=''; pb_pairs_php=''; pb_olds_php=''; pb_rank_nginx=0; pb_why_nginx=''; pb_pairs_nginx=''; pb_olds_nginx=''; pb_nginx_changed=''; pb_php_changed=''",
    '  pb_files pb_file_need "$1"',
    // Files this owner managed last time and the profile no longer has: the apply gave them back (ApplyPlan.retireStale).
    '  pb_retired=$(sed -n "s/^@@$T retired //p" "$2" 2>/dev/null | sort)',
    "  while IFS= read -r pb_p; do",
    `    case $pb_p in ${quote(poolDir)}*) pb_need php restart "$pb_p goes: its pool stops listening on restart";; esac`,
    `    [ "$pb_p" != ${quote(paths.nginxConf)} ] || pb_need nginx reload "$pb_p goes back to its original"`,
    "  done <<PB_RETIRED",
    "$pb_retired",
    "PB_RETIRED",
    "  pb_socks=$(pb_ss); pb_list=1; pb_rows",
    ...(d.profile.pools.length > 0 ? [`  pb_unit_need php ${quote(names.phpFpmUnit)}`] : []),
    ...(d.profile.listeners.length > 0 ? [`  pb_unit_need nginx ${quote(names.nginxUnit)}`] : []),
    ...["php", "nginx"].flatMap((sv) => [
      `  case $pb_rank_${sv} in 1) pb_act_${sv}=relisten;; 2) pb_act_${sv}=reload;; 3) pb_act_${sv}=restart;; *) pb_act_${sv}=none;; esac`,
      `  case $pb_act_${sv} in relisten|reload) ;; *) pb_pairs_${sv}=''; pb_olds_${sv}='';; esac`,
    ]),
    "}",
  ];
}

/**
 * The decision part of the standalone script for `profile`, as it appears in it: POSIX sh
 * functions that take converge.ts `decide()`'s decisions on the host, after the apply (files
 * written, `sysctl -p` done), where the SSH path takes them in the program before:
 * - `pb_save_before DIR`, run before the apply: each service file copied to DIR, as the probe would
 *   read it (an open journal's copy first);
 * - `pb_decide DIR APPLY_LOG`, run after it: per service (`php`, `nginx`) the strongest need
 *   (converge.ts `strongest`) of each changed file (`fileChangeNeed`: backlog only: relisten;
 *   php-fpm socket address, owner, group, mode or ACLs as php-fpm reads them ({@link PHP_SOCKET_AWK}):
 *   restart; else, a new pool too, reload; a new nginx file: reload), each retired file (the apply's
 *   `retired` lines: a pool: restart, the nginx file: reload), each of the profile's sockets (`ss`:
 *   none: restart, or reload when its service's files changed; a Send-Q other than
 *   min(backlog, somaxconn applied): relisten of that inode) and the unit (not active: restart).
 *   Results: `pb_act_php`, `pb_why_php` (the reasons, converge.ts's words), `pb_pairs_php`
 *   (` inode=backlog` pairs for relisten and reload), the same for nginx, and `pb_retired`;
 * - `pb_rows` with `pb_head`: one `pb_row` per expected value, shared by the decision (`pb_list=1`:
 *   the socket rows' sockets) and the verification table at the end (`pb_list=''`: compare()'s
 *   result and hint per row).
 * Needs `$T` (the apply's report token), `$S` (state directory) and the kernel value variables
 * ({@link kernelVariables}); runs `ss`, `systemctl is-active`, `awk`, `sed`, `grep`, `cmp`.
 * test/unit/decisions.test.ts runs it beside `decide()` on the same hosts.
 */
export function decisionShell(profileInput: ProfileInput | BacklogProfile, options: Pick<StandaloneOptions, "paths" | "services"> = {}): string {
  const profile = resolveProfile(profileInput);
  const paths = resolvePaths(options.paths);
  return decisionLines({ profile, paths, names: serviceNames(options.services), files: render(profile, { paths }), checked: rows(profile) }).join("\n");
}

/**
 * The standalone script for `profile`: `#!/bin/sh`, runs as root without a terminal, applies the
 * profile through {@link applyScript}, then gives each service converge.ts's least disruptive
 * action (see `decisionShell` in src/core/standalone.ts), verifies and prints the table and `pulumi-backlog: OK` or
 * `pulumi-backlog: MISMATCH`. Pure and deterministic: the same profile and options give the same bytes.
 *
 * @throws `ProfileError` for an invalid profile or path option; `Error` for a bad state name.
 */
export function standaloneScript(profileInput: ProfileInput | BacklogProfile, options: StandaloneOptions = {}): string {
  const profile = resolveProfile(profileInput);
  const paths = resolvePaths(options.paths);
  const names = serviceNames(options.services);
  const stateName = options.stateName ?? STANDALONE_STATE_NAME;
  if (typeof stateName !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(stateName) || /^\.\.?$/.test(stateName)) {
    throw new Error(`stateName ${JSON.stringify(stateName)}: must be 1-64 letters, digits, '_', '.' or '-'`);
  }
  // One state directory per host, shared with the SSH path; this script is one of its owners.
  const stateDir = STATE_DIR;
  const targets = kernelTargets(profile);
  const keys = managedKeys(profile);
  const files: RenderedFile[] = render(profile, { paths });
  const dropIn = dropInTemplate(profile);
  const managed: ManagedFile[] = files.map((f) =>
    f.kind === "sysctl"
      ? { path: f.path, content: dropIn.content, mode: f.mode, owner: f.owner, group: f.group, runtimeValues: dropIn.runtimeValues }
      : { path: f.path, content: f.content, mode: f.mode, owner: f.owner, group: f.group },
  );
  // What each service needs is decided on the host inside the apply's transaction (pb_decide, after
  // the files are written and sysctl -p loaded): a failed reload or restart puts everything back.
  const onHost = (sv: "php" | "nginx") => ({
    action: `pb_act_${sv}`,
    reason: `pb_why_${sv}`,
    pairs: `pb_pairs_${sv}`,
    olds: `pb_olds_${sv}`,
    announce: "pb_tell",
  });
  const services: ManagedService[] = [];
  if (profile.pools.length > 0) services.push({ unit: names.phpFpmUnit, test: [names.phpFpmBinary, "-t"], action: "none", decidedOnHost: onHost("php") });
  if (profile.listeners.length > 0) services.push({ unit: names.nginxUnit, test: [names.nginxBinary, "-t"], action: "none", decidedOnHost: onHost("nginx") });
  const beforeServices = [
    'pb_decide "$pb_before" "$pb_state/apply.log"',
    '[ -z "$pb_retired" ] || printf \'%s\\n\' "$pb_retired" | while IFS= read -r pb_p; do pb_tell "$pb_p" \'given back as it was before the first deploy\'; done',
    ...services.map(
      (sv) => `[ "$${sv.decidedOnHost?.action}" = none ] || pb_tell ${quote(sv.unit)} "$${sv.decidedOnHost?.action} ($${sv.decidedOnHost?.reason})"`,
    ),
  ];
  const sockets = socketsToObserve(profile);
  // Sysctl conflicts: the SSH path's model (sysctlSources.ts) run on the host by its awk port.
  const none = options.conflicts === "none";
  const mode = none ? "report" : conflictMode(options.conflicts, "conflicts");
  const listing = none ? undefined : sysctlListing(keys);
  const conflictsPart = conflictShell(profile, { paths: options.paths, conflicts: none ? "none" : mode });
  const plan: ApplyPlan = {
    stateDir,
    owner: stateName,
    legacyName: stateName,
    files: managed,
    sysctlFile: paths.sysctlDropIn,
    sysctlKeys: keys,
    services,
    sockets,
    retireStale: true,
    beforeServices,
    ...(listing && mode === "neutralize" ? { neutralizeOnHost: { list: "pb_neutral_list", sourcePattern: sysctlSourcePattern() } } : {}),
  };
  // The apply's report goes to a root-only log and is only shown, never parsed for values (but
  // for the names of retired files): a token derived from the profile keeps this script's bytes deterministic.
  const token = createHash("sha256")
    .update(JSON.stringify({ profile: profile.name, stateName, files: managed }))
    .digest("hex")
    .slice(0, 32);
  // plan.ts's shell library once, at the top: the apply (a subshell) and the service actions both use it.
  const library = scriptLibrary(stateDir, stateName, { token });
  const apply = applyScript(plan, { token });
  const applyHead = "pb_main() {\n" + library.join("\n") + "\n";
  if (!apply.startsWith(applyHead)) throw new Error("standalone script: applyScript no longer starts with scriptLibrary's lines; update standalone.ts");
  const applyBody = "pb_main() {\n" + apply.slice(applyHead.length);
  const checked = rows(profile);

  const L: string[] = [
    "#!/bin/sh",
    `# pulumi-backlog: apply and verify backlog profile "${profile.name}" (mode ${profile.mode}) on this host.`,
    ...(options.carrier ? [`# Carried by ${options.carrier.replace(/[^\x20-\x7e]/g, "?")}.`] : []),
    "# Generated from the profile by pulumi-backlog (src/core/standalone.ts): do not edit, regenerate.",
    "# Runs as root without a terminal (cloud-init user data, SSM aws:runShellScript, or `sudo sh FILE`).",
    `# Exit: ${STANDALONE_EXIT.ok} verified, ${STANDALONE_EXIT.mismatch} MISMATCH, ${STANDALONE_EXIT.cannotRun} cannot run here, ` +
      `${STANDALONE_EXIT.configTest}/${STANDALONE_EXIT.sysctl}/${STANDALONE_EXIT.write} apply failed (files put back), ${STANDALONE_EXIT.restart} restart or reload failed.`,
    "set -u",
    "# plan.ts's shell library (lock, journal, pb_relisten, pb_cgroup, ...): the apply and the service actions use it.",
    ...library,
    `pb_state=${quote(stateDir)}`,
    "pb_say() { printf 'pulumi-backlog: %s\\n' \"$*\"; }",
    // From inside the apply (whose output goes to its log): a line for the reader, on descriptor 3.
    'pb_tell() { printf \'pulumi-backlog: %s: %s\\n\' "$1" "$2" >&3; }',
    ...decisionLines({ profile, paths, names, files, checked }),
    // The sysctl conflict functions (conflictShell), gzipped and in base64 (deterministic: no name, no
    // time): the SSM document holds 64 KB. They are this generator's own code, run as it is.
    ...(conflictsPart && options.compact
      ? [
          `eval "$(printf '%s' ${quote(gzipSync(Buffer.from(conflictsPart, "utf8"), { level: 9 }).toString("base64"))} | base64 -d | gzip -dc)"`,
          `command -v pb_prows >/dev/null 2>&1 || { ${say("FAILED: cannot unpack the script's sysctl functions (base64 -d | gzip -dc); nothing changed")}; exit ${STANDALONE_EXIT.cannotRun}; }`,
        ]
      : conflictsPart
        ? conflictsPart.replace(/\n$/, "").split("\n")
        : []),
    "pb_host=$(cat /var/lib/cloud/data/instance-id 2>/dev/null || true)",
    'pb_host="$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)${pb_host:+ ($pb_host)}"',
    `pb_say ${quote(`profile "${profile.name}" (mode ${profile.mode}) on `)}"$pb_host"`,
    `if [ "$(id -u)" != 0 ]; then ${say("FAILED: must run as root (cloud-init and the SSM agent do); nothing changed")}; exit ${STANDALONE_EXIT.cannotRun}; fi`,
    "",
    "# 1. Kernel values: the host's own value of each key (its running value, unless that is the one",
    "#    the last run set: then the value from before the first run), and the value to apply.",
  ];
  targets.forEach((t, i) => {
    const v = kernelVariables(i);
    const proc = quote(procPath(t.key));
    const applied = `"$pb_state/"${quote("applied." + t.key)}`;
    const kept = `"$pb_state/"${quote("kept." + t.key)}`;
    const orig = `"$pb_state/orig/"${quote("sysctl." + t.key)}`;
    L.push(
      `pb_now_${i}=$(pb_read ${proc}) || { ${say(`FAILED: ${procPath(t.key)} cannot be read: the key is hidden in a network namespace owned by an unprivileged user namespace, or this is not Linux; nothing changed`)}; exit ${STANDALONE_EXIT.cannotRun}; }`,
      `pb_own_${i}=$pb_now_${i}`,
      // A value the last run set from the profile is not the host's own; one it kept is.
      `if [ -f ${applied} ] && [ "$(cat ${applied})" = "$pb_now_${i}" ] && ! { [ -f ${kept} ] && [ "$(cat ${kept})" = "$pb_now_${i}" ]; }; then ` +
        `pb_own_${i}=$(pb_read ${orig}) || pb_own_${i}=$pb_now_${i}; fi`,
    );
    if (profile.mode === "atLeast") {
      L.push(
        `if [ "$pb_own_${i}" -gt ${t.profileValue} ]; then ${v.want}=$pb_own_${i}; ${v.kept}=$pb_own_${i}; ` +
          `pb_say ${quote(`${t.key}: keeping the host's `)}"$pb_own_${i}"${quote(` (above the profile's ${t.profileValue}; mode atLeast)`)}; ` +
          `else ${v.want}=${t.profileValue}; ${v.kept}=''; fi`,
      );
    } else {
      L.push(`${v.want}=${t.profileValue}; ${v.kept}=''`);
    }
  });
  L.push(`pb_wantspec="${targets.map((t, i) => `${t.key}=$${kernelVariables(i).want}=equal`).join(" ")}"`);
  const keptLines = targets.map(
    (t, i) =>
      `if [ -n "$${kernelVariables(i).kept}" ]; then printf '%s\\n' "$${kernelVariables(i).kept}" > "$pb_state/"${quote("kept." + t.key)}; ` +
      `else rm -f "$pb_state/"${quote("kept." + t.key)}; fi`,
  );
  L.push(
    "",
    "# 2. The service files before the apply (root-only copies), to classify each change afterwards.",
    `mkdir -p "$pb_state" && chmod 700 "$pb_state" || { pb_say "FAILED: cannot create $pb_state"; exit ${STANDALONE_EXIT.cannotRun}; }`,
    `pb_tmp=$(mktemp -d /run/pulumi-backlog-before.XXXXXX 2>/dev/null || mktemp -d "$pb_state/before.XXXXXX") || { pb_say "FAILED: cannot create a temporary directory"; exit ${STANDALONE_EXIT.cannotRun}; }`,
    "trap 'rm -rf \"$pb_tmp\"' EXIT",
    "pb_before=$pb_tmp",
    'pb_save_before "$pb_before"',
    "",
    "# 3. Apply: plan.ts's applyScript, one transaction under the host's lock: write, give back retired",
    "#    files, test, sysctl -p, then per service the least disruptive action (pb_decide), carried out.",
    "#    Any failed step, a failed reload or restart included, puts everything back.",
    "exec 3>&1",
    "(",
    applyBody.replace(/\n$/, ""),
    ') > "$pb_state/apply.log" 2>&1',
    "pb_rc=$?",
    'if [ "$pb_rc" != 0 ]; then',
    "  case $pb_rc in",
    `    ${STANDALONE_EXIT.configTest}) ${say("FAILED: a configuration test failed; every file was put back and no service was touched:")};;`,
    `    ${STANDALONE_EXIT.sysctl}) ${say("FAILED: sysctl -p of the drop-in failed; every file was put back:")};;`,
    `    ${STANDALONE_EXIT.write}) ${say("FAILED: a file could not be written; every file was put back:")};;`,
    `    ${STANDALONE_EXIT.restart}) ${say("FAILED: a reload or restart failed; every file was put back and the service started again on the old files:")};;`,
    '    *) pb_say "FAILED: the apply step stopped with exit status $pb_rc:";;',
    "  esac",
    `  sed -n '/^@@${token} failed/,$p' "$pb_state/apply.log" | sed 's/^@@${token} failed /  step: /'`,
    '  exit "$pb_rc"',
    "fi",
    "# Which values were kept as the host's own (applyScript recorded every value it set in applied.<key>).",
    ...keptLines,
    "",
    // What relisten did, from the apply's log.
    "sed -n 's/^listened socket /  listened socket /p' \"$pb_state/apply.log\"",
    ...(listing && mode === "report" ? ["pb_conflict_lines pb_say_conflict"] : []),
    "",
    "# 4. Verification: one row per expected value (verify.ts's expectedValues and compare).",
    "pb_socks=$(pb_ss); pb_list=''",
    `pb_sx=$(pb_read ${quote(procPath(SOMAXCONN))}) || pb_sx=''`,
    "pb_total=0; pb_bad=0; pb_adv=0; pb_pbad=0",
    "pb_head",
    "pb_rows",
    // What boot and sysctl --system would leave (advisory in mode report).
    ...(conflictsPart ? ["pb_prows"] : []),
  );
  L.push(
    'pb_advnote=\'\'; [ "$pb_adv" = 0 ] || pb_advnote="; $pb_adv advisory row(s): what boot or sysctl --system would leave differs (conflicts report)"',
    '[ "$pb_pbad" = 0 ] || pb_advnote="; $pb_pbad row(s) of what boot or sysctl --system would leave differ"',
    'if [ "$pb_bad" = 0 ] && [ "$pb_pbad" = 0 ]; then',
    `  pb_say "OK: all $pb_total settings verified (/proc/sys and ss) against profile "${quote(`"${profile.name}"`)}"$pb_advnote"`,
    `  exit ${STANDALONE_EXIT.ok}`,
    "fi",
    `pb_say "MISMATCH: $pb_bad of $pb_total settings differ from profile "${quote(`"${profile.name}"`)}"$pb_advnote; details: $pb_state/apply.log"`,
    `exit ${STANDALONE_EXIT.mismatch}`,
    "",
  );
  return L.join("\n");
}
