/**
 * The walker: reads the untyped input (a `ProfileInput`, or JSON from stack config) field by
 * field, records every problem with its field path, applies the defaults, and hands the valid
 * parts to derivation as a `Draft` (items with a bad name, listen or pool are left out, so the
 * cross-field rules run over valid items only). It is the one place that checks the input's
 * fields; the rules check a derived profile.
 *
 * @packageDocumentation
 */

import type { Problem, Problems, TcpEndpoint } from "../validation";
import {
  ACCOUNT_PATTERN,
  LIMITS,
  NAME_PATTERN,
  SOCKET_MODE_PATTERN,
  checkAbsolutePath,
  checkExtraDirective,
  checkInt,
  checkPattern,
  checkServerName,
  parseTcpEndpoint,
  unixSocketPathProblem,
  unsafeCharacters,
} from "../validation";
import type { Draft, DraftListener, DraftPool } from "./derive";
import { pmProblems } from "./rules";
import { DEFAULTS, type ExtraDirective, type Mode, type Pm, type PmStyle, type Pool, type PoolListen } from "./types";

// ---------------------------------------------------------------------------------------
// Known fields (anything else is an `unknown-field` problem)

const PROFILE_FIELDS = ["name", "backlog", "somaxconn", "tcpMaxSynBacklog", "mode", "netdevMaxBacklog", "pools", "listeners"];
const POOL_FIELDS = ["name", "listen", "backlog", "user", "group", "listenOwner", "listenGroup", "listenMode", "pm", "extra"];
const PM_FIELDS = ["style", "maxChildren", "startServers", "minSpareServers", "maxSpareServers", "maxRequests", "processIdleTimeoutSeconds"];
const LISTENER_FIELDS = ["listen", "backlog", "serverName", "pool", "root", "defaultServer"];
const NETDEV_FIELDS = ["value", "machineGlobal"];

/**
 * `true` for a plain object (not an array, not `null`).
 *
 * @param v - any value.
 */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkObject(problems: Problems, path: string, value: unknown, allowed: readonly string[], what: string): value is Record<string, unknown> {
  if (!isRecord(value)) {
    problems.add(
      path || "(root)",
      value,
      "type",
      `${what} must be an object, got ${Array.isArray(value) ? "array" : value === null ? "null" : typeof value}`,
      `give ${what} as an object with the documented fields`,
    );
    return false;
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const near = allowed.find((a) => a.toLowerCase() === key.toLowerCase() || a.toLowerCase().startsWith(key.toLowerCase().slice(0, 5)));
      problems.add(
        path === "" ? key : `${path}.${key}`,
        value[key],
        "unknown-field",
        `is not a field of ${what}`,
        near ? `did you mean ${near}? Known fields: ${allowed.join(", ")}` : `remove it; known fields: ${allowed.join(", ")}`,
      );
    }
  }
  return true;
}

function checkArray(problems: Problems, path: string, value: unknown, what: string): readonly unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problems.add(path, value, "type", `${what} must be an array, got ${value === null ? "null" : typeof value}`, `give a list of ${what}`);
    return [];
  }
  return value;
}

function optionalInt(problems: Problems, path: string, value: unknown, range: { min: number; max: number }, rule: string, what: string): number | undefined {
  return value === undefined ? undefined : checkInt(problems, path, value, range, rule, what);
}

function accountField(problems: Problems, path: string, value: unknown, what: string): string {
  if (value === undefined) return DEFAULTS.account;
  return (
    checkPattern(problems, path, value, ACCOUNT_PATTERN, "safe-account", what, "use a system account name such as www-data (lower case, digits, _ and -)") ??
    DEFAULTS.account
  );
}

/**
 * Read a pool's `pm`. When its own fields are valid, php-fpm's consistency checks
 * (`pmProblems`) run here, in input order. When a field was bad and got its default, the same
 * checks over the defaulted settings are returned as `followUp` (without the paths and rules
 * already reported), for `defineProfile` to report after the cross-field rules (see
 * `DraftPool.pmFollowUp`).
 */
function readPm(problems: Problems, path: string, value: unknown): { pm: Pm; followUp: readonly Problem[] } {
  const d = DEFAULTS.pm;
  if (value === undefined) {
    return {
      pm: {
        style: "dynamic",
        maxChildren: d.maxChildren,
        startServers: d.startServers,
        minSpareServers: d.minSpareServers,
        maxSpareServers: d.maxSpareServers,
        maxRequests: d.maxRequests,
      },
      followUp: [],
    };
  }
  const before = problems.count;
  if (!checkObject(problems, path, value, PM_FIELDS, "pm")) return readPm(problems, path, undefined);
  let style: PmStyle = d.style;
  if (value.style !== undefined) {
    if (value.style === "dynamic" || value.style === "static" || value.style === "ondemand") style = value.style;
    else problems.add(`${path}.style`, value.style, "pm-style", 'must be "dynamic", "static" or "ondemand"', "pick one of the three php-fpm process managers");
  }
  const int = (field: string, range: { min: number; max: number }, what: string) =>
    optionalInt(problems, `${path}.${field}`, value[field], range, "pm-consistency", what);
  const maxChildren = int("maxChildren", LIMITS.pmServers, "pm.max_children") ?? d.maxChildren;
  const maxRequests = int("maxRequests", LIMITS.pmMaxRequests, "pm.max_requests") ?? d.maxRequests;
  const only = (field: string, styles: PmStyle[]) => {
    if (value[field] !== undefined && !styles.includes(style)) {
      problems.add(
        `${path}.${field}`,
        value[field],
        "pm-unused-setting",
        `applies only to pm = ${styles.join(" or ")}, not ${style}; php-fpm would ignore it`,
        `remove it, or set pm.style to ${styles[0]}`,
      );
      return false;
    }
    return true;
  };
  const dynamicFields = ["startServers", "minSpareServers", "maxSpareServers"];
  const dynamicOk = dynamicFields.map((f) => only(f, ["dynamic"])).every(Boolean);
  const idleOk = only("processIdleTimeoutSeconds", ["ondemand"]);
  let pm: Pm;
  if (style === "static") pm = { style, maxChildren, maxRequests };
  else if (style === "ondemand") {
    const idle = idleOk ? int("processIdleTimeoutSeconds", LIMITS.pmIdleSeconds, "pm.process_idle_timeout") : undefined;
    pm = { style, maxChildren, processIdleTimeoutSeconds: idle ?? d.processIdleTimeoutSeconds, maxRequests };
  } else {
    const minSpare = (dynamicOk ? int("minSpareServers", LIMITS.pmServers, "pm.min_spare_servers") : undefined) ?? Math.min(d.minSpareServers, maxChildren);
    const maxSpare =
      (dynamicOk ? int("maxSpareServers", LIMITS.pmServers, "pm.max_spare_servers") : undefined) ??
      Math.max(minSpare, Math.min(d.maxSpareServers, maxChildren));
    const start = (dynamicOk ? int("startServers", LIMITS.pmServers, "pm.start_servers") : undefined) ?? Math.min(Math.max(d.startServers, minSpare), maxSpare);
    pm = { style: "dynamic", maxChildren, startServers: start, minSpareServers: minSpare, maxSpareServers: maxSpare, maxRequests };
  }
  const own = problems.all.slice(before);
  if (own.length === 0) {
    problems.addAll(pmProblems(pm, path));
    return { pm, followUp: [] };
  }
  const reported = new Set(own.map((p) => `${p.path}\u0000${p.rule}`));
  return { pm, followUp: pmProblems(pm, path).filter((p) => !reported.has(`${p.path}\u0000${p.rule}`)) };
}

function readPoolListen(problems: Problems, path: string, value: unknown): PoolListen | undefined {
  const fix = "give a unix socket path such as /run/php/app.sock or a TCP address such as 127.0.0.1:9000";
  if (typeof value !== "string" && typeof value !== "number") {
    problems.add(
      path,
      value,
      value === undefined ? "required" : "type",
      value === undefined ? "is required" : `must be a string or a port number, got ${value === null ? "null" : typeof value}`,
      fix,
    );
    return undefined;
  }
  if (typeof value === "string" && (value.includes("/") || value.startsWith("unix:"))) {
    const bad = unixSocketPathProblem(value);
    if (bad) {
      problems.add(path, value, "unix-socket-path", `the socket path ${bad.message}`, bad.fix);
      return undefined;
    }
    const p = checkAbsolutePath(problems, path, value, "the socket path");
    return p === undefined ? undefined : { kind: "unix", path: p };
  }
  const parsed = parseTcpEndpoint(value, "php-fpm");
  if ("message" in parsed) {
    const unsafe = typeof value === "string" ? unsafeCharacters(value.replace(/^\[[^\]\s]*\]/, "")) : undefined;
    problems.add(path, value, "listen-address", `the listen address ${unsafe ?? parsed.message}`, unsafe ? fix : parsed.fix);
    return undefined;
  }
  return { kind: "tcp", endpoint: parsed };
}

function readPool(
  problems: Problems,
  path: string,
  value: unknown,
):
  | { pool: Omit<Pool, "backlog" | "backlogSource"> | undefined; backlog: number | undefined; validName: string | undefined; pmFollowUp: readonly Problem[] }
  | undefined {
  if (!checkObject(problems, path, value, POOL_FIELDS, "a pool")) return undefined;
  const name =
    value.name === undefined
      ? (problems.add(`${path}.name`, undefined, "required", "is required", "give the pool a name such as app"), undefined)
      : checkPattern(
          problems,
          `${path}.name`,
          value.name,
          NAME_PATTERN,
          "safe-name",
          "the pool name",
          "use 1-64 letters, digits, _ . - starting with a letter or digit",
        );
  const listen = readPoolListen(problems, `${path}.listen`, value.listen);
  const backlog = optionalInt(problems, `${path}.backlog`, value.backlog, LIMITS.backlog, "backlog-range", "listen.backlog");
  const user = accountField(problems, `${path}.user`, value.user, "the user");
  const group = accountField(problems, `${path}.group`, value.group, "the group");
  const listenOwner = accountField(problems, `${path}.listenOwner`, value.listenOwner, "listen.owner");
  const listenGroup = accountField(problems, `${path}.listenGroup`, value.listenGroup, "listen.group");
  let listenMode: string = DEFAULTS.listenMode;
  if (value.listenMode !== undefined) {
    const m = checkPattern(
      problems,
      `${path}.listenMode`,
      value.listenMode,
      SOCKET_MODE_PATTERN,
      "socket-mode",
      "listen.mode",
      'write an octal mode as a string, e.g. "0660" (a number like 660 would be read as decimal)',
    );
    if (m !== undefined) listenMode = m.padStart(4, "0");
  }
  if (listen?.kind === "tcp") {
    for (const f of ["listenOwner", "listenGroup", "listenMode"]) {
      if (value[f] !== undefined) {
        problems.add(
          `${path}.${f}`,
          value[f],
          "unix-only-setting",
          "applies only to unix sockets; this pool listens on TCP",
          "remove it, or listen on a unix socket path",
        );
      }
    }
  }
  const { pm, followUp: pmFollowUp } = readPm(problems, `${path}.pm`, value.pm);
  const extra: ExtraDirective[] = [];
  if (value.extra !== undefined) {
    if (!isRecord(value.extra)) {
      problems.add(`${path}.extra`, value.extra, "type", "must be an object of directive: value", 'give e.g. { "php_admin_value[memory_limit]": "128M" }');
    } else {
      for (const key of Object.keys(value.extra).sort()) {
        const v = checkExtraDirective(problems, `${path}.extra[${JSON.stringify(key)}]`, key, value.extra[key]);
        if (v !== undefined) extra.push({ key, value: v });
      }
    }
  }
  if (name === undefined || listen === undefined) return { pool: undefined, backlog, validName: name, pmFollowUp };
  return { pool: { name, listen, user, group, listenOwner, listenGroup, listenMode, pm, extra }, backlog, validName: name, pmFollowUp };
}

function readListener(problems: Problems, path: string, value: unknown, poolNames: ReadonlySet<string>): DraftListener | undefined {
  if (!checkObject(problems, path, value, LISTENER_FIELDS, "a listener")) return undefined;
  let listen: TcpEndpoint | undefined;
  if (value.listen === undefined) problems.add(`${path}.listen`, undefined, "required", "is required", "give an address such as 80, 127.0.0.1:8080 or [::]:80");
  else if (typeof value.listen !== "string" && typeof value.listen !== "number") {
    problems.add(
      `${path}.listen`,
      value.listen,
      "type",
      `must be a string or a port number, got ${value.listen === null ? "null" : typeof value.listen}`,
      "give an address such as 80, 127.0.0.1:8080 or [::]:80",
    );
  } else if (typeof value.listen === "string" && value.listen.startsWith("unix:")) {
    problems.add(
      `${path}.listen`,
      value.listen,
      "listen-address",
      "nginx unix-socket listeners are not supported: a listener is a TCP address",
      "use a TCP address such as 127.0.0.1:8080",
    );
  } else {
    const parsed = parseTcpEndpoint(value.listen, "nginx");
    if ("message" in parsed) {
      const unsafe = typeof value.listen === "string" ? unsafeCharacters(value.listen.replace(/^\[[^\]\s]*\]/, "")) : undefined;
      problems.add(
        `${path}.listen`,
        value.listen,
        "listen-address",
        `the listen address ${unsafe ?? parsed.message}`,
        unsafe ? "use IPV4:PORT, [IPV6]:PORT or PORT" : parsed.fix,
      );
    } else listen = parsed;
  }
  const backlog = optionalInt(problems, `${path}.backlog`, value.backlog, LIMITS.backlog, "backlog-range", "nginx backlog=");
  const serverNames: string[] = [];
  if (value.serverName !== undefined) {
    const names = Array.isArray(value.serverName) ? value.serverName : [value.serverName];
    const many = Array.isArray(value.serverName);
    names.forEach((n: unknown, j: number) => {
      const ok = checkServerName(
        problems,
        many ? `${path}.serverName[${j}]` : `${path}.serverName`,
        n,
        "use a host name such as example.com, *.example.com or _ (no regular expressions)",
      );
      if (ok !== undefined) serverNames.push(ok);
    });
  }
  let pool: string | undefined;
  if (value.pool === undefined) problems.add(`${path}.pool`, undefined, "required", "is required", "name the php-fpm pool this listener forwards to");
  else {
    pool = checkPattern(problems, `${path}.pool`, value.pool, NAME_PATTERN, "safe-name", "the pool name", "name one of the profile's pools");
    if (pool !== undefined && !poolNames.has(pool)) {
      problems.add(
        `${path}.pool`,
        pool,
        "listener-pool-exists",
        `names no pool of this profile (pools: ${[...poolNames].join(", ") || "none"})`,
        "use the name of one of the profile's pools, or add the pool",
      );
      pool = undefined;
    }
  }
  const root = value.root === undefined ? DEFAULTS.root : (checkAbsolutePath(problems, `${path}.root`, value.root, "the document root") ?? DEFAULTS.root);
  let defaultServer = false;
  if (value.defaultServer !== undefined) {
    if (typeof value.defaultServer !== "boolean") {
      problems.add(`${path}.defaultServer`, value.defaultServer, "type", `must be true or false, got ${typeof value.defaultServer}`, "write true or false");
    } else defaultServer = value.defaultServer;
  }
  if (listen === undefined || pool === undefined) return undefined;
  return { index: -1, listen, backlog, serverNames, defaultServer, pool, root };
}

// ---------------------------------------------------------------------------------------
// The whole input

/**
 * Walk an untyped profile input: record every field problem in `problems` (in input order) and
 * return the draft of the valid parts, or `undefined` when the input is not an object.
 *
 * @param problems - collector the field problems are added to.
 * @param input - the profile input as given (a `ProfileInput`, or parsed JSON): not trusted.
 * @returns the draft for `derive`; its `backlog` is `undefined` when the profile backlog was bad.
 */
export function readInput(problems: Problems, input: unknown): Draft | undefined {
  if (!checkObject(problems, "", input, PROFILE_FIELDS, "the profile")) return undefined;
  let name = "invalid";
  if (input.name === undefined) problems.add("name", undefined, "required", "is required", "give the profile a name such as web");
  else
    name =
      checkPattern(
        problems,
        "name",
        input.name,
        NAME_PATTERN,
        "safe-name",
        "the profile name",
        "use 1-64 letters, digits, _ . - starting with a letter or digit",
      ) ?? "invalid";
  let backlog: number | undefined;
  if (input.backlog === undefined)
    problems.add("backlog", undefined, "required", "is required", "give the accept-queue length every listener should get, e.g. 1024");
  else backlog = checkInt(problems, "backlog", input.backlog, LIMITS.backlog, "backlog-range", "the profile backlog");
  const somaxconn = optionalInt(problems, "somaxconn", input.somaxconn, LIMITS.somaxconn, "somaxconn-range", "net.core.somaxconn");
  const tcpMaxSynBacklog = optionalInt(
    problems,
    "tcpMaxSynBacklog",
    input.tcpMaxSynBacklog,
    LIMITS.tcpMaxSynBacklog,
    "syn-backlog-range",
    "net.ipv4.tcp_max_syn_backlog",
  );
  let mode: Mode = DEFAULTS.mode;
  if (input.mode !== undefined) {
    if (input.mode === "atLeast" || input.mode === "exact") mode = input.mode;
    else problems.add("mode", input.mode, "mode-value", 'must be "atLeast" or "exact"', 'use "atLeast" (never lower a larger host value) or "exact"');
  }
  let netdev: number | undefined;
  if (input.netdevMaxBacklog !== undefined) {
    if (typeof input.netdevMaxBacklog === "number") {
      problems.add(
        "netdevMaxBacklog",
        input.netdevMaxBacklog,
        "netdev-opt-in",
        "net.core.netdev_max_backlog is a NIC queue global to the machine (not per network namespace, not a listen queue); it needs an explicit opt-in",
        `write { value: ${input.netdevMaxBacklog}, machineGlobal: true } if you really mean to change it for the whole machine`,
      );
    } else if (checkObject(problems, "netdevMaxBacklog", input.netdevMaxBacklog, NETDEV_FIELDS, "netdevMaxBacklog")) {
      if (input.netdevMaxBacklog.machineGlobal !== true) {
        problems.add(
          "netdevMaxBacklog.machineGlobal",
          input.netdevMaxBacklog.machineGlobal,
          "netdev-opt-in",
          "must be true: net.core.netdev_max_backlog is global to the machine, not per network namespace",
          "set machineGlobal: true to acknowledge it, or drop netdevMaxBacklog",
        );
      }
      netdev =
        input.netdevMaxBacklog.value === undefined
          ? (problems.add("netdevMaxBacklog.value", undefined, "required", "is required", "give the queue length in packets"), undefined)
          : checkInt(problems, "netdevMaxBacklog.value", input.netdevMaxBacklog.value, LIMITS.netdevMaxBacklog, "netdev-range", "net.core.netdev_max_backlog");
    }
  }
  const rawPools = checkArray(problems, "pools", input.pools, "pools");
  const pools: DraftPool[] = [];
  const poolNames = new Set<string>();
  rawPools.forEach((raw, index) => {
    const r = readPool(problems, `pools[${index}]`, raw);
    if (r?.validName !== undefined) poolNames.add(r.validName);
    if (r?.pool) pools.push({ index, pool: r.pool, backlog: r.backlog, pmFollowUp: r.pmFollowUp });
  });
  const rawListeners = checkArray(problems, "listeners", input.listeners, "listeners");
  const usable = new Set(pools.map((p) => p.pool.name));
  const listeners: DraftListener[] = [];
  rawListeners.forEach((raw, index) => {
    const l = readListener(problems, `listeners[${index}]`, raw, poolNames);
    if (l && usable.has(l.pool)) listeners.push({ ...l, index });
  });
  return { name, mode, backlog, somaxconn, tcpMaxSynBacklog, netdev, pools, listeners };
}
