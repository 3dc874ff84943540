/**
 * Reading what a host script printed: data from an untrusted source. Only lines that start with
 * `@@<token> ` open a section (the token is random per run and never reaches a command line on the
 * host); each section's body must have exactly its own shape, every number is range-checked, and
 * anything else rejects the whole report with a message naming the section and the line. Nothing
 * here trusts a value the script did not produce itself.
 */
import { createHash } from "node:crypto";
import { SYSCTL_DIRS } from "./plan";
import { SYSCTL_TOOLS, type SysctlAssignment, type SysctlFile, parseAssignmentText, winners } from "./sysctlSources";
import { type EffectiveValues, type ListeningSocket, splitAddress } from "./verify";

/** What a probe, apply or restore printed, parsed and checked. */
export interface HostReport {
  /** Kernel values read from /proc/sys (undefined: the key is not exposed on this host). */
  sysctls: Record<string, number | undefined>;
  /** sha256 of each managed file, or null when absent. */
  files: Record<string, string | null>;
  /** Content of each managed file that is present and at most 64 KiB (for diffs). */
  contents: Record<string, string>;
  /** Lines from sysctl.d files (and /etc/sysctl.conf) that set a managed key: `file:line`. */
  sysctlSources: string[];
  /**
   * Every sysctl file the probe found (each `*.conf` of the sysctl.d directories, and
   * /etc/sysctl.conf), with what a link resolves to. Empty when the script did not look.
   */
  sysctlFiles?: SysctlFile[];
  /** The lines of those files that assign a managed key, with their line numbers (see src/core/sysctlSources.ts). */
  sysctlLines?: SysctlAssignment[];
  /** Listening sockets of the paths and ports the profile names (nothing else is read). */
  sockets: ListeningSocket[];
  /** `systemctl is-active` per unit. */
  units: Record<string, string>;
  /** Kernel values kept from before the first deploy. */
  before: Record<string, number>;
  /** Files a deploy has managed on the host (their originals are kept), any owner. */
  managed: string[];
  /** Files each owner (deployment) manages on the host. */
  owners: Record<string, string[]>;
  /** `systemd-detect-virt --container`: `none` on a machine of its own, else the container type. */
  container: string;
  /** Kernel values the last deploy set. */
  applied: Record<string, number>;
  /** The host's own values the last deploy assumed. */
  own: Record<string, number>;
  /** Whether an earlier run's journal is open (it was cut short and will be rolled back). */
  journalOpen: boolean;
  /** The host's state generation (committed applies so far). */
  generation: number;
  /** This run rolled back an earlier run that was cut short. */
  recovered: boolean;
  /** Steps the script entered, in order (the last one is where it was when it stopped). */
  steps: string[];
  /** What each service got (`unit action`, e.g. `nginx relisten`), with the action's output. */
  did: { unit: string; action: string; output: string }[];
  /** Services whose re-listen could not work and were restarted instead, with the reason. */
  fallbacks: Record<string, string>;
  /** Warnings the script printed. */
  warnings: string[];
  /** Files the script gave back because this owner no longer manages them (retireStale). */
  retired: string[];
  /** Sysctl files this run commented conflicting lines out of (mode neutralize). */
  neutralized?: string[];
  /** php-fpm units found on the host (`php8.2-fpm`, `php-fpm`) and their state, when asked to discover them. */
  phpUnits?: Record<string, string>;
  /** Set when the script stopped at a step: which step and its output. */
  failure?: { step: string; output: string };
  /** After a failure: whether everything was put back (`false`: the rollback was incomplete). */
  rolledBack?: boolean;
  /** Whether the report ended (false: the script died half-way). */
  complete: boolean;
}

/**
 * A report that does not have the shape the script prints. A plain `Error` with a name, not a
 * subclass: this module runs inside the dynamic provider, whose serialized code loses subclasses.
 */
export function reportError(message: string): Error {
  return Object.assign(new Error(message), { name: "ReportError" });
}

const MAX_U32 = 4294967295;
const SAFE_PATH = /^\/[A-Za-z0-9_.+/-]{1,4095}$/;
const UNIT_STATES = ["active", "inactive", "failed", "activating", "deactivating", "reloading", "maintenance", "refreshing", "unknown"];

function show(line: string): string {
  const s = JSON.stringify(line);
  return s.length > 120 ? s.slice(0, 117) + '…"' : s;
}

function number(text: string, what: string, max = MAX_U32): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) > max) throw reportError(`${what}: ${show(text)} is not a whole number from 0 to ${max}`);
  return Number(text);
}

function unixRow(line: string, path: string): ListeningSocket | undefined {
  const m = /^(u_str|u_seq)\s+LISTEN\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+\*\s+(\d+)\s*$/.exec(line);
  if (!m) throw reportError(`unix ${path}: not a listening socket row: ${show(line)}`);
  // ss's path filter also matches names that differ in case only (one line each, no newline can
  // pass the filter): such a socket is someone else's, not the profile's; it is left out.
  if (m[4] !== path) return undefined;
  return {
    kind: "unix",
    netid: m[1] as string,
    recvQ: number(m[2] as string, `unix ${path} Recv-Q`),
    backlog: number(m[3] as string, `unix ${path} Send-Q`),
    local: path,
    host: null,
    port: null,
    path,
    inode: number(m[5] as string, `unix ${path} inode`),
  };
}

function tcpRow(line: string, port: number): ListeningSocket {
  const m = /^LISTEN\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)((?:\s+\S+)*)\s*$/.exec(line);
  const inode = m ? /(?:^|\s)ino:(\d+)(?=\s|$)/.exec(m[5] as string)?.[1] : undefined;
  if (!m || inode === undefined) throw reportError(`tcp ${port}: not a listening socket row: ${show(line)}`);
  let addr: { host: string; port: number };
  try {
    addr = splitAddress(m[3] as string);
  } catch (err) {
    throw reportError(`tcp ${port}: ${(err as Error).message}`);
  }
  if (addr.port !== port) throw reportError(`tcp ${port}: a row of port ${addr.port}: ${show(line)}`);
  return {
    kind: "tcp",
    netid: null,
    recvQ: number(m[1] as string, `tcp ${port} Recv-Q`),
    backlog: number(m[2] as string, `tcp ${port} Send-Q`),
    local: m[3] as string,
    host: addr.host,
    port,
    path: null,
    inode: number(inode, `tcp ${port} inode`, Number.MAX_SAFE_INTEGER),
  };
}

const SOURCE_PATH = `(?:${SYSCTL_DIRS.map((d) => d.replace(/[./]/g, "\\$&")).join("|")})/[A-Za-z0-9_.+@-]+\\.conf|/etc/sysctl\\.conf`;
const SOURCE_LISTED = new RegExp(`^(${SOURCE_PATH})(?: -> (/[A-Za-z0-9_.+@/-]{0,4095}|!unsafe))?$`);
const SOURCE_LINE = new RegExp(`^(${SOURCE_PATH}):(\\d{1,9}):(.*)$`);
const SOURCE_FILE = new RegExp(`^((?:${SYSCTL_DIRS.map((d) => d.replace(/[./]/g, "\\$&")).join("|")})/[A-Za-z0-9_.+@-]+\\.conf|/etc/sysctl\\.conf):(.*)$`);

/** A report with nothing in it yet (not complete): what {@link parseReport} fills section by section. */
export function emptyReport(): HostReport {
  return {
    sysctls: {},
    files: {},
    contents: {},
    sysctlSources: [],
    sockets: [],
    units: {},
    before: {},
    managed: [],
    owners: {},
    applied: {},
    own: {},
    container: "",
    journalOpen: false,
    generation: 0,
    recovered: false,
    steps: [],
    did: [],
    fallbacks: {},
    warnings: [],
    retired: [],
    complete: false,
  };
}

/**
 * Parses the sections a script printed into a {@link HostReport}.
 *
 * @param stdout - what the script printed.
 * @param token - the run's token ({@link ./plan reportToken}).
 * @throws a `ReportError` naming the section and the line when anything does not have its shape.
 */
export function parseReport(stdout: string, token: string): HostReport {
  if (!/^[0-9a-f]{16,64}$/.test(token)) throw reportError("report token must be 16-64 lowercase hex digits");
  const report = emptyReport();
  const marker = `@@${token} `;
  let section: string | undefined;
  let arg = "";
  let body: string[] = [];
  const lines = (): string[] => body.filter((l) => l !== "");
  const one = (what: string): string => {
    const l = lines();
    if (l.length !== 1) throw reportError(`${what}: expected one line, got ${l.length}${l.length ? ": " + show(l.join("\n")) : ""}`);
    return l[0] as string;
  };
  const flush = () => {
    if (section === undefined) return;
    const what = arg ? `${section} ${arg}` : section;
    switch (section) {
      case "sysctl": {
        if (!/^[a-z0-9_]+(\.[a-z0-9_]+)+$/.test(arg)) throw reportError(`sysctl: ${show(arg)} is not a kernel key`);
        const v = one(what);
        report.sysctls[arg] = v === "!missing" ? undefined : number(v, what);
        break;
      }
      case "file": {
        if (!SAFE_PATH.test(arg)) throw reportError(`file: ${show(arg)} is not a managed path`);
        const l = lines();
        if (l.length === 1 && l[0] === "!absent") {
          report.files[arg] = null;
          break;
        }
        if (l.length < 1 || l.length > 2 || !/^[0-9a-f]{64}$/.test(l[0] as string))
          throw reportError(`${what}: expected a sha256 and the content: ${show(l.join("\n"))}`);
        report.files[arg] = l[0] as string;
        // An empty file prints an empty content line, dropped with the blank lines.
        if (l.length === 1 && l[0] === "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") report.contents[arg] = "";
        if (l.length === 2) {
          if (!/^[A-Za-z0-9+/]*={0,2}$/.test(l[1] as string)) throw reportError(`${what}: content is not base64`);
          const bytes = Buffer.from(l[1] as string, "base64");
          if (createHash("sha256").update(bytes).digest("hex") !== l[0]) throw reportError(`${what}: content does not match its sha256`);
          report.contents[arg] = bytes.toString("utf8");
        }
        break;
      }
      case "sysctl.d":
        for (const l of lines()) {
          const m = SOURCE_FILE.exec(l);
          if (!m) throw reportError(`sysctl.d: not a line of a sysctl file: ${show(l)}`);
          report.sysctlSources.push(l);
        }
        break;
      case "sysctl-files":
        for (const l of lines()) {
          const m = SOURCE_LISTED.exec(l);
          if (!m) throw reportError(`sysctl-files: not a sysctl file: ${show(l)}`);
          report.sysctlFiles ??= [];
          report.sysctlFiles.push(m[2] !== undefined ? { path: m[1] as string, target: m[2] } : { path: m[1] as string });
        }
        break;
      case "sysctl-lines":
        for (const l of lines()) {
          const m = SOURCE_LINE.exec(l);
          if (!m) throw reportError(`sysctl-lines: not a numbered line of a sysctl file: ${show(l)}`);
          const text = m[3] as string;
          // The script drops control characters; a line it printed is at most a few KiB.
          if (text.length > 4096 || /[\u0000-\u0008\u000a-\u001f\u007f]/.test(text)) throw reportError(`sysctl-lines: ${show(l)} is not a line of text`);
          const a = parseAssignmentText(text);
          if (!a) throw reportError(`sysctl-lines: ${show(l)} does not assign a key`);
          const line = number(m[2] as string, "sysctl-lines line number", 999999999);
          if (line < 1) throw reportError(`sysctl-lines: line number 0 in ${show(l)}`);
          report.sysctlLines ??= [];
          report.sysctlLines.push({ path: m[1] as string, line, key: a.key, value: a.value, text: text.trim() });
          report.sysctlSources.push(`${m[1]}:${text}`);
        }
        break;
      case "unix":
        if (!SAFE_PATH.test(arg)) throw reportError(`unix: ${show(arg)} is not a socket path`);
        for (const l of lines()) {
          const row = unixRow(l, arg);
          if (row) report.sockets.push(row);
        }
        break;
      case "tcp": {
        const port = number(arg, "tcp port", 65535);
        for (const l of lines()) report.sockets.push(tcpRow(l, port));
        break;
      }
      case "container": {
        const c = lines();
        if (c.length > 1 || (c[0] !== undefined && !/^[a-z0-9-]{1,32}$/.test(c[0])))
          throw reportError(`container: ${show(c.join("\n"))} is not a container type`);
        report.container = c[0] ?? "";
        break;
      }
      case "unit": {
        if (!/^[A-Za-z0-9@_.+-]{1,128}$/.test(arg)) throw reportError(`unit: ${show(arg)} is not a unit name`);
        const v = one(what);
        if (!UNIT_STATES.includes(v)) throw reportError(`${what}: ${show(v)} is not a unit state`);
        report.units[arg] = v;
        break;
      }
      case "before":
        for (const l of lines()) {
          const m = /^sysctl\.([a-z0-9_.]+):(\d+)$/.exec(l);
          if (!m) throw reportError(`before: ${show(l)} is not a kept kernel value`);
          report.before[m[1] as string] = number(m[2] as string, `before ${m[1]}`);
        }
        break;
      case "applied":
        for (const l of lines()) {
          const m = /^(applied|own)\.([a-z0-9_.]+):(\d+)$/.exec(l);
          if (!m) throw reportError(`applied: ${show(l)} is not a recorded kernel value`);
          report[m[1] as "applied" | "own"][m[2] as string] = number(m[3] as string, `${m[1]} ${m[2]}`);
        }
        break;
      case "managed":
        for (const l of lines()) {
          if (!SAFE_PATH.test(l)) throw reportError(`managed: ${show(l)} is not a managed path`);
          report.managed.push(l);
        }
        break;
      case "owners":
        for (const l of lines()) {
          const m = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,127}):(\/[A-Za-z0-9_.+/-]+)$/.exec(l);
          if (!m) throw reportError(`owners: ${show(l)} is not an owner's path`);
          const owned = report.owners[m[1] as string] ?? [];
          owned.push(m[2] as string);
          report.owners[m[1] as string] = owned;
        }
        break;
      case "journal": {
        const v = one(what);
        if (v !== "open" && v !== "none") throw reportError(`journal: ${show(v)}`);
        report.journalOpen = v === "open";
        break;
      }
      case "php-units": {
        const units: Record<string, string> = {};
        for (const l of lines()) {
          const m = /^(php(?:\d+\.\d+)?-fpm) (\S+)$/.exec(l);
          if (!m || !UNIT_STATES.includes(m[2] as string)) throw reportError(`php-units: ${show(l)} is not a php-fpm unit and its state`);
          units[m[1] as string] = m[2] as string;
        }
        report.phpUnits = units;
        break;
      }
      case "generation":
        report.generation = number(one(what), what, Number.MAX_SAFE_INTEGER);
        break;
      case "step":
        report.steps.push(arg);
        break;
      case "recovered":
        report.recovered = true;
        break;
      case "rolledback":
        report.rolledBack = true;
        break;
      case "rollback-incomplete":
        report.rolledBack = false;
        break;
      case "did": {
        const m = /^(\S+) (relisten|reload|restart)(?: .*)?$/.exec(arg);
        if (!m) throw reportError(`did: ${show(arg)}`);
        report.did.push({ unit: m[1] as string, action: m[2] as string, output: lines().join("\n") });
        break;
      }
      case "fallback":
        report.fallbacks[arg] = lines().join("\n").slice(0, 2000);
        break;
      case "changed":
        break;
      case "retired":
        if (!SAFE_PATH.test(arg)) throw reportError(`retired: ${show(arg)} is not a managed path`);
        report.retired.push(arg);
        break;
      case "neutralized":
        if (!SAFE_PATH.test(arg)) throw reportError(`neutralized: ${show(arg)} is not a path`);
        report.neutralized ??= [];
        report.neutralized.push(arg);
        break;
      case "warning":
        report.warnings.push(arg);
        break;
      case "failed":
        report.failure = { step: arg, output: body.join("\n").trim().slice(0, 8000) };
        break;
      case "end":
        if (lines().length > 0) throw reportError(`end: output after the end: ${show(lines().join("\n"))}`);
        report.complete = true;
        break;
      default:
        throw reportError(`unknown section ${show(section)}`);
    }
  };
  for (const line of stdout.split("\n")) {
    if (line.startsWith(marker)) {
      flush();
      const rest = line.slice(marker.length);
      const cut = rest.indexOf(" ");
      section = cut < 0 ? rest : rest.slice(0, cut);
      arg = cut < 0 ? "" : rest.slice(cut + 1);
      body = [];
      if (report.complete) throw reportError(`section ${show(section)} after the end`);
      continue;
    }
    // Lines before the first section are not part of the report (nothing prints there).
    if (section !== undefined) body.push(line);
  }
  flush();
  return report;
}

/** The kernel values and listening sockets a report shows, as verify.ts `compare` takes them. */
export function effectiveOf(report: Pick<HostReport, "sysctls" | "sockets"> & Partial<Pick<HostReport, "sysctlFiles" | "sysctlLines">>): EffectiveValues {
  const keys = Object.keys(report.sysctls);
  const sources = { files: report.sysctlFiles ?? [], lines: report.sysctlLines ?? [] };
  const persisted: NonNullable<EffectiveValues["persisted"]> = {};
  for (const tool of SYSCTL_TOOLS) {
    const w = winners(sources, tool, keys);
    persisted[tool] = Object.fromEntries(
      keys.map((k) => {
        const a = w[k];
        return [k, a ? { value: a.value ?? undefined, source: `${a.file}:${a.line}` } : { value: report.sysctls[k] }];
      }),
    );
  }
  return { sysctls: report.sysctls, sockets: report.sockets, persisted };
}
