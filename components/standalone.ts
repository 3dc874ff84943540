/**
 * The standalone script: one POSIX `sh` script, generated from a profile, that applies and verifies
 * it on the host it runs on, with nothing else involved (no SSH, no Pulumi on the host). It is what
 * the AWS paths carry (EC2 user data run by cloud-init, an SSM `aws:runShellScript` step), and it
 * runs the same way by hand: `sudo sh script.sh`.
 *
 * It is made of the parts the SSH components use, so there is one way to apply and verify:
 * - the files are {@link render}'s, written, tested, loaded and rolled back by {@link applyScript}
 *   (plan.ts), in a subshell whose report goes to a log file;
 * - the kernel values follow {@link kernelTargets}: in mode `atLeast` the host's own value is kept
 *   when it is above the profile (the larger value is written into the drop-in, so boot keeps it
 *   too). Which value is the host's own follows `hostOwnValues` of the SSH path (converge.ts): the
 *   running value, unless it is the one the last run set from the profile, then the value from
 *   before the first run. One difference: a value the last run kept (recorded in `kept.<key>`)
 *   stays the host's own, so a value raised by hand after the first run is not lowered by the
 *   run after the one that kept it. The drop-in is byte for byte `render(profile, { hostBefore: own })`;
 * - verification is {@link expectedValues} and {@link compare}'s: each sysctl equal to the value
 *   applied, each socket's effective backlog (`ss` Send-Q) equal to `min(backlog, somaxconn)`, the
 *   sockets matched as {@link socketMatches} does, and the same hints.
 * What this script decides at run time, where the SSH path decides before: a service is restarted
 * only when one of its files changed or one of its sockets differs from the profile (a php-fpm
 * restart drops requests in flight, and the SSM association runs this every half hour).
 *
 * Output: a few lines of what it did, a table (SETTING, EXPECTED, EFFECTIVE, RESULT, with a hint
 * under each mismatch), then `pulumi-backlog: OK …` or `pulumi-backlog: MISMATCH …`.
 * Exit status: see {@link STANDALONE_EXIT}.
 *
 * @packageDocumentation
 */

import { createHash } from "crypto";
import { STATE_DIR, type ServiceNames, managedKeys, serviceNames, socketsToObserve } from "./converge";
import { type ApplyPlan, type ManagedFile, type ManagedService, applyScript, procPath, serviceAction } from "./plan";
import {
  type BacklogProfile,
  type KernelValues,
  type ProfileInput,
  SOMAXCONN,
  type SysctlKey,
  toProfile,
  kernelTargets,
} from "./profile";
import { type HostPaths, type RenderedFile, render, renderSysctlDropIn, resolvePaths } from "./render";
import { quote } from "./shell";
import { type ExpectedValue, type ListeningSocket, type SocketSelector, compare, expectedValues } from "./verify";
import { canonicalIpv6 } from "./validation";

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
  /** A service failed to restart (its status is printed). */
  restart: 12,
  /** A file could not be written: every file was put back. */
  write: 13,
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
}

/** Default state directory name of the standalone script. */
export const STANDALONE_STATE_NAME = "standalone";

/** A profile given as input or already defined: validated here (throws `ProfileError`). */
export function resolveProfile(profile: ProfileInput | BacklogProfile): BacklogProfile {
  return toProfile(profile);
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
  const lines = content.split("\n").filter((line) =>
    !Object.entries(runtimeValues).some(([placeholder, variable]) => line.includes(placeholder) && !env[variable]));
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
      throw new Error(`standalone script: the sysctl drop-in template changed shape (${t.key}: ${valueLines} value line(s), ${noteLines} note line(s)); update dropInTemplate`);
    }
    runtimeValues[ph.value] = vars.want;
    runtimeValues[ph.kept] = vars.kept;
  });
  const content = lines.join("\n");
  // Self-check against render() itself: nothing kept, and every value kept.
  const env = (keep: boolean) => Object.fromEntries(targets.flatMap((t, i) => {
    const v = keep ? probe[t.key] : undefined;
    return [[kernelVariables(i).want, String(v ?? t.profileValue)], [kernelVariables(i).kept, v === undefined ? "" : String(v)]];
  }));
  if (fillRuntimeValues(content, runtimeValues, env(false)) !== plain || fillRuntimeValues(content, runtimeValues, env(true)) !== kept) {
    throw new Error("standalone script: the sysctl drop-in with placeholders does not fill back to render()'s output; update dropInTemplate");
  }
  return { content, runtimeValues };
}

// ---------------------------------------------------------------------------------------
// Verification in shell

/**
 * awk program: reads `ss -H -l -n -t` and `ss -H -l -n -x` output and prints the smallest Send-Q
 * of the listening sockets the selector in the environment names, and `1` when they all have the
 * same one (`missing` when none does). Parsing and matching follow `parseSs` and `socketMatches`
 * in verify.ts line by line; rows parseSs would reject are skipped. Selector: `PB_KIND` (`unix`
 * or `tcp`), `PB_PATH`; `PB_PORT`, `PB_HOST` (empty for every address), `PB_FAMILY`, `PB_DUAL`.
 * POSIX awk only (run here with Debian's mawk); no `'` and no `{{` (SSM reads `{{ … }}` as a
 * parameter).
 */
export const SOCKET_AWK = `
function hit(v) {
  v = v + 0
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
    if (kind == "unix" && p == spath) hit(q)
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
  if (m) hit(q)
}
END { if (n == 0) print "missing"; else print low " " same }
`;

/** Environment assignments (quoted) that select one socket for {@link SOCKET_AWK}. */
export function socketSelectorEnv(selector: SocketSelector): string {
  if (selector.kind === "unix") return `PB_KIND=unix PB_PATH=${quote(selector.path)}`;
  const e = selector.endpoint;
  const host = e.host === null ? "" : (e.family === "ipv6" ? canonicalIpv6(e.host) ?? e.host : e.host);
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
    const backlog = appBacklogs[socketIndex++];
    if (backlog === undefined || Math.min(backlog, profileSomaxconn) !== e.expected) {
      throw new Error(`standalone script: socket row ${JSON.stringify(e.setting)} does not follow expectedValues; update standalone.ts`);
    }
    return {
      expected: e,
      // min(application backlog, somaxconn applied), as expectedValues computes it for the host's values.
      expectedWord: `"$(pb_min ${backlog} ${want(somaxconnIndex)})"`,
      effectiveWord: `"$(printf '%s\\n' "$pb_sockets" | ${socketSelectorEnv(e.target.socket)} pb_sock)"`,
      group: e.target.service === "php-fpm" ? "php" : "nginx",
      hints,
    };
  });
}

function say(text: string): string {
  return `pb_say ${quote(text)}`;
}

/**
 * The standalone script for `profile`: `#!/bin/sh`, runs as root without a terminal, applies the
 * profile through {@link applyScript}, restarts what must listen again, verifies and prints the
 * table and `pulumi-backlog: OK` or `pulumi-backlog: MISMATCH`. Pure and deterministic: the same
 * profile and options give the same bytes.
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
  const managed: ManagedFile[] = files.map((f) => f.kind === "sysctl"
    ? { path: f.path, content: dropIn.content, mode: f.mode, owner: f.owner, group: f.group, runtimeValues: dropIn.runtimeValues }
    : { path: f.path, content: f.content, mode: f.mode, owner: f.owner, group: f.group });
  const services: ManagedService[] = [];
  if (profile.pools.length > 0) services.push({ unit: names.phpFpmUnit, test: [names.phpFpmBinary, "-t"], action: "none" });
  if (profile.listeners.length > 0) services.push({ unit: names.nginxUnit, test: [names.nginxBinary, "-t"], action: "none" });
  const sockets = socketsToObserve(profile);
  const plan: ApplyPlan = { stateDir, owner: stateName, legacyName: stateName, files: managed, sysctlFile: paths.sysctlDropIn, sysctlKeys: keys, services, sockets };
  // The apply's report goes to a root-only log and is only shown, never parsed for values: a token
  // derived from the profile keeps this script's bytes deterministic.
  const token = createHash("sha256").update(JSON.stringify({ profile: profile.name, stateName, files: managed })).digest("hex").slice(0, 32);
  const apply = applyScript(plan, { token });
  const checked = rows(profile);
  const width = Math.max("SETTING".length, ...checked.map((r) => r.expected.setting.length));

  const L: string[] = [
    "#!/bin/sh",
    `# pulumi-backlog: apply and verify backlog profile "${profile.name}" (mode ${profile.mode}) on this host.`,
    ...(options.carrier ? [`# Carried by ${options.carrier.replace(/[^\x20-\x7e]/g, "?")}.`] : []),
    "# Generated from the profile by pulumi-backlog (components/standalone.ts): do not edit, regenerate.",
    "# Runs as root without a terminal (cloud-init user data, SSM aws:runShellScript, or `sudo sh FILE`).",
    `# Exit: ${STANDALONE_EXIT.ok} verified, ${STANDALONE_EXIT.mismatch} MISMATCH, ${STANDALONE_EXIT.cannotRun} cannot run here, ` +
      `${STANDALONE_EXIT.configTest}/${STANDALONE_EXIT.sysctl}/${STANDALONE_EXIT.write} apply failed (files put back), ${STANDALONE_EXIT.restart} restart failed.`,
    "set -u",
    "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "umask 022",
    `pb_state=${quote(stateDir)}`,
    "pb_say() { printf 'pulumi-backlog: %s\\n' \"$*\"; }",
    "pb_read() { pb_r=$(cat \"$1\" 2>/dev/null) || return 1; case $pb_r in ''|*[!0-9]*) return 1;; esac; printf '%s' \"$pb_r\"; }",
    "pb_sysctl() { if pb_r=$(pb_read \"$1\"); then printf '%s 1' \"$pb_r\"; else printf missing; fi; }",
    "pb_min() { if [ \"$1\" -lt \"$2\" ]; then printf '%s' \"$1\"; else printf '%s' \"$2\"; fi; }",
    "pb_sum() { if [ -f \"$1\" ]; then cksum < \"$1\"; else echo absent; fi; }",
    `pb_sock() { awk ${quote(SOCKET_AWK)}; }`,
    "pb_host=$(cat /var/lib/cloud/data/instance-id 2>/dev/null || true)",
    "pb_host=\"$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)${pb_host:+ ($pb_host)}\"",
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
  const keptLines = targets.map((t, i) =>
    `if [ -n "$${kernelVariables(i).kept}" ]; then printf '%s\\n' "$${kernelVariables(i).kept}" > "$pb_state/"${quote("kept." + t.key)}; ` +
    `else rm -f "$pb_state/"${quote("kept." + t.key)}; fi`);
  const serviceFiles = (kind: RenderedFile["kind"]) => files.map((f, i) => ({ f, i })).filter(({ f }) => f.kind === kind);
  L.push("", "# 2. What the service files look like before, to know afterwards whether a service must listen again.");
  files.forEach((f, i) => {
    if (f.kind !== "sysctl") L.push(`pb_sum_${i}=$(pb_sum ${quote(f.path)})`);
  });
  L.push(
    "",
    "# 3. Apply: plan.ts's applyScript (keep originals, write, test, sysctl -p; files put back on failure).",
    `mkdir -p "$pb_state" && chmod 700 "$pb_state" || { pb_say "FAILED: cannot create $pb_state"; exit ${STANDALONE_EXIT.cannotRun}; }`,
    "(",
    apply.replace(/\n$/, ""),
    ") > \"$pb_state/apply.log\" 2>&1",
    "pb_rc=$?",
    "if [ \"$pb_rc\" != 0 ]; then",
    "  case $pb_rc in",
    `    ${STANDALONE_EXIT.configTest}) ${say("FAILED: a configuration test failed; every file was put back and no service was touched:")};;`,
    `    ${STANDALONE_EXIT.sysctl}) ${say("FAILED: sysctl -p of the drop-in failed; every file was put back:")};;`,
    `    ${STANDALONE_EXIT.write}) ${say("FAILED: a file could not be written; every file was put back:")};;`,
    "    *) pb_say \"FAILED: the apply step stopped with exit status $pb_rc:\";;",
    "  esac",
    `  sed -n '/^@@${token} failed/,$p' "$pb_state/apply.log" | sed 's/^@@${token} failed /  step: /'`,
    "  exit \"$pb_rc\"",
    "fi",
    "# Which values were kept as the host's own (applyScript recorded every value it set in applied.<key>).",
    ...keptLines,
    "",
    "# 4. Verification: one row per expected value (verify.ts's expectedValues and compare).",
    "pb_head() { printf " + quote(`%-${width}s  %-9s  %-9s  %s\\n`) + " SETTING EXPECTED EFFECTIVE RESULT; }",
    // pb_row MODE GROUP SETTING EXPECTED "VALUE SAME"|missing HINT_MISSING HINT_LOW HINT_TRUNC_BEFORE HINT_TRUNC_AFTER HINT_HIGH
    "pb_row() {",
    "  pb_total=$((pb_total + 1)); pb_eff=${5% *}; pb_same=${5#* }",
    "  if [ \"$5\" = missing ]; then pb_eff=missing; pb_same=1; fi",
    "  if [ \"$pb_eff\" != missing ] && [ \"$pb_same\" = 1 ] && [ \"$pb_eff\" -eq \"$4\" ]; then pb_ok=1; else pb_ok=0; fi",
    "  if [ \"$pb_ok\" = 0 ]; then pb_bad=$((pb_bad + 1)); case $2 in php) pb_bad_php=1;; nginx) pb_bad_nginx=1;; esac; fi",
    "  [ \"$1\" = print ] || return 0",
    `  if [ "$pb_ok" = 1 ]; then printf ${quote(`%-${width}s  %-9s  %-9s  %s\\n`)} "$3" "$4" "$pb_eff" ok; return 0; fi`,
    "  if [ \"$pb_eff\" = missing ]; then pb_hint=$6",
    "  elif [ \"$pb_eff\" -lt \"$4\" ] && [ -n \"$8\" ] && [ -n \"$pb_sx\" ] && [ \"$pb_sx\" -lt \"$4\" ]; then pb_hint=\"$8$pb_sx$9\"",
    "  elif [ \"$pb_eff\" -lt \"$4\" ]; then pb_hint=$7",
    "  else pb_hint=${10}; fi",
    `  printf ${quote(`%-${width}s  %-9s  %-9s  %s\\n`)} "$3" "$4" "$pb_eff" MISMATCH`,
    "  printf '    hint: %s\\n' \"$pb_hint\"",
    "}",
    "pb_check() {",
    // Only the sockets the profile names, selected by ss itself (a socket name holding a newline
    // and a fake row never matches an exact path filter).
    `  pb_sockets=$({ ${[...sockets.tcpPorts.map((p) => `ss -H -l -n -t ${quote(`sport = :${p}`)};`), ...sockets.unixPaths.map((u) => `ss -H -l -n -x src ${quote(u)};`)].join(" ") || ":;"} } 2>/dev/null)`,
    `  pb_sx=$(pb_read ${quote(procPath(SOMAXCONN))}) || pb_sx=''`,
    "  pb_total=0; pb_bad=0; pb_bad_php=0; pb_bad_nginx=0",
    "  [ \"$1\" = print ] && pb_head",
  );
  for (const r of checked) {
    const h = r.hints;
    L.push(`  pb_row "$1" ${r.group} ${quote(r.expected.setting)} ${r.expectedWord} ${r.effectiveWord} ` +
      `${quote(h.missing)} ${quote(h.low)} ${quote(h.truncated?.[0] ?? "")} ${quote(h.truncated?.[1] ?? "")} ${quote(h.high)}`);
  }
  L.push("  return 0", "}", "");
  L.push("# 5. Restart what must listen again: a changed file, or a socket that differs (a reload keeps the old socket).", "pb_check quiet");
  const restartBlock = (unit: string, kind: RenderedFile["kind"], flag: string) => {
    const changed = serviceFiles(kind).map(({ f, i }) => `[ "$(pb_sum ${quote(f.path)})" = "$pb_sum_${i}" ]`);
    L.push(
      `pb_why=''`,
      ...(changed.length > 0 ? [`${changed.join(" && ")} || pb_why='its configuration changed'`] : []),
      `[ -n "$pb_why" ] || [ "$${flag}" = 0 ] || pb_why='a listening socket differs from the profile'`,
      "if [ -n \"$pb_why\" ]; then",
      `  pb_say ${quote(`restarting ${unit}: `)}"$pb_why"`,
      `  if ! pb_out=$(${serviceAction("restart", unit)} 2>&1); then`,
      `    ${say(`FAILED: systemctl restart ${unit} failed:`)}; printf '%s\\n' "$pb_out"`,
      `    systemctl status --no-pager ${quote(unit)} 2>&1 | tail -n 20; exit ${STANDALONE_EXIT.restart}`,
      "  fi",
      "fi",
    );
  };
  if (profile.pools.length > 0) restartBlock(names.phpFpmUnit, "php-fpm-pool", "pb_bad_php");
  if (profile.listeners.length > 0) restartBlock(names.nginxUnit, "nginx", "pb_bad_nginx");
  L.push(
    "",
    "# 6. The table, then OK or MISMATCH.",
    "pb_check print",
    "if [ \"$pb_bad\" = 0 ]; then",
    `  pb_say "OK: all $pb_total settings verified (/proc/sys and ss) against profile "${quote(`"${profile.name}"`)}`,
    `  exit ${STANDALONE_EXIT.ok}`,
    "fi",
    `pb_say "MISMATCH: $pb_bad of $pb_total settings differ from profile "${quote(`"${profile.name}"`)}"; details: $pb_state/apply.log"`,
    `exit ${STANDALONE_EXIT.mismatch}`,
    "",
  );
  return L.join("\n");
}
