/**
 * Field-level validation for backlog profiles: the one error type ({@link ProfileError}),
 * the numeric limits ({@link LIMITS}), the strict string patterns that keep every value
 * safe to place in an ini file, an nginx file and a shell argument, and the parsers for
 * listen addresses.
 *
 * Everything here is pure and knows nothing about the shape of a profile; `profile/walk.ts`
 * walks the input and calls these checks with the field path of each value.
 *
 * @packageDocumentation
 */

import { isIPv6 } from "node:net";

/**
 * One thing wrong with a profile. Validation collects all of them before failing.
 *
 * @example
 * { path: "pools[1].listen", value: "tmp/app.sock", rule: "unix-socket-path",
 *   message: "must be an absolute path", fix: "use a path such as /run/php/app.sock" }
 */
export interface Problem {
  /** Field path in the profile input, e.g. `pools[1].listen` or `extra["listen.backlog"]`. */
  readonly path: string;
  /** The offending value as given (or as derived, for derived fields). */
  readonly value: unknown;
  /** Id of the rule that failed (see `rules` in `profile/rules.ts` and docs/profile.md). */
  readonly rule: string;
  /** What is wrong and why it matters. */
  readonly message: string;
  /** How to fix it. */
  readonly fix: string;
}

/**
 * The only error the profile, validation and render modules throw for bad input.
 * `problems` lists every problem found (validation never stops at the first one);
 * `message` is a readable multi-line summary naming path, value, rule and fix of each.
 */
export class ProfileError extends Error {
  /** Every problem found, in input order. */
  readonly problems: readonly Problem[];

  /**
   * @param problems - at least one problem.
   * @param subject - what was being validated, used in the first line of the message.
   */
  constructor(problems: readonly Problem[], subject = "backlog profile") {
    super(formatProblems(problems, subject));
    this.name = "ProfileError";
    this.problems = Object.freeze([...problems]);
  }
}

/**
 * Render a value for an error message: strings quoted (and cut at 80 characters),
 * numbers as written (`NaN`, `Infinity`, `1.5`), everything else as JSON.
 */
export function showValue(value: unknown): string {
  if (value === undefined) return "undefined";
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") {
    return String(value);
  }
  if (typeof value === "string") {
    const s = JSON.stringify(value);
    return s.length > 82 ? `${s.slice(0, 79)}…"` : s;
  }
  if (typeof value === "function" || typeof value === "symbol") return `<${typeof value}>`;
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 82 ? `${s.slice(0, 80)}…` : s;
  } catch {
    return String(value);
  }
}

/**
 * Multi-line message for a list of problems:
 * ```
 * Invalid backlog profile: 2 problems
 *   1. pools[1].listen = "tmp/a.sock" [unix-socket-path] must be an absolute path
 *      fix: use an absolute path such as /run/php/app.sock
 * ```
 */
export function formatProblems(problems: readonly Problem[], subject = "backlog profile"): string {
  const lines = [`Invalid ${subject}: ${problems.length} problem${problems.length === 1 ? "" : "s"}`];
  problems.forEach((p, i) => {
    lines.push(`  ${i + 1}. ${p.path} = ${showValue(p.value)} [${p.rule}] ${p.message}`);
    lines.push(`     fix: ${p.fix}`);
  });
  return lines.join("\n");
}

/** Collects problems; validators push into it and return `undefined` for a bad value. */
export class Problems {
  private readonly list: Problem[] = [];

  /** Record one problem. */
  add(path: string, value: unknown, rule: string, message: string, fix: string): void {
    this.list.push({ path, value, rule, message, fix });
  }

  /** Add problems found elsewhere (e.g. by a rule). */
  addAll(problems: readonly Problem[]): void {
    this.list.push(...problems);
  }

  /** Problems recorded so far, in order. */
  get all(): readonly Problem[] {
    return this.list;
  }

  /** Number of problems recorded so far. */
  get count(): number {
    return this.list.length;
  }
}

/** An inclusive whole-number range. */
export interface IntRange {
  /** Smallest accepted value. */
  readonly min: number;
  /** Largest accepted value. */
  readonly max: number;
}

/**
 * Numeric limits the library accepts, with why (sources in docs/profile.md and
 * research/anchors-features.md §3).
 */
export const LIMITS = Object.freeze({
  /**
   * `net.core.somaxconn`: 1..65535. 65535 is the bound every kernel honours: up to 3.10 a
   * larger value wrapped (u16 `sk_max_ack_backlog`), 3.11–4.0 reject it with EINVAL, only
   * 4.1+ store u32. 0 would cap every accept queue at 0 (plus one).
   */
  somaxconn: Object.freeze({ min: 1, max: 65535 }) as IntRange,
  /**
   * `net.ipv4.tcp_max_syn_backlog`: 1..2147483647 (a C int in the kernel). Values above
   * somaxconn buy nothing: a listener's SYN queue is also capped by its own backlog.
   */
  tcpMaxSynBacklog: Object.freeze({ min: 1, max: 2147483647 }) as IntRange,
  /**
   * Application backlogs (profile `backlog`, php-fpm `listen.backlog`, nginx `backlog=`):
   * 1..65535. php-fpm reads an int (−1 would mean "somaxconn", which we never write: the
   * value must be explicit); nginx rejects 0 and non-numbers ("invalid backlog"); anything
   * above somaxconn is silently truncated by listen(), and somaxconn itself stops at 65535.
   */
  backlog: Object.freeze({ min: 1, max: 65535 }) as IntRange,
  /** `net.core.netdev_max_backlog` (opt-in only): 1..2147483647, a C int. */
  netdevMaxBacklog: Object.freeze({ min: 1, max: 2147483647 }) as IntRange,
  /** TCP port: 1..65535. */
  port: Object.freeze({ min: 1, max: 65535 }) as IntRange,
  /** php-fpm `pm.max_children`, `pm.start_servers`, `pm.*_spare_servers`: 1..65535. */
  pmServers: Object.freeze({ min: 1, max: 65535 }) as IntRange,
  /** php-fpm `pm.max_requests`: 0 (never recycle) ..2147483647. */
  pmMaxRequests: Object.freeze({ min: 0, max: 2147483647 }) as IntRange,
  /** php-fpm `pm.process_idle_timeout` in seconds: 1..86400. */
  pmIdleSeconds: Object.freeze({ min: 1, max: 86400 }) as IntRange,
  /**
   * Longest unix socket path in bytes: 107. `sun_path` is 108 bytes including the
   * terminating NUL; php-fpm refuses longer paths ("path is too long").
   */
  unixPathBytes: 107,
});

/**
 * Check that `value` is a whole number in `range`. Records a problem under `rule` and
 * returns `undefined` otherwise (strings such as `"1024"`, `NaN`, `1.5`, `-1`, `0` below
 * the minimum are all rejected, never coerced).
 */
export function checkInt(problems: Problems, path: string, value: unknown, range: IntRange, rule: string, what: string): number | undefined {
  if (typeof value !== "number") {
    problems.add(
      path,
      value,
      rule,
      `${what} must be a number, got ${typeof value}`,
      `write a whole number between ${range.min} and ${range.max} (not a string)`,
    );
    return undefined;
  }
  if (!Number.isInteger(value)) {
    problems.add(path, value, rule, `${what} must be a whole number`, `write a whole number between ${range.min} and ${range.max}`);
    return undefined;
  }
  if (value < range.min || value > range.max) {
    problems.add(
      path,
      value,
      rule,
      `${what} must be between ${range.min} and ${range.max}`,
      value < range.min ? `raise it to at least ${range.min}; -1/0 ("use the default") are not accepted: give the number` : `lower it to at most ${range.max}`,
    );
    return undefined;
  }
  return value;
}

/** `true` when `value` is a whole number inside `range`. */
export function inRange(value: unknown, range: IntRange): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= range.min && value <= range.max;
}

// ---------------------------------------------------------------------------------------
// String patterns. Each is strict on purpose: a value that passes is safe unquoted in an
// ini file (php-fpm), an nginx file, a comment, a file name, and needs no escaping in a
// shell argument beyond what shell.ts adds anyway.

/**
 * Profile and pool names: 1–64 characters, letters, digits, `_`, `.`, `-`, starting with
 * a letter or digit. A pool name becomes the ini section `[name]` and the file `name.conf`.
 */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * User and group names: Debian's `NAME_REGEX` style, `[a-z_][a-z0-9_-]*`, at most 32
 * characters (useradd's limit).
 */
export const ACCOUNT_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;

/** One path segment: letters, digits, `_`, `.`, `+`, `-` (no `.`/`..` segments, checked apart). */
const SEGMENT_PATTERN = /^[A-Za-z0-9_.+-]+$/;

/**
 * nginx server name: `_`, a host name, `*.example.com`, `.example.com` or `example.*`
 * (labels of letters, digits and `-`, at most 63 each); no regular expressions (`~`). The length
 * (at most {@link SERVER_NAME_MAX} characters) is checked by {@link checkServerName}.
 */
export const SERVER_NAME_PATTERN =
  /^(?:_|(?:\*\.|\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?:\.\*)?)$/;

/** php-fpm socket mode: three octal digits with an optional leading 0, e.g. `0660` or `660`. */
export const SOCKET_MODE_PATTERN = /^0?[0-7]{3}$/;

/**
 * php-fpm extra directive key: lower-case dotted name (`request_terminate_timeout`,
 * `pm.status_path`), or one of the array directives with a subkey
 * (`php_admin_value[memory_limit]`, `env[PATH]`).
 */
export const INI_KEY_PATTERN = /^(?:[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*|(?:env|php_value|php_admin_value|php_flag|php_admin_flag)\[[A-Za-z0-9_.-]{1,128}\])$/;

/**
 * php-fpm extra directive value: 1–1024 characters, letters, digits, space and
 * `_ . / : , @ % + * # -`, no leading/trailing space (an empty value is refused: leave the
 * directive out instead). Excluded on purpose: newline (a new
 * line could start a `[section]`), `;` (comment), `=`, quotes, `$`/`{}` (ini
 * interpolation), `&|^~!()` (ini operators), `[]`, `\`.
 */
export const INI_VALUE_PATTERN = /^[A-Za-z0-9_./:,@%+*#-](?:[A-Za-z0-9 _./:,@%+*#-]{0,1022}[A-Za-z0-9_./:,@%+*#-])?$/;

/**
 * Keys the profile owns in a php-fpm pool: an extra directive cannot set them (php-fpm
 * matches keys case-insensitively, so neither can `LISTEN.BACKLOG`). `include` is refused
 * too because it would pull in a file that could set them.
 */
export const OWNED_POOL_KEYS: readonly string[] = Object.freeze([
  "listen",
  "listen.backlog",
  "listen.owner",
  "listen.group",
  "listen.mode",
  "listen.acl_users",
  "listen.acl_groups",
  "user",
  "group",
  "pm",
  "pm.max_children",
  "pm.start_servers",
  "pm.min_spare_servers",
  "pm.max_spare_servers",
  "pm.max_requests",
  "pm.process_idle_timeout",
  "include",
]);

/** Check a string field against a pattern; returns the string or `undefined` (problem recorded). */
export function checkPattern(problems: Problems, path: string, value: unknown, pattern: RegExp, rule: string, what: string, fix: string): string | undefined {
  if (typeof value !== "string") {
    problems.add(path, value, rule, `${what} must be a string, got ${typeof value}`, fix);
    return undefined;
  }
  if (!pattern.test(value)) {
    problems.add(path, value, rule, `${what} ${describeBadString(value)}`, fix);
    return undefined;
  }
  return value;
}

/** DNS limits of a server name (RFC 1035 §2.3.4): 253 characters in all, 63 a label. */
export const SERVER_NAME_MAX = 253;
const SERVER_NAME_LABEL_MAX = 63;

/**
 * Check one nginx server name (rule `server-name`): safe characters, at most
 * {@link SERVER_NAME_MAX} characters and labels of at most 63 (DNS limits; the wildcard forms
 * `*.x`, `.x` and `x.*` count as written), then {@link SERVER_NAME_PATTERN}. The walker and the
 * rule share it, so the input and a derived profile get the same message. Returns the name if valid.
 */
export function checkServerName(problems: Problems, path: string, value: unknown, fix: string): string | undefined {
  if (typeof value === "string" && unsafeCharacters(value) === undefined) {
    if (value.length > SERVER_NAME_MAX) {
      problems.add(
        path,
        value,
        "server-name",
        `the server name is ${value.length} characters long; a DNS name has at most ${SERVER_NAME_MAX}`,
        "use a shorter host name",
      );
      return undefined;
    }
    const long = value.split(".").find((label) => label.length > SERVER_NAME_LABEL_MAX);
    if (long !== undefined) {
      problems.add(
        path,
        value,
        "server-name",
        `the server name has a label of ${long.length} characters (${showValue(long.slice(0, 20))}…); a DNS label has at most ${SERVER_NAME_LABEL_MAX}`,
        "shorten that label (the parts between the dots)",
      );
      return undefined;
    }
  }
  return checkPattern(problems, path, value, SERVER_NAME_PATTERN, "server-name", "the server name", fix);
}

/**
 * If `value` contains a character that could break out of a rendered file or a shell word
 * (line break, control character, `; { } [ ] =`, quotes, `$`, backslash, whitespace), say
 * which; otherwise `undefined`. Used to make rejection messages specific.
 */
export function unsafeCharacters(value: string): string | undefined {
  const reason = describeBadString(value);
  return reason === "has characters or a form that is not allowed" || reason === "must not be empty" ? undefined : reason;
}

/** Say what makes a string unsafe, for messages ("contains a newline", ...). */
function describeBadString(value: string): string {
  if (value === "") return "must not be empty";
  if (/[\r\n]/.test(value)) return "contains a line break (it could inject a new line into the rendered file)";
  if (/[\x00-\x1f\x7f]/.test(value)) return "contains a control character";
  if (/[;{}]/.test(value)) return "contains ; { or } (it could end the directive or open a block)";
  if (/[[\]=]/.test(value)) return "contains [ ] or = (it could open an ini section or start a new key)";
  if (/["'`$\\]/.test(value)) return "contains a quote, backquote, $ or backslash";
  if (/\s/.test(value)) return "contains whitespace";
  return "has characters or a form that is not allowed";
}

/** `true` when `value` is a safe absolute path (see {@link checkAbsolutePath}). */
export function isSafeAbsolutePath(value: unknown): value is string {
  if (typeof value !== "string" || !value.startsWith("/") || value.length > 4096) return false;
  if (value === "/") return true;
  const segments = value.slice(1).split("/");
  return segments.every((s) => SEGMENT_PATTERN.test(s) && s !== "." && s !== "..");
}

/**
 * Check an absolute path: starts with `/`, segments of letters, digits, `_ . + -`, no empty
 * (`//`), `.` or `..` segment, no trailing `/` (except `/` itself).
 */
export function checkAbsolutePath(problems: Problems, path: string, value: unknown, what: string): string | undefined {
  if (typeof value !== "string") {
    problems.add(path, value, "safe-path", `${what} must be a string, got ${typeof value}`, "give an absolute path such as /var/www/html");
    return undefined;
  }
  if (!value.startsWith("/")) {
    problems.add(path, value, "safe-path", `${what} must be an absolute path (start with /)`, `write it from the root, e.g. /${value.replace(/^\.?\/*/, "")}`);
    return undefined;
  }
  if (!isSafeAbsolutePath(value)) {
    problems.add(
      path,
      value,
      "safe-path",
      `${what} ${/[\s;{}[\]="'`$\\]/.test(value) ? describeBadString(value) : "may only use letters, digits, _ . + - between single slashes, with no . or .. segment"}`,
      "use a plain absolute path such as /run/php/app.sock or /var/www/html",
    );
    return undefined;
  }
  return value;
}

/** Why a unix socket path is refused, or `undefined` when it is fine. */
export function unixSocketPathProblem(value: string): { message: string; fix: string } | undefined {
  if (value.startsWith("unix:")) {
    return { message: "php-fpm takes a plain path, without the nginx-style unix: prefix", fix: `write ${value.slice(5)}` };
  }
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > LIMITS.unixPathBytes) {
    return {
      message: `is ${bytes} bytes; a unix socket path holds at most ${LIMITS.unixPathBytes} (sun_path is 108 bytes with the NUL) and php-fpm refuses longer ones`,
      fix: "use a shorter path such as /run/php/<pool>.sock",
    };
  }
  if (/^\/(?:var\/)?tmp\//.test(value)) {
    return {
      message:
        "is under /tmp or /var/tmp: php-fpm's upstream systemd unit runs with PrivateTmp=true, so nginx would not see the socket, and tmp cleaners may delete it",
      fix: "put the socket in /run/php/ (created by the php-fpm service)",
    };
  }
  if (value.endsWith("/")) {
    return { message: "names a directory, not a socket file", fix: "end the path with the socket file name, e.g. /run/php/app.sock" };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// TCP endpoints

/**
 * A TCP listen address.
 * - `family: "ipv4"`: `host` is a dotted quad; `0.0.0.0` means every IPv4 address.
 * - `family: "ipv6"`: `host` is the compressed IPv6 form without brackets; `::` means every
 *   IPv6 address.
 * - `family: "any"`: `host` is `null`; php-fpm's bare `listen = PORT` (every IPv6 and
 *   IPv4-mapped address: one dual-stack socket, shown by `ss` as `*:PORT`).
 */
export interface TcpEndpoint {
  /** Address family; `any` only for php-fpm's bare port. */
  readonly family: "ipv4" | "ipv6" | "any";
  /** IP literal (IPv6 without brackets), or `null` for `family: "any"`. */
  readonly host: string | null;
  /** Port, 1..65535. */
  readonly port: number;
}

const IPV4_PATTERN = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** `true` for a dotted-quad IPv4 literal without leading zeros. */
export function isIpv4(value: string): boolean {
  return IPV4_PATTERN.test(value);
}

/**
 * Compressed, lower-case form of an IPv6 literal (RFC 5952, as `ss` and nginx print it), or
 * `undefined` when `value` is not a plain IPv6 literal (zone ids `%eth0` and IPv4-mapped
 * dotted forms are refused).
 */
export function canonicalIpv6(value: string): string | undefined {
  if (!/^[0-9A-Fa-f:]+$/.test(value) || !isIPv6(value)) return undefined;
  try {
    const h = new URL(`http://[${value}]/`).hostname;
    return h.slice(1, -1);
  } catch {
    return undefined;
  }
}

/** `true` when the endpoint listens on every address of its family (or of both families). */
export function isWildcard(e: TcpEndpoint): boolean {
  return e.host === null || e.host === "0.0.0.0" || e.host === "::";
}

/**
 * Text form as php-fpm and nginx write it: `127.0.0.1:9000`, `[::1]:9000`, `0.0.0.0:80`,
 * or the bare port `9000` for `family: "any"`.
 */
export function formatEndpoint(e: TcpEndpoint): string {
  if (e.host === null) return String(e.port);
  return e.family === "ipv6" ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** Which program's listen syntax an address is written in. */
export type ListenFlavour = "php-fpm" | "nginx";

/**
 * Parse a TCP listen address: `PORT` (number or string), `IPV4:PORT`, `[IPV6]:PORT`, and for
 * nginx also `*:PORT`. Host names are refused: the socket must be matched against `ss`
 * output, which shows addresses. nginx's bare port and `*` mean `0.0.0.0` (IPv4 only);
 * php-fpm's bare port means every address (dual stack, `family: "any"`).
 *
 * @returns the endpoint, or `{ message, fix }` explaining the refusal.
 */
export function parseTcpEndpoint(value: string | number, flavour: ListenFlavour): TcpEndpoint | { message: string; fix: string } {
  const portOnly = (p: number): TcpEndpoint => (flavour === "nginx" ? { family: "ipv4", host: "0.0.0.0", port: p } : { family: "any", host: null, port: p });
  const badPort = (p: string) => ({
    message: `port ${JSON.stringify(p)} must be a whole number between ${LIMITS.port.min} and ${LIMITS.port.max}`,
    fix: "use a port such as 9000 or 8080",
  });
  const parsePort = (p: string): number | undefined => {
    if (!/^[1-9]\d{0,4}$/.test(p)) return undefined;
    const n = Number(p);
    return inRange(n, LIMITS.port) ? n : undefined;
  };
  if (typeof value === "number") {
    return inRange(value, LIMITS.port) ? portOnly(value) : badPort(String(value));
  }
  if (/^\d+$/.test(value)) {
    const p = parsePort(value);
    return p === undefined ? badPort(value) : portOnly(p);
  }
  const m = /^(\[[^\]]*\]|[^:[\]]*):([^:]*)$/.exec(value);
  if (!m) {
    if (/^[0-9A-Fa-f:]+$/.test(value) && value.includes("::")) {
      return { message: "an IPv6 address needs brackets before the port", fix: "write it as [ADDRESS]:PORT, e.g. [::1]:9000" };
    }
    return { message: "must be PORT, IPV4:PORT or [IPV6]:PORT", fix: "write e.g. 127.0.0.1:9000, [::1]:9000 or 9000" };
  }
  const [, rawHost, rawPort] = m as unknown as [string, string, string];
  const port = parsePort(rawPort);
  if (port === undefined) return badPort(rawPort);
  if (rawHost === "*") {
    if (flavour === "nginx") return { family: "ipv4", host: "0.0.0.0", port };
    return { message: "php-fpm does not accept * as an address", fix: `write just the port (${port}) to listen on every address` };
  }
  if (rawHost.startsWith("[")) {
    const inner = rawHost.slice(1, -1);
    const v6 = canonicalIpv6(inner);
    if (v6 === undefined) {
      return {
        message: `${JSON.stringify(inner)} is not a plain IPv6 address (no zone ids, no IPv4-mapped forms)`,
        fix: "use an address such as ::1 or ::, or the IPv4 address itself",
      };
    }
    return { family: "ipv6", host: v6, port };
  }
  if (isIpv4(rawHost)) return { family: "ipv4", host: rawHost, port };
  return {
    message: `host ${JSON.stringify(rawHost)} must be an IP address (no host names: the socket is verified against ss, which shows addresses)`,
    fix: "use 127.0.0.1, 0.0.0.0, [::1] or [::]",
  };
}

/** A TCP socket as a program binds it (the program decides the dual-stack behaviour). */
export interface BoundEndpoint {
  /** Which program binds it. */
  readonly program: ListenFlavour;
  /** The address it binds. */
  readonly endpoint: TcpEndpoint;
}

/**
 * `true` when the socket also accepts IPv4: php-fpm's bare port and `[::]` bind one
 * dual-stack socket (php.net: "all addresses (IPv6 and IPv4-mapped)"); nginx sets
 * `ipv6only=on` by default, so its `[::]` is IPv6 only.
 */
export function isDualStack(b: BoundEndpoint): boolean {
  return b.endpoint.family === "any" || (b.program === "php-fpm" && b.endpoint.host === "::");
}

/**
 * `true` when two sockets cannot both bind: same port and overlapping addresses. A wildcard
 * overlaps every address of its family (Linux refuses to bind a specific address while the
 * wildcard socket of the same port listens, and the reverse: `inet_bind_conflict`), and a
 * dual-stack socket ({@link isDualStack}) overlaps IPv4 addresses too.
 */
export function endpointsOverlap(a: BoundEndpoint, b: BoundEndpoint): boolean {
  if (a.endpoint.port !== b.endpoint.port) return false;
  const covers = (x: BoundEndpoint, y: BoundEndpoint): boolean => {
    const xe = x.endpoint;
    const ye = y.endpoint;
    if (xe.family === "any" || ye.family === "any") return true;
    if (xe.family === ye.family && xe.host === ye.host) return true;
    if (!isWildcard(xe)) return false;
    return xe.family === ye.family || isDualStack(x);
  };
  return covers(a, b) || covers(b, a);
}

/**
 * Check a php-fpm extra directive key and value: pattern (no injection) and ownership
 * (cannot set a key the profile owns). Returns the rendered value or `undefined`.
 */
export function checkExtraDirective(problems: Problems, path: string, key: string, value: unknown): string | undefined {
  let ok = true;
  if (!INI_KEY_PATTERN.test(key)) {
    problems.add(
      path,
      key,
      "ini-key",
      `extra directive key ${describeBadString(key)}; keys are lower-case dotted names or env/php_value/php_admin_value/php_flag/php_admin_flag[NAME]`,
      "use a php-fpm pool directive name such as request_terminate_timeout or php_admin_value[memory_limit]",
    );
    ok = false;
  }
  const lower = key.toLowerCase();
  if (OWNED_POOL_KEYS.includes(lower)) {
    problems.add(path, key, "owned-directive", `extra directive ${JSON.stringify(key)} would override a setting the profile owns`, ownedKeyFix(lower));
    ok = false;
  }
  let text: string | undefined;
  if (typeof value === "number" && Number.isFinite(value)) text = String(value);
  else if (typeof value === "string") text = value;
  if (text === undefined) {
    problems.add(
      path,
      value,
      "ini-value",
      `extra directive value must be a string or a finite number, got ${typeof value === "number" ? String(value) : typeof value}`,
      'give the value as a string, e.g. "128M"',
    );
    return undefined;
  }
  if (!INI_VALUE_PATTERN.test(text)) {
    problems.add(
      path,
      value,
      "ini-value",
      `extra directive value ${describeBadString(text)}; allowed: letters, digits, space and _ . / : , @ % + * # -`,
      "use a plain value (for error_reporting give the integer, e.g. 22527)",
    );
    return undefined;
  }
  return ok ? text : undefined;
}

function ownedKeyFix(key: string): string {
  if (key === "listen") return "set the pool's `listen` field";
  if (key === "listen.backlog") return "set the pool's `backlog` field (or the profile's `backlog`)";
  if (key === "listen.owner" || key === "listen.acl_users") return "set the pool's `listenOwner` field";
  if (key === "listen.group" || key === "listen.acl_groups") return "set the pool's `listenGroup` field";
  if (key === "listen.mode") return "set the pool's `listenMode` field";
  if (key === "user" || key === "group") return `set the pool's \`${key}\` field`;
  if (key === "include") return "put the directives themselves in `extra`";
  return "set it in the pool's `pm` field";
}
