/**
 * Verification, pure part: parse what a host reports (`ss` listening sockets, `/proc/sys`
 * values), compute what it should report for a profile, compare, and format the mismatches.
 *
 * What `ss -l` shows for a listening TCP or unix stream socket: Recv-Q = connections waiting
 * in the accept queue now, Send-Q = the socket's effective backlog, i.e.
 * `min(backlog passed to listen(), net.core.somaxconn at the time of listen())`
 * (`tcp_diag.c`/`unix/diag.c`: `sk_max_ack_backlog`). A socket that listened before somaxconn
 * was raised keeps the old, smaller value until its program listens again: a restart.
 *
 * @packageDocumentation
 */

import {
  type BacklogProfile,
  type KernelValues,
  NETDEV_MAX_BACKLOG,
  SOMAXCONN,
  type SysctlKey,
  TCP_MAX_SYN_BACKLOG,
  formatPoolListen,
  kernelTargets,
} from "./profile";
import { type TcpEndpoint, canonicalIpv6, isDualStack, isIpv4 } from "./validation";
import type { SysctlTool } from "./sysctlSources";

/** Error for output that does not have the expected shape (never silently skipped). */
export interface VerifyParseError extends Error {
  readonly name: "VerifyParseError";
  /** 1-based line number in the parsed text, when the problem is on one line. */
  readonly line: number | undefined;
}

/**
 * Makes a {@link VerifyParseError}. A plain `Error` with a name, not a subclass: the parsers run
 * inside the dynamic provider, whose serialized code turns `class … extends Error` into a
 * function that loses the message.
 *
 * @param message - what is wrong; @param line - 1-based line number, if any.
 */
export function verifyParseError(message: string, line?: number): VerifyParseError {
  const error = new Error(line === undefined ? message : `line ${line}: ${message}`);
  return Object.assign(error, { name: "VerifyParseError" as const, line });
}

/** Whether `e` is a {@link VerifyParseError}. */
export function isVerifyParseError(e: unknown): e is VerifyParseError {
  return e instanceof Error && e.name === "VerifyParseError";
}

// ---------------------------------------------------------------------------------------
// Parsing

/** One listening socket from `ss -H -l -n -t` or `ss -H -l -n -x`. */
export interface ListeningSocket {
  /** `tcp` or `unix` (stream or seqpacket). */
  readonly kind: "tcp" | "unix";
  /** Netid column when present (`tcp`, `u_str`, `u_seq`), else `null`. */
  readonly netid: string | null;
  /** Connections waiting in the accept queue now (Recv-Q). */
  readonly recvQ: number;
  /** Effective backlog (Send-Q): `min(listen() backlog, somaxconn at listen time)`. */
  readonly backlog: number;
  /** Local address column as printed (`127.0.0.1:9000`, `[::]:80`, `*:80`, a path). */
  readonly local: string;
  /**
   * TCP: address without brackets, zone or port (`127.0.0.1`, `::`, `*` for a dual-stack
   * wildcard), IPv6 in compressed form. `null` for unix sockets.
   */
  readonly host: string | null;
  /** TCP port, `null` for unix sockets. */
  readonly port: number | null;
  /** Unix socket path (`@name` for abstract sockets), `null` for TCP. */
  readonly path: string | null;
  /** Socket inode, when the report carries it (`ss -e` for TCP, the Port column for unix). */
  readonly inode?: number;
}

// An array, not a Set: this module runs inside the dynamic provider, whose serialized code cannot carry Sets.
const STATES: readonly string[] = Object.freeze([
  "LISTEN",
  "UNCONN",
  "ESTAB",
  "SYN-SENT",
  "SYN-RECV",
  "FIN-WAIT-1",
  "FIN-WAIT-2",
  "TIME-WAIT",
  "CLOSE-WAIT",
  "LAST-ACK",
  "CLOSING",
  "CLOSED",
  "UNKNOWN",
]);

function count(text: string, what: string, line: number): number {
  if (!/^\d+$/.test(text)) throw verifyParseError(`${what} ${JSON.stringify(text)} is not a number`, line);
  return Number(text);
}

/** Split a TCP local address (`[::1]:8080`, `127.0.0.53%lo:53`, `*:80`, `:::80`) into host and port. */
export function splitAddress(local: string, line?: number): { host: string; port: number } {
  const cut = local.lastIndexOf(":");
  if (cut <= 0) throw verifyParseError(`local address ${JSON.stringify(local)} has no port`, line);
  let host = local.slice(0, cut);
  const portText = local.slice(cut + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw verifyParseError(`local address ${JSON.stringify(local)} has no numeric port`, line);
  }
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    if (close < 0) throw verifyParseError(`local address ${JSON.stringify(local)} has an unclosed [`, line);
    host = host.slice(1, close) + host.slice(close + 1); // keep a zone suffix outside the brackets for stripping below
  }
  host = host.replace(/%[^%]*$/, "");
  if (host !== "*" && !isIpv4(host)) {
    const v6 = canonicalIpv6(host);
    if (v6 !== undefined) host = v6;
    else if (!/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(host)) {
      throw verifyParseError(`local address ${JSON.stringify(local)} is not an IP address`, line);
    }
  }
  return { host, port: Number(portText) };
}

/**
 * Parse `ss -H -l -n -t` and/or `ss -H -l -n -x` output (concatenated is fine). Only sockets in
 * state `LISTEN` are returned; `UNCONN` rows (datagram sockets, which `-l` also prints) are
 * skipped. Handles the optional Netid column (`ss -x` prints it, `ss -t` does not), the
 * optional Process column (`-p`), IPv6 `[::]:80`, dual-stack `*:80`, zones `%lo`, unix paths
 * and abstract names (`@…`). Blank lines are ignored.
 *
 * @throws {@link VerifyParseError} on a line that is not an `ss` socket row (headers included:
 *   use `-H`).
 */
export function parseSs(output: string): ListeningSocket[] {
  const sockets: ListeningSocket[] = [];
  output.split("\n").forEach((raw, i) => {
    const lineNo = i + 1;
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "") return;
    let cols = line.trim().split(/\s+/);
    const processAt = cols.findIndex((c) => c.startsWith("users:("));
    if (processAt >= 0) cols = cols.slice(0, processAt);
    let netid: string | null = null;
    if (!STATES.includes(cols[0] as string)) {
      netid = cols[0] as string;
      cols = cols.slice(1);
    }
    const state = cols[0] as string;
    if (!STATES.includes(state)) {
      throw verifyParseError(`not an ss socket row (no state column; was the header printed? use ss -H): ${JSON.stringify(line)}`, lineNo);
    }
    if (cols.length < 5) throw verifyParseError(`too few columns: ${JSON.stringify(line)}`, lineNo);
    if (state !== "LISTEN") return;
    const recvQ = count(cols[1] as string, "Recv-Q", lineNo);
    const backlog = count(cols[2] as string, "Send-Q", lineNo);
    const unix = netid !== null ? netid.startsWith("u_") : false;
    const rest = cols.slice(3);
    if (unix || /^[/@]/.test(rest[0] as string)) {
      // unix: Local = path (may contain spaces), then inode, peer (*), peer inode.
      if (rest.length < 4) throw verifyParseError(`unix row without path and inode: ${JSON.stringify(line)}`, lineNo);
      const path = rest.slice(0, rest.length - 3).join(" ");
      sockets.push({ kind: "unix", netid, recvQ, backlog, local: path, host: null, port: null, path });
      return;
    }
    const local = rest[0] as string;
    const { host, port } = splitAddress(local, lineNo);
    sockets.push({ kind: "tcp", netid, recvQ, backlog, local, host, port, path: null });
  });
  return sockets;
}

/**
 * Parse one `/proc/sys` file's content (e.g. `/proc/sys/net/core/somaxconn` → `"4096\n"`).
 *
 * @throws {@link VerifyParseError} unless the text is one whole number (surrounding
 *   whitespace allowed).
 */
export function parseProcSysValue(text: string): number {
  const t = text.trim();
  if (!/^-?\d+$/.test(t)) throw verifyParseError(`/proc/sys value ${JSON.stringify(text)} is not a whole number`);
  const n = Number(t);
  if (!Number.isSafeInteger(n)) throw verifyParseError(`/proc/sys value ${JSON.stringify(text)} is out of range`);
  return n;
}

/** `/proc/sys` path of a managed key, e.g. `/proc/sys/net/core/somaxconn`. */
export function procSysPath(key: SysctlKey): string {
  return `/proc/sys/${key.replace(/\./g, "/")}`;
}

/**
 * Parse `sysctl KEY…` output (`net.core.somaxconn = 4096` per line) into values. Keys this
 * library does not manage are ignored; blank lines are skipped.
 *
 * @throws {@link VerifyParseError} on a line that is not `key = number`.
 */
export function parseSysctlOutput(text: string): KernelValues {
  const out: Partial<Record<SysctlKey, number>> = {};
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return;
    const m = /^([a-z0-9_.]+)\s*=\s*(-?\d+)$/.exec(line);
    if (!m) throw verifyParseError(`not "key = number": ${JSON.stringify(raw)}`, i + 1);
    const key = m[1] as string;
    if (key === SOMAXCONN || key === TCP_MAX_SYN_BACKLOG || key === NETDEV_MAX_BACKLOG) out[key] = parseProcSysValue(m[2] as string);
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// Expected values

/** Which socket an expected value is about. */
export type SocketSelector =
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "tcp"; readonly endpoint: TcpEndpoint; readonly dualStack: boolean };

/** One value the host should have after a deployment. */
export interface ExpectedValue {
  /** Human-readable name, e.g. `net.core.somaxconn`, `php-fpm pool app listen.backlog (/run/php/app.sock)`. */
  readonly setting: string;
  /** A kernel key, or the listening socket whose Send-Q is checked. */
  readonly target:
    | { readonly kind: "sysctl"; readonly key: SysctlKey }
    | { readonly kind: "socket"; readonly socket: SocketSelector; readonly service: "php-fpm" | "nginx" }
    /** What a kernel key would be after `tool` loaded the host's sysctl files (see src/core/sysctlSources.ts). */
    | { readonly kind: "persisted"; readonly key: SysctlKey; readonly tool: SysctlTool };
  /** The value expected. */
  readonly expected: number;
  /** `"equal"`, or `"atLeast"` (mode atLeast without a known host value: >= expected is fine). */
  readonly comparison: "equal" | "atLeast";
  /**
   * Shown, but a mismatch does not fail the deployment nor make the host out of sync (a conflict
   * left in mode `report`: no apply of this library changes it). Default false.
   */
  readonly advisory?: boolean;
}

/** The tools whose result verification checks besides the running value: boot, and a later `sysctl --system`. */
export const PERSISTED_TOOLS: readonly SysctlTool[] = Object.freeze(["systemd-sysctl", "sysctl --system"] as SysctlTool[]);

/**
 * One row per kernel row of `expected` and per {@link PERSISTED_TOOLS} tool: the value the key
 * would have after that tool loads the host's sysctl files, expected the same as the running value.
 *
 * @param advisory - mark the rows advisory (mode `report`).
 */
export function persistedExpectations(expected: readonly ExpectedValue[], advisory: boolean): ExpectedValue[] {
  return PERSISTED_TOOLS.flatMap((tool) =>
    expected.flatMap((e): ExpectedValue[] =>
      e.target.kind !== "sysctl"
        ? []
        : [
            {
              setting: `${e.target.key} after ${tool === "systemd-sysctl" ? "boot (systemd-sysctl)" : tool}`,
              target: { kind: "persisted", key: e.target.key, tool },
              expected: e.expected,
              comparison: e.comparison,
              ...(advisory ? { advisory: true } : {}),
            },
          ],
    ),
  );
}

// ---------------------------------------------------------------------------------------
// php-fpm's own backlog rules, by version (php-src sapi/fpm/fpm/fpm_sockets.h and fpm_conf.c)

/** A PHP version, `major.minor`. */
export interface PhpVersion {
  readonly major: number;
  readonly minor: number;
}

/**
 * The PHP version of a php-fpm unit name (`php7.4-fpm` → 7.4), or undefined when the name does
 * not carry it (`php-fpm`, as on RHEL).
 */
export function phpVersionOfUnit(unit: string | undefined): PhpVersion | undefined {
  const m = /^php(\d+)\.(\d+)-fpm$/.exec(unit ?? "");
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

function atLeast82(v: PhpVersion): boolean {
  return v.major > 8 || (v.major === 8 && v.minor >= 2);
}

/**
 * php-fpm's `FPM_BACKLOG_DEFAULT` on Linux: 511 before PHP 8.2; -1 from 8.2 on (php-src commit
 * 1e562683, pull request 8410, "listen backlog should default to -1 also on Linux"), which listen()
 * turns into `net.core.somaxconn`. Undefined version: -1 (the current sources).
 */
export function phpFpmDefaultBacklog(version: PhpVersion | undefined): number {
  return version !== undefined && !atLeast82(version) ? 511 : -1;
}

/**
 * The backlog php-fpm passes to listen() for a pool (pure): `listen.backlog` as configured, or
 * {@link phpFpmDefaultBacklog} when the pool does not set it; then, for `pm = ondemand`, a value
 * below `FPM_BACKLOG_DEFAULT` is raised to it (fpm_conf.c: "listen.backlog(N) was too low for the
 * ondemand process manager. I updated it for you to 511"). From 8.2 the floor is -1, so nothing is
 * raised; before 8.2 an ondemand pool never gets less than 511.
 *
 * @param configured - `listen.backlog` in the pool file, undefined when absent.
 */
export function phpFpmListenArg(version: PhpVersion | undefined, configured: number | undefined, pm: string): number {
  const floor = phpFpmDefaultBacklog(version);
  const arg = configured ?? floor;
  return pm === "ondemand" && arg < floor ? floor : arg;
}

/** What `ss` shows as a listening socket's backlog for a listen() argument: a negative one (or one above it) is somaxconn. */
export function kernelBacklog(listenArg: number, somaxconn: number): number {
  return listenArg < 0 ? somaxconn : Math.min(listenArg, somaxconn);
}

/**
 * What a host should report after deploying `profile`:
 * - each managed sysctl: the profile's value; in `atLeast` mode `max(profile, hostBefore)`
 *   (compared with `>=` when `hostBefore` is not given);
 * - each pool socket and each nginx address: `min(app backlog, expected somaxconn)`, the
 *   effective backlog `ss` shows as Send-Q.
 *
 * @param hostBefore - the host's kernel values before the first deployment, if known.
 * @param php - the PHP version of the host's php-fpm (see {@link phpFpmListenArg}); default: unknown, 8.2 or later rules.
 */
export function expectedValues(profile: BacklogProfile, hostBefore?: KernelValues, php?: PhpVersion): ExpectedValue[] {
  const targets = kernelTargets(profile, hostBefore);
  const out: ExpectedValue[] = targets.map((t) => ({
    setting: t.key,
    target: { kind: "sysctl", key: t.key },
    expected: t.value,
    comparison: t.comparison,
  }));
  const somaxconn = (targets.find((t) => t.key === SOMAXCONN) as { value: number }).value;
  for (const p of profile.pools) {
    out.push({
      setting: `php-fpm pool ${p.name} listen.backlog (${formatPoolListen(p.listen)})`,
      target: {
        kind: "socket",
        service: "php-fpm",
        socket:
          p.listen.kind === "unix"
            ? { kind: "unix", path: p.listen.path }
            : { kind: "tcp", endpoint: p.listen.endpoint, dualStack: isDualStack({ program: "php-fpm", endpoint: p.listen.endpoint }) },
      },
      // php-fpm's own rules first (an ondemand pool before PHP 8.2 gets at least 511).
      expected: kernelBacklog(phpFpmListenArg(php, p.backlog, p.pm.style), somaxconn),
      comparison: "equal",
    });
  }
  const seen = new Set<string>();
  for (const l of profile.listeners) {
    if (seen.has(l.address)) continue;
    seen.add(l.address);
    out.push({
      setting: `nginx listen ${l.address} backlog`,
      target: { kind: "socket", service: "nginx", socket: { kind: "tcp", endpoint: l.listen, dualStack: false } },
      expected: Math.min(l.backlog, somaxconn),
      comparison: "equal",
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Comparison

/** What a host reports. */
export interface EffectiveValues {
  /** Kernel values read now (missing key = could not be read). */
  readonly sysctls: KernelValues;
  /** Listening sockets (from {@link parseSs}). */
  readonly sockets: readonly ListeningSocket[];
  /**
   * Per tool, each key's value after the tool loaded the host's sysctl files, and the `file:line`
   * that sets it (none: no file sets the key, the running value stays). Missing: not read.
   */
  readonly persisted?: Partial<Record<SysctlTool, Record<string, { value: number | undefined; source?: string }>>>;
}

/** One compared setting. */
export interface ComparisonRow {
  /** Same as {@link ExpectedValue.setting}. */
  readonly setting: string;
  /** Expected value. */
  readonly expected: number;
  /** How it is compared. */
  readonly comparison: "equal" | "atLeast";
  /** Effective value, or `null` when missing (key unreadable, socket not listening). */
  readonly effective: number | null;
  /** Whether the effective value satisfies the expectation. */
  readonly ok: boolean;
  /** For a mismatch: the likely cause and the fix. Empty when ok. */
  readonly hint: string;
  /** Copied from {@link ExpectedValue.advisory}: a mismatch here is reported, not fatal. */
  readonly advisory?: boolean;
}

/** `true` when an `ss` socket is the one a selector names. */
export function socketMatches(selector: SocketSelector, s: ListeningSocket): boolean {
  if (selector.kind === "unix") return s.kind === "unix" && s.path === selector.path;
  if (s.kind !== "tcp" || s.port !== selector.endpoint.port) return false;
  const e = selector.endpoint;
  const h = s.host;
  if (e.host === null) return h === "*" || h === "::" || h === "0.0.0.0";
  if (e.host === "0.0.0.0") return h === "0.0.0.0" || h === "*";
  if (e.host === "::") return h === "::" || h === "*" || (selector.dualStack && h === "0.0.0.0");
  if (e.family === "ipv4" && h !== null && /^::ffff:/i.test(h)) return h.slice(7) === e.host;
  return h === e.host;
}

function serviceOf(e: ExpectedValue): string {
  return e.target.kind === "socket" ? e.target.service : "";
}

function hintFor(e: ExpectedValue, effective: number | null, somaxconnNow: number | undefined, source?: string): string {
  if (e.target.kind === "persisted") {
    if (effective === null) return `${e.target.key}: the host's sysctl files were not read`;
    return (
      `${e.target.tool} would set ${effective}${source ? ` from ${source}` : ""}, undoing the drop-in: ` +
      'set conflicts: "neutralize" to comment the line out, or change that file'
    );
  }
  if (e.target.kind === "sysctl") {
    if (effective === null)
      return `${e.target.key} could not be read: the key is hidden in a network namespace owned by an unprivileged user namespace, or the read failed`;
    return effective < e.expected
      ? "the drop-in was not applied, or a later-sorted sysctl.d file or a real /etc/sysctl.conf (sysctl --system) set it back: run sysctl -p on the drop-in and look for other files setting the key"
      : "the running value is higher than the profile (mode exact): something else raised it after the drop-in was applied";
  }
  const svc = serviceOf(e);
  const unit = svc === "php-fpm" ? "php-fpm" : "nginx";
  if (effective === null) return `no listening socket: is ${unit} running, and did it load the new configuration?`;
  if (effective < e.expected) {
    if (somaxconnNow !== undefined && somaxconnNow < e.expected) {
      return `listen() truncated it to somaxconn ${somaxconnNow}: raise net.core.somaxconn, then restart ${unit}`;
    }
    return `stale socket: it listened before somaxconn was raised or before the new backlog was configured; restart ${unit} so it calls listen() again${svc === "php-fpm" ? " (a php-fpm reload keeps the inherited socket)" : ""}`;
  }
  return `the socket still has an older, larger backlog: restart ${unit}${svc === "php-fpm" ? " (a php-fpm reload keeps the inherited socket)" : ""}`;
}

/**
 * Compare expected with effective values, one row per expected value, in the same order.
 * A socket row's effective value is the Send-Q of the matching listening socket (the smallest,
 * if several match, e.g. with SO_REUSEPORT); a missing socket or key gives `effective: null`
 * and `ok: false`.
 */
export function compare(expected: readonly ExpectedValue[], effective: EffectiveValues): ComparisonRow[] {
  const somaxconnNow = effective.sysctls[SOMAXCONN];
  return expected.map((e): ComparisonRow => {
    let value: number | null;
    let allEqual = true;
    let source: string | undefined;
    if (e.target.kind === "persisted") {
      const p = effective.persisted?.[e.target.tool]?.[e.target.key];
      value = p?.value ?? null;
      source = p?.source;
    } else if (e.target.kind === "sysctl") {
      value = effective.sysctls[e.target.key] ?? null;
    } else {
      const selector = e.target.socket;
      const found = effective.sockets.filter((s) => socketMatches(selector, s)).map((s) => s.backlog);
      value = found.length === 0 ? null : Math.min(...found);
      allEqual = found.every((b) => b === found[0]);
    }
    const ok = value !== null && allEqual && (e.comparison === "atLeast" ? value >= e.expected : value === e.expected);
    return {
      setting: e.setting,
      expected: e.expected,
      comparison: e.comparison,
      effective: value,
      ok,
      hint: ok ? "" : hintFor(e, value, somaxconnNow, source),
      ...(e.advisory ? { advisory: true } : {}),
    };
  });
}

/** Rows of one host, for {@link formatMismatchTable}. */
export interface HostComparison {
  /** Host name or address as the user knows it. */
  readonly host: string;
  /** Rows from {@link compare}. */
  readonly rows: readonly ComparisonRow[];
}

/**
 * A plain-text table of every mismatch across hosts, columns HOST, SETTING, EXPECTED,
 * EFFECTIVE, HINT, aligned with spaces, hosts in the given order. `atLeast` expectations show
 * as `>=N`, missing values as `missing`. Returns `""` when every row is ok.
 */
export function formatMismatchTable(hosts: readonly HostComparison[]): string {
  const rows = hosts.flatMap((h) =>
    h.rows
      .filter((r) => !r.ok)
      .map((r) => [
        h.host,
        r.setting,
        r.comparison === "atLeast" ? `>=${r.expected}` : String(r.expected),
        r.effective === null ? "missing" : String(r.effective),
        r.hint,
      ]),
  );
  if (rows.length === 0) return "";
  const table = [["HOST", "SETTING", "EXPECTED", "EFFECTIVE", "HINT"], ...rows];
  const widths = [0, 1, 2, 3].map((c) => Math.max(...table.map((r) => (r[c] as string).length)));
  return (
    table
      .map((r) =>
        r
          .map((cell, c) => (c < 4 ? cell.padEnd(widths[c] as number) : cell))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}
