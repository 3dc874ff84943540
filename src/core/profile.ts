/**
 * The backlog profile: the single source of truth for one host's (or fleet's) listen
 * backlogs. {@link defineProfile} validates the input, derives every value (sysctls, each
 * php-fpm pool's `listen.backlog`, each nginx listener's `backlog=`), checks every
 * {@link rules | rule}, and returns a frozen {@link BacklogProfile}; bad input throws one
 * {@link ProfileError} listing every problem. The same {@link rules} serve the components and
 * the policy pack.
 *
 * Derivation in one paragraph: every application backlog defaults to the profile's
 * `backlog`; `net.core.somaxconn` defaults to the largest application backlog (so listen()
 * never truncates one); `net.ipv4.tcp_max_syn_backlog` defaults to somaxconn (so no TCP
 * listener's SYN queue is smaller than its accept queue). Explicit overrides are checked
 * against the same rules and rejected, never adjusted, when they break one.
 *
 * @packageDocumentation
 */

import {
  ACCOUNT_PATTERN,
  type BoundEndpoint,
  LIMITS,
  NAME_PATTERN,
  OWNED_POOL_KEYS,
  type Problem,
  ProfileError,
  Problems,
  SERVER_NAME_PATTERN,
  SOCKET_MODE_PATTERN,
  type TcpEndpoint,
  checkAbsolutePath,
  checkExtraDirective,
  checkInt,
  checkPattern,
  endpointsOverlap,
  formatEndpoint,
  inRange,
  parseTcpEndpoint,
  unixSocketPathProblem,
  unsafeCharacters,
} from "./validation";

export { ProfileError, type Problem } from "./validation";

// ---------------------------------------------------------------------------------------
// Keys and modes

/** `net.core.somaxconn`: the cap listen() applies to every backlog (per network namespace). */
export const SOMAXCONN = "net.core.somaxconn";
/** `net.ipv4.tcp_max_syn_backlog`: per-listener SYN queue limit (per network namespace). */
export const TCP_MAX_SYN_BACKLOG = "net.ipv4.tcp_max_syn_backlog";
/**
 * `net.core.netdev_max_backlog`: the NIC input packet queue. Not a listen queue, and global
 * to the machine (not per network namespace): managed only on explicit opt-in.
 */
export const NETDEV_MAX_BACKLOG = "net.core.netdev_max_backlog";

/** A kernel setting the library can manage. */
export type SysctlKey = typeof SOMAXCONN | typeof TCP_MAX_SYN_BACKLOG | typeof NETDEV_MAX_BACKLOG;

/** Sysctls that are global to the machine rather than per network namespace. */
export const MACHINE_GLOBAL_SYSCTLS: readonly SysctlKey[] = Object.freeze([NETDEV_MAX_BACKLOG]);

/** Kernel values read from a host (any subset), e.g. before the first deployment. */
export type KernelValues = Readonly<Partial<Record<SysctlKey, number>>>;

/**
 * How the profile's kernel values meet the values a host already has.
 * - `"atLeast"` (default): never lower a kernel value the host already has above the
 *   profile; the host keeps the larger one (TuneD's `>N`). The expected value is
 *   `max(profile, host before)`.
 * - `"exact"`: the host gets exactly the profile's values, lower or higher.
 */
export type Mode = "atLeast" | "exact";

// ---------------------------------------------------------------------------------------
// Input

/** Opt-in for `net.core.netdev_max_backlog`; `machineGlobal: true` acknowledges its scope. */
export interface NetdevMaxBacklogInput {
  /** Packets queued on the input side per CPU, 1..2147483647. */
  readonly value: number;
  /**
   * Must be `true`: this key is global to the machine, not per network namespace; writing
   * it from a container touches the whole machine (or fails).
   */
  readonly machineGlobal: true;
}

/** php-fpm process manager style (`pm`). */
export type PmStyle = "dynamic" | "static" | "ondemand";

/**
 * php-fpm process manager settings. Defaults are Debian's `www.conf` values, clamped to
 * `maxChildren`. php-fpm's own consistency rules are checked (see rule `pm-consistency`).
 */
export interface PmInput {
  /** `pm`. Default `"dynamic"`. */
  readonly style?: PmStyle;
  /** `pm.max_children`, 1..65535. Default 5. */
  readonly maxChildren?: number;
  /** `pm.start_servers` (dynamic only). Default 2, kept between the spare bounds. */
  readonly startServers?: number;
  /** `pm.min_spare_servers` (dynamic only). Default 1. */
  readonly minSpareServers?: number;
  /** `pm.max_spare_servers` (dynamic only). Default `min(3, maxChildren)`, at least minSpareServers. */
  readonly maxSpareServers?: number;
  /** `pm.max_requests`, 0..2147483647 (0 = never recycle a worker). Default 0. */
  readonly maxRequests?: number;
  /** `pm.process_idle_timeout` in seconds (ondemand only), 1..86400. Default 10. */
  readonly processIdleTimeoutSeconds?: number;
}

/** One php-fpm pool. */
export interface PoolInput {
  /** Pool name: ini section `[name]` and file `name.conf`. Pattern `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`. */
  readonly name: string;
  /**
   * Where the pool listens: an absolute unix socket path (`/run/php/app.sock`, at most 107
   * bytes, not under /tmp), or TCP `IPV4:PORT`, `[IPV6]:PORT`, or a bare `PORT` (every
   * address, dual stack). IP literals only (no host names).
   */
  readonly listen: string | number;
  /** `listen.backlog`, 1..65535. Default: the profile's `backlog`. */
  readonly backlog?: number;
  /** Worker user. Default `www-data`. */
  readonly user?: string;
  /** Worker group. Default `www-data`. */
  readonly group?: string;
  /** `listen.owner` of a unix socket. Default `www-data` (nginx's user on Debian). */
  readonly listenOwner?: string;
  /** `listen.group` of a unix socket. Default `www-data`. */
  readonly listenGroup?: string;
  /** `listen.mode` of a unix socket, octal string (`"0660"` or `"660"`). Default `"0660"`. */
  readonly listenMode?: string;
  /** Process manager. Defaults: see {@link PmInput}. */
  readonly pm?: PmInput;
  /**
   * Extra pool directives, rendered after the owned ones, sorted by key. Keys the profile
   * owns (listen*, user, group, pm*, include) are rejected. Values: see `INI_VALUE_PATTERN`.
   */
  readonly extra?: Readonly<Record<string, string | number>>;
}

/** One nginx `server` block that forwards PHP requests to a pool. */
export interface ListenerInput {
  /**
   * nginx listen address: `PORT` or `*:PORT` (= `0.0.0.0:PORT`, IPv4), `IPV4:PORT`,
   * `[IPV6]:PORT` (IPv6 only: nginx's default `ipv6only=on`).
   */
  readonly listen: string | number;
  /**
   * `backlog=`, 1..65535. Default: another listener's explicit backlog on the same
   * address:port, else the profile's `backlog`.
   */
  readonly backlog?: number;
  /** `server_name` value(s); host names, `*.example.com`, `.example.com`, `example.*`, `_`. Default: none. */
  readonly serverName?: string | readonly string[];
  /** Name of the php-fpm pool (in this profile) the block forwards `.php` requests to. */
  readonly pool: string;
  /** Document root. Default `/var/www/html`. */
  readonly root?: string;
  /** Add `default_server` to the listen directive (at most one per address:port). Default `false`. */
  readonly defaultServer?: boolean;
}

/** Everything a profile can be given. Only `name` and `backlog` are required. */
export interface ProfileInput {
  /** Profile name, shown in every rendered file. Pattern `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`. */
  readonly name: string;
  /** Target accept-queue length for every listener, 1..65535. */
  readonly backlog: number;
  /** Explicit `net.core.somaxconn`, 1..65535. Default: the largest application backlog. */
  readonly somaxconn?: number;
  /** Explicit `net.ipv4.tcp_max_syn_backlog`, 1..2147483647. Default: somaxconn. */
  readonly tcpMaxSynBacklog?: number;
  /** `"atLeast"` (default) or `"exact"`; see {@link Mode}. */
  readonly mode?: Mode;
  /** Opt-in, machine-global `net.core.netdev_max_backlog`. Default: not managed. */
  readonly netdevMaxBacklog?: NetdevMaxBacklogInput;
  /** php-fpm pools. Default: none. */
  readonly pools?: readonly PoolInput[];
  /** nginx server blocks. Default: none. */
  readonly listeners?: readonly ListenerInput[];
}

// ---------------------------------------------------------------------------------------
// Output

/** Where a php-fpm pool listens. */
export type PoolListen =
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "tcp"; readonly endpoint: TcpEndpoint };

/** Fully defaulted php-fpm process manager settings. */
export type Pm =
  | {
      readonly style: "dynamic";
      readonly maxChildren: number;
      readonly startServers: number;
      readonly minSpareServers: number;
      readonly maxSpareServers: number;
      readonly maxRequests: number;
    }
  | { readonly style: "static"; readonly maxChildren: number; readonly maxRequests: number }
  | {
      readonly style: "ondemand";
      readonly maxChildren: number;
      readonly processIdleTimeoutSeconds: number;
      readonly maxRequests: number;
    };

/** One extra pool directive, as rendered. */
export interface ExtraDirective {
  /** Directive key, e.g. `php_admin_value[memory_limit]`. */
  readonly key: string;
  /** Value as rendered. */
  readonly value: string;
}

/** A derived php-fpm pool. */
export interface Pool {
  /** Pool name. */
  readonly name: string;
  /** Where it listens. */
  readonly listen: PoolListen;
  /** `listen.backlog`. */
  readonly backlog: number;
  /** `"pool"` when given on the pool, `"profile"` when inherited from the profile's `backlog`. */
  readonly backlogSource: "pool" | "profile";
  /** Worker user. */
  readonly user: string;
  /** Worker group. */
  readonly group: string;
  /** `listen.owner` (rendered for unix sockets only). */
  readonly listenOwner: string;
  /** `listen.group` (rendered for unix sockets only). */
  readonly listenGroup: string;
  /** `listen.mode`, four octal digits (rendered for unix sockets only). */
  readonly listenMode: string;
  /** Process manager settings. */
  readonly pm: Pm;
  /** Extra directives, sorted by key. */
  readonly extra: readonly ExtraDirective[];
}

/** A derived nginx server block. */
export interface Listener {
  /** Listen endpoint (nginx: `family` is `ipv4` or `ipv6`). */
  readonly listen: TcpEndpoint;
  /** Canonical `address:port` as written after `listen`, e.g. `0.0.0.0:80`, `[::]:80`. */
  readonly address: string;
  /** The backlog of the socket at `address`. */
  readonly backlog: number;
  /**
   * `"listener"`: given on this listener; `"address"`: given on another listener with the
   * same address; `"profile"`: the profile's `backlog`.
   */
  readonly backlogSource: "listener" | "address" | "profile";
  /**
   * `true` on the first listener of each address:port: only it writes `backlog=`, because
   * nginx rejects listen options repeated for one address ("duplicate listen options").
   */
  readonly emitsBacklog: boolean;
  /** `server_name` values (may be empty). */
  readonly serverNames: readonly string[];
  /** Whether the listen directive carries `default_server`. */
  readonly defaultServer: boolean;
  /** Pool the block forwards to. */
  readonly pool: string;
  /** `fastcgi_pass` target: `unix:/run/php/app.sock` or `127.0.0.1:9000`. */
  readonly fastcgiPass: string;
  /** Document root. */
  readonly root: string;
}

/** Derived kernel values. `net.core.netdev_max_backlog` is present only when opted in. */
export interface Sysctls {
  /** Cap on every accept queue; >= every application backlog. */
  readonly [SOMAXCONN]: number;
  /** Per-listener SYN queue; >= every TCP listener's backlog. */
  readonly [TCP_MAX_SYN_BACKLOG]: number;
  /** NIC input queue (machine-global), only when opted in. */
  readonly [NETDEV_MAX_BACKLOG]?: number;
}

/** Where a derived kernel value came from. */
export type ValueSource = "override" | "derived";

/** A validated, fully defaulted, deeply frozen profile. */
export interface BacklogProfile {
  /** Profile name. */
  readonly name: string;
  /** See {@link Mode}. */
  readonly mode: Mode;
  /** Target accept-queue length. */
  readonly backlog: number;
  /** Kernel values the profile wants. */
  readonly sysctls: Sysctls;
  /** Whether each kernel value was given (override) or derived. */
  readonly sources: {
    readonly somaxconn: ValueSource;
    readonly tcpMaxSynBacklog: ValueSource;
  };
  /** php-fpm pools, in input order. */
  readonly pools: readonly Pool[];
  /** nginx server blocks, in input order. */
  readonly listeners: readonly Listener[];
}

// ---------------------------------------------------------------------------------------
// Defaults

/** Defaults applied to omitted fields (Debian 12 conventions). */
export const DEFAULTS = Object.freeze({
  /** Profile mode. */
  mode: "atLeast" as Mode,
  /** Pool worker user and group, socket owner and group: Debian's `www-data`. */
  account: "www-data",
  /** Unix socket mode: owner and group may connect (nginx runs as www-data). */
  listenMode: "0660",
  /** nginx document root. */
  root: "/var/www/html",
  /** Debian `www.conf` process-manager values. */
  pm: Object.freeze({
    style: "dynamic" as PmStyle,
    maxChildren: 5,
    startServers: 2,
    minSpareServers: 1,
    maxSpareServers: 3,
    maxRequests: 0,
    processIdleTimeoutSeconds: 10,
  }),
});

// ---------------------------------------------------------------------------------------
// Helpers shared by derivation, rules, render and verify

/**
 * The nginx `fastcgi_pass` target for a pool: `unix:PATH`, or the TCP address with a
 * wildcard replaced by loopback (`127.0.0.1`, `[::1]` for `[::]`).
 */
export function fastcgiTarget(listen: PoolListen): string {
  if (listen.kind === "unix") return `unix:${listen.path}`;
  const e = listen.endpoint;
  if (e.host === null || e.host === "0.0.0.0") return `127.0.0.1:${e.port}`;
  if (e.host === "::") return `[::1]:${e.port}`;
  return formatEndpoint(e);
}

/** Text form of a pool's `listen` value as php-fpm reads it. */
export function formatPoolListen(listen: PoolListen): string {
  return listen.kind === "unix" ? listen.path : formatEndpoint(listen.endpoint);
}

/** One application backlog with its field path, for rules and verification. */
export interface AppBacklog {
  /** Field path, e.g. `pools[0].backlog`, `listeners[1].backlog`. */
  readonly path: string;
  /** The backlog the program passes to listen(). */
  readonly backlog: number;
  /** Whether it was written explicitly on that item (vs inherited). */
  readonly explicit: boolean;
  /** `tcp` or `unix`. */
  readonly transport: "tcp" | "unix";
  /** The socket's owner. */
  readonly program: "php-fpm" | "nginx";
}

/** Every application backlog of a profile: pools first, then listeners. */
export function appBacklogs(profile: BacklogProfile): AppBacklog[] {
  return [
    ...profile.pools.map((p, i): AppBacklog => ({
      path: `pools[${i}].backlog`,
      backlog: p.backlog,
      explicit: p.backlogSource === "pool",
      transport: p.listen.kind,
      program: "php-fpm",
    })),
    ...profile.listeners.map((l, i): AppBacklog => ({
      path: `listeners[${i}].backlog`,
      backlog: l.backlog,
      explicit: l.backlogSource === "listener",
      transport: "tcp",
      program: "nginx",
    })),
  ];
}

/** What the host should get for one kernel key (see {@link kernelTargets}). */
export interface KernelTarget {
  /** The sysctl key. */
  readonly key: SysctlKey;
  /** The profile's value. */
  readonly profileValue: number;
  /** The host's value before the deployment, when known. */
  readonly hostBefore: number | undefined;
  /** Value to write and expect: the profile's, or the host's larger one in `atLeast` mode. */
  readonly value: number;
  /** `true` when `atLeast` kept the host's larger value. */
  readonly keptHostValue: boolean;
  /**
   * How to judge the running value: `"equal"`, or `"atLeast"` (mode `atLeast` without a known
   * host value: anything >= `value` is fine).
   */
  readonly comparison: "equal" | "atLeast";
  /** `"netns"` (per network namespace) or `"machine"` (global, opt-in only). */
  readonly scope: "netns" | "machine";
}

/**
 * The kernel values to write and expect, in a stable order (somaxconn, tcp_max_syn_backlog,
 * then netdev_max_backlog if opted in). In `atLeast` mode a known host value above the
 * profile wins (`max(profile, hostBefore)`); in `exact` mode the profile's value is used.
 *
 * @param hostBefore - the host's values before the first deployment (e.g. parsed from
 *   /proc/sys). Each must be a whole number 0..2147483647, else a {@link ProfileError} is thrown.
 */
export function kernelTargets(profile: BacklogProfile, hostBefore?: KernelValues): KernelTarget[] {
  const problems = new Problems();
  for (const [key, value] of Object.entries(hostBefore ?? {})) {
    if (value === undefined) continue;
    if (!(key === SOMAXCONN || key === TCP_MAX_SYN_BACKLOG || key === NETDEV_MAX_BACKLOG)) {
      problems.add(`hostBefore[${JSON.stringify(key)}]`, value, "host-value", "is not a sysctl this library manages",
        `use one of ${SOMAXCONN}, ${TCP_MAX_SYN_BACKLOG}, ${NETDEV_MAX_BACKLOG}`);
      continue;
    }
    checkInt(problems, `hostBefore[${JSON.stringify(key)}]`, value, { min: 0, max: 2147483647 }, "host-value",
      "a host's kernel value");
  }
  if (problems.count > 0) throw new ProfileError(problems.all, "host values");
  const keys: SysctlKey[] = [SOMAXCONN, TCP_MAX_SYN_BACKLOG];
  if (profile.sysctls[NETDEV_MAX_BACKLOG] !== undefined) keys.push(NETDEV_MAX_BACKLOG);
  return keys.map((key): KernelTarget => {
    const profileValue = profile.sysctls[key] as number;
    const before = hostBefore?.[key];
    const atLeast = profile.mode === "atLeast";
    const kept = atLeast && before !== undefined && before > profileValue;
    return {
      key,
      profileValue,
      hostBefore: before,
      value: kept ? (before as number) : profileValue,
      keptHostValue: kept,
      comparison: atLeast && before === undefined ? "atLeast" : "equal",
      scope: MACHINE_GLOBAL_SYSCTLS.includes(key) ? "machine" : "netns",
    };
  });
}

// ---------------------------------------------------------------------------------------
// Rules

/** A named check over a derived profile, shared by the components and the policy pack. */
export interface Rule {
  /** Stable id, used in every {@link Problem} it reports (e.g. `backlog-within-somaxconn`). */
  readonly id: string;
  /** What the rule enforces. */
  readonly description: string;
  /** Why, with the source (see docs/profile.md and research/anchors-features.md). */
  readonly reason: string;
  /** Report every violation in `profile` (empty when it holds). */
  check(profile: BacklogProfile): Problem[];
}

function problem(path: string, value: unknown, rule: string, message: string, fix: string): Problem {
  return { path, value, rule, message, fix };
}

function somaxconnRef(p: BacklogProfile): string {
  return `somaxconn ${p.sysctls[SOMAXCONN]}${p.sources.somaxconn === "override" ? " (override)" : " (derived)"}`;
}

/** Run a field-level check collector and keep problems of one rule id. */
function collect(fn: (problems: Problems) => void, rule: string): Problem[] {
  const problems = new Problems();
  fn(problems);
  return problems.all.filter((p) => p.rule === rule);
}

function rangeRule(id: string, description: string, reason: string,
  fields: (p: BacklogProfile) => { path: string; value: unknown; what: string }[],
  range: (path: string) => { min: number; max: number }): Rule {
  return {
    id,
    description,
    reason,
    check: (profile) =>
      fields(profile).flatMap(({ path, value, what }) =>
        collect((ps) => checkInt(ps, path, value, range(path), id, what), id)),
  };
}

/** Group listeners by canonical address, keeping input order. */
function listenersByAddress(profile: BacklogProfile): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  profile.listeners.forEach((l, i) => {
    const g = groups.get(l.address);
    if (g) g.push(i);
    else groups.set(l.address, [i]);
  });
  return groups;
}

/** Sockets a profile binds, with the path that names each. */
function boundSockets(profile: BacklogProfile): { path: string; what: string; unix?: string; tcp?: BoundEndpoint }[] {
  const out: { path: string; what: string; unix?: string; tcp?: BoundEndpoint }[] = [];
  profile.pools.forEach((p, i) => {
    const path = `pools[${i}].listen`;
    const what = `pool ${p.name} (${path})`;
    if (p.listen.kind === "unix") out.push({ path, what, unix: p.listen.path });
    else out.push({ path, what, tcp: { program: "php-fpm", endpoint: p.listen.endpoint } });
  });
  for (const [, idx] of listenersByAddress(profile)) {
    const i = idx[0] as number;
    const l = profile.listeners[i] as Listener;
    out.push({ path: `listeners[${i}].listen`, what: `nginx ${l.address} (listeners[${i}].listen)`, tcp: { program: "nginx", endpoint: l.listen } });
  }
  return out;
}

/**
 * The rules every profile must satisfy. {@link defineProfile} checks them all; the policy
 * pack and {@link checkProfile} reuse them on any derived profile. Ids are stable.
 */
export const rules: readonly Rule[] = Object.freeze([
  rangeRule(
    "somaxconn-range",
    "net.core.somaxconn is a whole number in 1..65535.",
    "65535 is the bound every kernel honours: u16 storage wrapped larger values up to 3.10, 3.11-4.0 reject them with EINVAL, u32 only since 4.1 (commit becb74f0acca); 0 caps every accept queue at nothing.",
    (p) => [{ path: "somaxconn", value: p.sysctls[SOMAXCONN], what: "net.core.somaxconn" }],
    () => LIMITS.somaxconn,
  ),
  rangeRule(
    "syn-backlog-range",
    "net.ipv4.tcp_max_syn_backlog is a whole number in 1..2147483647.",
    "The kernel stores it as a C int (net->ipv4.sysctl_max_syn_backlog); 0 or less leaves no SYN queue.",
    (p) => [{ path: "tcpMaxSynBacklog", value: p.sysctls[TCP_MAX_SYN_BACKLOG], what: "net.ipv4.tcp_max_syn_backlog" }],
    () => LIMITS.tcpMaxSynBacklog,
  ),
  rangeRule(
    "backlog-range",
    "The profile backlog and every php-fpm listen.backlog and nginx backlog= are whole numbers in 1..65535.",
    "php-fpm reads an int and -1 means 'somaxconn' (never written: values are explicit); nginx rejects 0 and non-numbers ('invalid backlog'); listen() truncates anything above somaxconn, which stops at 65535.",
    (p) => [
      { path: "backlog", value: p.backlog, what: "the profile backlog" },
      ...p.pools.map((x, i) => ({ path: `pools[${i}].backlog`, value: x.backlog, what: "listen.backlog" })),
      ...p.listeners.map((x, i) => ({ path: `listeners[${i}].backlog`, value: x.backlog, what: "nginx backlog=" })),
    ],
    () => LIMITS.backlog,
  ),
  rangeRule(
    "netdev-range",
    "net.core.netdev_max_backlog, when opted in, is a whole number in 1..2147483647.",
    "The kernel stores it as a C int; it is a NIC packet queue, global to the machine.",
    (p) => p.sysctls[NETDEV_MAX_BACKLOG] === undefined ? [] : [{ path: "netdevMaxBacklog.value", value: p.sysctls[NETDEV_MAX_BACKLOG], what: "net.core.netdev_max_backlog" }],
    () => LIMITS.netdevMaxBacklog,
  ),
  {
    id: "backlog-within-somaxconn",
    description: "Every application backlog (profile backlog, listen.backlog, backlog=) is <= net.core.somaxconn.",
    reason: "listen() silently truncates a larger backlog to somaxconn (__sys_listen in net/socket.c; listen(2)), so the socket would get less than the profile says.",
    check: (profile) => {
      const max = profile.sysctls[SOMAXCONN];
      const out: Problem[] = [];
      const fix = (b: number) => profile.sources.somaxconn === "override"
        ? `raise somaxconn to at least ${b}, or remove the somaxconn override so it is derived`
        : `lower the backlog to at most ${max}`;
      if (profile.backlog > max) {
        out.push(problem("backlog", profile.backlog, "backlog-within-somaxconn",
          `exceeds ${somaxconnRef(profile)}: listen() would silently truncate it to ${max}`, fix(profile.backlog)));
      }
      // Inherited backlogs repeat a value already reported at its source (the profile
      // backlog or an explicit listener backlog on the same address): report sources only.
      const apps = appBacklogs(profile);
      const reported = new Set<number>(profile.backlog > max ? [profile.backlog] : []);
      for (const a of [...apps.filter((x) => x.explicit), ...apps.filter((x) => !x.explicit)]) {
        if (a.backlog <= max || (!a.explicit && reported.has(a.backlog))) continue;
        reported.add(a.backlog);
        out.push(problem(a.path, a.backlog, "backlog-within-somaxconn",
          `exceeds ${somaxconnRef(profile)}: listen() would silently truncate it to ${max}`, fix(a.backlog)));
      }
      return out;
    },
  },
  {
    id: "derived-consistency",
    description: "Derived values match their sources: inherited backlogs equal the profile backlog, a derived somaxconn is the largest application backlog, a derived tcp_max_syn_backlog equals somaxconn, and the mode is atLeast or exact.",
    reason: "A profile edited after defineProfile (or built by hand for the policy pack) must still say what it will do; these are the derivation rules of docs/profile.md.",
    check: (profile) => {
      const out: Problem[] = [];
      if (profile.mode !== "atLeast" && profile.mode !== "exact") {
        out.push(problem("mode", profile.mode, "derived-consistency", "must be \"atLeast\" or \"exact\"", "use one of the two modes"));
      }
      profile.pools.forEach((p, i) => {
        if (p.backlogSource === "profile" && p.backlog !== profile.backlog) {
          out.push(problem(`pools[${i}].backlog`, p.backlog, "derived-consistency", `is marked as inherited but differs from the profile backlog ${profile.backlog}`, "derive the profile again with defineProfile"));
        }
      });
      profile.listeners.forEach((l, i) => {
        if (l.backlogSource === "profile" && l.backlog !== profile.backlog) {
          out.push(problem(`listeners[${i}].backlog`, l.backlog, "derived-consistency", `is marked as inherited but differs from the profile backlog ${profile.backlog}`, "derive the profile again with defineProfile"));
        }
      });
      const largest = Math.max(profile.backlog, ...appBacklogs(profile).map((a) => a.backlog));
      if (profile.sources.somaxconn === "derived" && profile.sysctls[SOMAXCONN] !== largest) {
        out.push(problem("somaxconn", profile.sysctls[SOMAXCONN], "derived-consistency", `is marked as derived but is not the largest application backlog (${largest})`, "derive the profile again with defineProfile"));
      }
      if (profile.sources.tcpMaxSynBacklog === "derived" && profile.sysctls[TCP_MAX_SYN_BACKLOG] !== profile.sysctls[SOMAXCONN]) {
        out.push(problem("tcpMaxSynBacklog", profile.sysctls[TCP_MAX_SYN_BACKLOG], "derived-consistency", `is marked as derived but differs from somaxconn (${profile.sysctls[SOMAXCONN]})`, "derive the profile again with defineProfile"));
      }
      return out;
    },
  },
  {
    id: "syn-backlog-covers-tcp",
    description: "net.ipv4.tcp_max_syn_backlog is >= the largest TCP listener backlog (nginx listeners and TCP pools).",
    reason: "It is a per-listener limit on half-open connections (ip-sysctl.rst); without syncookies a listener drops SYNs once it is 3/4 full (tcp_conn_request), before its accept queue can fill. Unix sockets have no SYN queue.",
    check: (profile) => {
      const syn = profile.sysctls[TCP_MAX_SYN_BACKLOG];
      const ref = `tcp_max_syn_backlog ${syn}${profile.sources.tcpMaxSynBacklog === "override" ? " (override)" : " (derived)"}`;
      // A derived SYN queue follows somaxconn: a TCP backlog above both is reported once,
      // by backlog-within-somaxconn.
      const derived = profile.sources.tcpMaxSynBacklog === "derived" && syn === profile.sysctls[SOMAXCONN];
      const tcp = appBacklogs(profile).filter((a) => a.transport === "tcp" && a.backlog > syn && !derived);
      if (tcp.length === 0) return [];
      const largest = Math.max(...tcp.map((a) => a.backlog));
      const worst = tcp.find((a) => a.backlog === largest) as AppBacklog;
      return [problem("tcpMaxSynBacklog", syn, "syn-backlog-covers-tcp",
        `${ref} is below the largest TCP listener backlog ${largest} (${worst.path})`,
        profile.sources.tcpMaxSynBacklog === "override"
          ? `raise tcpMaxSynBacklog to at least ${largest}, or remove the override so it follows somaxconn`
          : `raise tcpMaxSynBacklog to at least ${largest}`)];
    },
  },
  {
    id: "unique-pool-names",
    description: "Pool names are unique (case-insensitively).",
    reason: "Each pool is the ini section [name] and the file name.conf; php-fpm would merge or reject a repeated section, and two files of the same name cannot coexist.",
    check: (profile) => {
      const seen = new Map<string, number>();
      const out: Problem[] = [];
      profile.pools.forEach((p, i) => {
        const k = p.name.toLowerCase();
        const first = seen.get(k);
        if (first !== undefined) {
          out.push(problem(`pools[${i}].name`, p.name, "unique-pool-names",
            `repeats the name of pools[${first}]`, "give every pool its own name"));
        } else seen.set(k, i);
      });
      return out;
    },
  },
  {
    id: "unique-sockets",
    description: "No two sockets of the profile bind the same unix path or overlapping TCP addresses.",
    reason: "The second bind() fails with EADDRINUSE (a wildcard overlaps every address of its family; php-fpm's bare port and [::] are dual stack), or php-fpm refuses a unix path another instance listens on.",
    check: (profile) => {
      const sockets = boundSockets(profile);
      const out: Problem[] = [];
      sockets.forEach((s, j) => {
        for (let k = 0; k < j; k++) {
          const o = sockets[k] as (typeof sockets)[number];
          const clash = (s.unix !== undefined && s.unix === o.unix) ||
            (s.tcp !== undefined && o.tcp !== undefined && !(s.tcp.program === "nginx" && o.tcp.program === "nginx") &&
              endpointsOverlap(s.tcp, o.tcp));
          if (clash) {
            out.push(problem(s.path, s.unix ?? (s.tcp ? formatEndpoint(s.tcp.endpoint) : undefined), "unique-sockets",
              `binds the same socket as ${o.what}`, "give each pool and nginx address its own socket path or port"));
            break;
          }
        }
      });
      return out;
    },
  },
  {
    id: "nginx-address-overlap",
    description: "nginx listeners on one port use either the wildcard or specific addresses of a family, not both.",
    reason: "Every rendered address carries backlog=, which implies bind (nginx listen docs); Linux refuses to bind a specific address while the wildcard socket of that port listens, and the reverse, even with SO_REUSEADDR (inet_bind_conflict; measured: EADDRINUSE), so nginx would fail to start.",
    check: (profile) => {
      const out: Problem[] = [];
      const groups = [...listenersByAddress(profile).values()].map((idx) => idx[0] as number);
      groups.forEach((i, j) => {
        const l = profile.listeners[i] as Listener;
        for (let k = 0; k < j; k++) {
          const oi = groups[k] as number;
          const o = profile.listeners[oi] as Listener;
          if (endpointsOverlap({ program: "nginx", endpoint: l.listen }, { program: "nginx", endpoint: o.listen })) {
            out.push(problem(`listeners[${i}].listen`, l.address, "nginx-address-overlap",
              `overlaps listeners[${oi}].listen (${o.address}) on port ${l.listen.port}: one is the wildcard`,
              `use the same address on both (name-based virtual hosts share one socket) or different ports`));
            break;
          }
        }
      });
      return out;
    },
  },
  {
    id: "listener-pool-exists",
    description: "Every nginx listener forwards to a pool of the profile, through that pool's socket.",
    reason: "fastcgi_pass must reach the pool's listen address, or nginx answers 502.",
    check: (profile) => {
      const out: Problem[] = [];
      profile.listeners.forEach((l, i) => {
        const pool = profile.pools.find((p) => p.name === l.pool);
        if (!pool) {
          out.push(problem(`listeners[${i}].pool`, l.pool, "listener-pool-exists",
            `names no pool of this profile (pools: ${profile.pools.map((p) => p.name).join(", ") || "none"})`,
            "use the name of one of the profile's pools, or add the pool"));
        } else if (fastcgiTarget(pool.listen) !== l.fastcgiPass) {
          out.push(problem(`listeners[${i}].fastcgiPass`, l.fastcgiPass, "listener-pool-exists",
            `does not reach pool ${pool.name}, which listens on ${formatPoolListen(pool.listen)}`,
            `use ${fastcgiTarget(pool.listen)}`));
        }
      });
      return out;
    },
  },
  {
    id: "nginx-backlog-once",
    description: "For each nginx address:port exactly one listener writes backlog=, and every listener on it agrees on the value.",
    reason: "nginx rejects listen options given in more than one server block for the same address ('duplicate listen options for ...', ngx_http_add_addresses); one socket has one backlog.",
    check: (profile) => {
      const out: Problem[] = [];
      for (const [address, idx] of listenersByAddress(profile)) {
        const emitters = idx.filter((i) => (profile.listeners[i] as Listener).emitsBacklog);
        const first = idx[0] as number;
        if (emitters.length !== 1) {
          out.push(problem(`listeners[${emitters[1] ?? first}].emitsBacklog`, emitters.length, "nginx-backlog-once",
            `${emitters.length} listeners write backlog= for ${address}; nginx accepts it once`,
            "let only the first listener of each address carry backlog= (defineProfile does this)"));
        }
        const value = (profile.listeners[first] as Listener).backlog;
        for (const i of idx.slice(1)) {
          const l = profile.listeners[i] as Listener;
          if (l.backlog !== value) {
            out.push(problem(`listeners[${i}].backlog`, l.backlog, "nginx-backlog-once",
              `conflicts with listeners[${first}] on the same address ${address} (backlog ${value}): one socket has one backlog`,
              `use ${value} on every listener of ${address}, or give it on one listener only`));
          }
        }
      }
      return out;
    },
  },
  {
    id: "nginx-default-server-once",
    description: "At most one listener per nginx address:port is the default_server.",
    reason: "nginx rejects 'a duplicate default server for ...' (ngx_http_add_addresses).",
    check: (profile) => {
      const out: Problem[] = [];
      for (const [address, idx] of listenersByAddress(profile)) {
        const defaults = idx.filter((i) => (profile.listeners[i] as Listener).defaultServer);
        for (const i of defaults.slice(1)) {
          out.push(problem(`listeners[${i}].defaultServer`, true, "nginx-default-server-once",
            `listeners[${defaults[0]}] is already the default server for ${address}`,
            "mark only one listener per address as defaultServer"));
        }
      }
      return out;
    },
  },
  {
    id: "nginx-server-name-unique",
    description: "A server name appears once per nginx address:port.",
    reason: "nginx ignores the later block ('conflicting server name ... ignored'), so its pool would never be reached.",
    check: (profile) => {
      const out: Problem[] = [];
      for (const [address, idx] of listenersByAddress(profile)) {
        const seen = new Map<string, number>();
        for (const i of idx) {
          (profile.listeners[i] as Listener).serverNames.forEach((n, j) => {
            const k = n.toLowerCase();
            const prev = seen.get(k);
            if (prev !== undefined && prev !== i) {
              out.push(problem(`listeners[${i}].serverName[${j}]`, n, "nginx-server-name-unique",
                `is already served on ${address} by listeners[${prev}]`, "use each server name once per address"));
            } else seen.set(k, i);
          });
        }
      }
      return out;
    },
  },
  {
    id: "pm-consistency",
    description: "php-fpm process-manager settings are consistent (the checks php-fpm itself makes at start).",
    reason: "php-fpm refuses to start otherwise (fpm_conf.c: max_children > 0; min_spare <= max_spare <= max_children; min_spare <= start_servers <= max_spare; process_idle_timeout > 0).",
    check: (profile) => profile.pools.flatMap((p, i) => pmProblems(p.pm, `pools[${i}].pm`)),
  },
  {
    id: "safe-name",
    description: "Profile and pool names match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}.",
    reason: "Names become ini sections, file names and comments: no newline, [ ] ; = or / can slip in.",
    check: (profile) => [
      ...collect((ps) => checkPattern(ps, "name", profile.name, NAME_PATTERN, "safe-name", "the profile name", "use letters, digits, _ . -"), "safe-name"),
      ...profile.pools.flatMap((p, i) => collect((ps) => checkPattern(ps, `pools[${i}].name`, p.name, NAME_PATTERN, "safe-name", "the pool name", "use letters, digits, _ . -"), "safe-name")),
    ],
  },
  {
    id: "safe-account",
    description: "Users and groups match [a-z_][a-z0-9_-]{0,31}.",
    reason: "They are written unquoted into ini files; the pattern is Debian's NAME_REGEX style and excludes every separator.",
    check: (profile) => profile.pools.flatMap((p, i) =>
      (["user", "group", "listenOwner", "listenGroup"] as const).flatMap((f) =>
        collect((ps) => checkPattern(ps, `pools[${i}].${f}`, p[f], ACCOUNT_PATTERN, "safe-account", `the ${f}`, "use a system account name such as www-data"), "safe-account"))),
  },
  {
    id: "socket-mode",
    description: "listen.mode is an octal mode such as 0660.",
    reason: "php-fpm parses it as octal (strtoul base 8); anything else is refused or means something else.",
    check: (profile) => profile.pools.flatMap((p, i) =>
      collect((ps) => checkPattern(ps, `pools[${i}].listenMode`, p.listenMode, /^0[0-7]{3}$/, "socket-mode", "listen.mode", "write four octal digits such as 0660"), "socket-mode")),
  },
  {
    id: "safe-path",
    description: "Socket paths and document roots are plain absolute paths.",
    reason: "Paths are written unquoted into ini and nginx files: no whitespace, ; { } [ ] = quotes, $ or .. segments.",
    check: (profile) => [
      ...profile.pools.flatMap((p, i) => p.listen.kind === "unix" ? collect((ps) => checkAbsolutePath(ps, `pools[${i}].listen`, (p.listen as { path: string }).path, "the socket path"), "safe-path") : []),
      ...profile.listeners.flatMap((l, i) => collect((ps) => checkAbsolutePath(ps, `listeners[${i}].root`, l.root, "the document root"), "safe-path")),
    ],
  },
  {
    id: "unix-socket-path",
    description: "A unix socket path fits sun_path (<= 107 bytes), has no unix: prefix and is not under /tmp or /var/tmp.",
    reason: "sun_path holds 108 bytes with the NUL and php-fpm refuses longer paths; php-fpm's upstream unit has PrivateTmp=true, so a socket in /tmp is invisible to nginx (the incident's /tmp/php-cgi.sock).",
    check: (profile) => profile.pools.flatMap((p, i) => {
      if (p.listen.kind !== "unix") return [];
      const bad = unixSocketPathProblem(p.listen.path);
      return bad ? [problem(`pools[${i}].listen`, p.listen.path, "unix-socket-path", `the socket path ${bad.message}`, bad.fix)] : [];
    }),
  },
  {
    id: "tcp-endpoint",
    description: "TCP addresses are IP literals with a port in 1..65535; nginx listeners name an address family.",
    reason: "Sockets are verified against ss output, which shows addresses; ports outside 1..65535 do not exist.",
    check: (profile) => {
      const out: Problem[] = [];
      const ok = (e: TcpEndpoint, program: "php-fpm" | "nginx") => {
        const parsed = parseTcpEndpoint(formatEndpoint(e), program);
        return "port" in parsed && parsed.port === e.port && parsed.host === e.host && parsed.family === e.family;
      };
      profile.pools.forEach((p, i) => {
        if (p.listen.kind === "tcp" && !ok(p.listen.endpoint, "php-fpm")) {
          out.push(problem(`pools[${i}].listen`, p.listen.endpoint, "tcp-endpoint", "is not a valid TCP listen address", "use IPV4:PORT, [IPV6]:PORT or PORT"));
        }
      });
      profile.listeners.forEach((l, i) => {
        if (!ok(l.listen, "nginx") || l.address !== formatEndpoint(l.listen)) {
          out.push(problem(`listeners[${i}].listen`, l.listen, "tcp-endpoint", "is not a valid nginx listen address", "use IPV4:PORT, [IPV6]:PORT or PORT"));
        }
      });
      return out;
    },
  },
  {
    id: "server-name",
    description: "nginx server names are host names, wildcard names or _ (no regular expressions).",
    reason: "They are written unquoted into the server block: no whitespace, ; { } or quotes.",
    check: (profile) => profile.listeners.flatMap((l, i) => l.serverNames.flatMap((n, j) =>
      collect((ps) => checkPattern(ps, `listeners[${i}].serverName[${j}]`, n, SERVER_NAME_PATTERN, "server-name", "the server name", "use a host name such as example.com or *.example.com"), "server-name"))),
  },
  ...(["ini-key", "ini-value", "owned-directive"] as const).map((id): Rule => ({
    id,
    description: {
      "ini-key": "Extra php-fpm directive keys are lower-case dotted names or env/php_value/php_admin_value/php_flag/php_admin_flag[NAME].",
      "ini-value": "Extra php-fpm directive values use only letters, digits, space and _ . / : , @ % + * # -.",
      "owned-directive": "Extra php-fpm directives cannot set keys the profile owns (listen, listen.*, user, group, pm, pm.*, include).",
    }[id],
    reason: {
      "ini-key": "A key is written at the start of an ini line: a newline or [ could open a new pool section, = or ; would change the line.",
      "ini-value": "php-fpm parses values with PHP's ini scanner: ; starts a comment, quotes, $ and {} interpolate, & | ^ ~ ! ( ) are operators, a newline starts a new line.",
      "owned-directive": "php-fpm keeps the last value of a repeated key (matched case-insensitively), so an extra directive would silently replace the profile's listen.backlog, socket or pm settings.",
    }[id],
    check: (profile: BacklogProfile) => profile.pools.flatMap((p, i) => p.extra.flatMap((d) =>
      collect((ps) => checkExtraDirective(ps, `pools[${i}].extra[${JSON.stringify(d.key)}]`, d.key, d.value), id))),
  })),
]);

/**
 * Rule ids that only the input check reports (they concern the shape of the input, which a
 * derived profile no longer has). Every other id in a {@link Problem} is one of {@link rules}.
 */
export const INPUT_RULES: Readonly<Record<string, string>> = Object.freeze({
  required: "A required field is missing (profile name and backlog, pool name and listen, listener listen and pool).",
  type: "A field has the wrong type (object, array, boolean expected).",
  "unknown-field": "A field is not part of the input (usually a typo); it is rejected rather than ignored.",
  "mode-value": "mode is \"atLeast\" or \"exact\".",
  "netdev-opt-in": "net.core.netdev_max_backlog is managed only as { value, machineGlobal: true }: it is global to the machine.",
  "listen-address": "A TCP listen address is PORT, IPV4:PORT or [IPV6]:PORT (nginx also *:PORT), IP literals only.",
  "pm-style": "pm.style is dynamic, static or ondemand.",
  "pm-unused-setting": "A pm setting is given for a style that ignores it (e.g. minSpareServers with static).",
  "unix-only-setting": "listenOwner/listenGroup/listenMode are given for a pool that listens on TCP.",
  "host-value": "A host value passed to kernelTargets/render/expectedValues is a whole number 0..2147483647 of a managed key.",
});

/** Run every rule over a derived profile; returns all problems (empty when it is sound). */
export function checkProfile(profile: BacklogProfile): Problem[] {
  return rules.flatMap((r) => r.check(profile));
}

/** php-fpm's own process-manager checks, as problems under rule `pm-consistency`. */
function pmProblems(pm: Pm, base: string): Problem[] {
  const out: Problem[] = [];
  const add = (field: string, value: unknown, message: string, fix: string) =>
    out.push(problem(`${base}.${field}`, value, "pm-consistency", message, fix));
  if (!inRange(pm.maxChildren, LIMITS.pmServers)) {
    add("maxChildren", pm.maxChildren, `pm.max_children must be between ${LIMITS.pmServers.min} and ${LIMITS.pmServers.max}`, "give a positive whole number");
  }
  if (!inRange(pm.maxRequests, LIMITS.pmMaxRequests)) {
    add("maxRequests", pm.maxRequests, `pm.max_requests must be between 0 and ${LIMITS.pmMaxRequests.max}`, "give 0 (never recycle) or a positive whole number");
  }
  if (pm.style === "ondemand" && !inRange(pm.processIdleTimeoutSeconds, LIMITS.pmIdleSeconds)) {
    add("processIdleTimeoutSeconds", pm.processIdleTimeoutSeconds, `pm.process_idle_timeout must be between 1 and ${LIMITS.pmIdleSeconds.max} seconds`, "give e.g. 10");
  }
  if (pm.style === "dynamic") {
    const { maxChildren, startServers, minSpareServers, maxSpareServers } = pm;
    for (const [f, v] of [["startServers", startServers], ["minSpareServers", minSpareServers], ["maxSpareServers", maxSpareServers]] as const) {
      if (!inRange(v, LIMITS.pmServers)) add(f, v, `must be between ${LIMITS.pmServers.min} and ${LIMITS.pmServers.max}`, "give a positive whole number");
    }
    if (out.length > 0) return out;
    if (maxSpareServers > maxChildren) {
      add("maxSpareServers", maxSpareServers, `pm.max_spare_servers (${maxSpareServers}) cannot be greater than pm.max_children (${maxChildren}); php-fpm refuses to start`,
        `lower maxSpareServers to at most ${maxChildren} or raise maxChildren`);
    }
    if (minSpareServers > maxSpareServers) {
      add("minSpareServers", minSpareServers, `pm.min_spare_servers (${minSpareServers}) cannot be greater than pm.max_spare_servers (${maxSpareServers}); php-fpm refuses to start`,
        "make minSpareServers <= maxSpareServers");
    } else if (startServers < minSpareServers || startServers > maxSpareServers) {
      add("startServers", startServers, `pm.start_servers (${startServers}) must be between pm.min_spare_servers (${minSpareServers}) and pm.max_spare_servers (${maxSpareServers}); php-fpm refuses to start`,
        `use a value from ${minSpareServers} to ${maxSpareServers}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Input walking (field-level checks) and derivation

const PROFILE_FIELDS = ["name", "backlog", "somaxconn", "tcpMaxSynBacklog", "mode", "netdevMaxBacklog", "pools", "listeners"];
const POOL_FIELDS = ["name", "listen", "backlog", "user", "group", "listenOwner", "listenGroup", "listenMode", "pm", "extra"];
const PM_FIELDS = ["style", "maxChildren", "startServers", "minSpareServers", "maxSpareServers", "maxRequests", "processIdleTimeoutSeconds"];
const LISTENER_FIELDS = ["listen", "backlog", "serverName", "pool", "root", "defaultServer"];
const NETDEV_FIELDS = ["value", "machineGlobal"];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkObject(problems: Problems, path: string, value: unknown, allowed: readonly string[], what: string): value is Record<string, unknown> {
  if (!isRecord(value)) {
    problems.add(path || "(root)", value, "type", `${what} must be an object, got ${Array.isArray(value) ? "array" : value === null ? "null" : typeof value}`,
      `give ${what} as an object with the documented fields`);
    return false;
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const near = allowed.find((a) => a.toLowerCase() === key.toLowerCase() || a.toLowerCase().startsWith(key.toLowerCase().slice(0, 5)));
      problems.add(path === "" ? key : `${path}.${key}`, value[key], "unknown-field", `is not a field of ${what}`,
        near ? `did you mean ${near}? Known fields: ${allowed.join(", ")}` : `remove it; known fields: ${allowed.join(", ")}`);
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

/** A pool whose name and listen are valid, with the index it had in the input. */
interface DraftPool {
  readonly index: number;
  readonly pool: Omit<Pool, "backlog" | "backlogSource">;
  readonly backlog: number | undefined;
}

/** A listener whose listen and pool are valid, with the index it had in the input. */
interface DraftListener {
  readonly index: number;
  readonly listen: TcpEndpoint;
  readonly backlog: number | undefined;
  readonly serverNames: readonly string[];
  readonly defaultServer: boolean;
  readonly pool: string;
  readonly root: string;
}

interface Draft {
  readonly name: string;
  readonly mode: Mode;
  readonly backlog: number | undefined;
  readonly somaxconn: number | undefined;
  readonly tcpMaxSynBacklog: number | undefined;
  readonly netdev: number | undefined;
  readonly pools: readonly DraftPool[];
  readonly listeners: readonly DraftListener[];
}

function optionalInt(problems: Problems, path: string, value: unknown, range: { min: number; max: number }, rule: string, what: string): number | undefined {
  return value === undefined ? undefined : checkInt(problems, path, value, range, rule, what);
}

function accountField(problems: Problems, path: string, value: unknown, what: string): string {
  if (value === undefined) return DEFAULTS.account;
  return checkPattern(problems, path, value, ACCOUNT_PATTERN, "safe-account", what,
    "use a system account name such as www-data (lower case, digits, _ and -)") ?? DEFAULTS.account;
}

function readPm(problems: Problems, path: string, value: unknown): Pm {
  const d = DEFAULTS.pm;
  if (value === undefined) {
    return { style: "dynamic", maxChildren: d.maxChildren, startServers: d.startServers, minSpareServers: d.minSpareServers, maxSpareServers: d.maxSpareServers, maxRequests: d.maxRequests };
  }
  const before = problems.count;
  if (!checkObject(problems, path, value, PM_FIELDS, "pm")) return readPm(problems, path, undefined);
  let style: PmStyle = d.style;
  if (value.style !== undefined) {
    if (value.style === "dynamic" || value.style === "static" || value.style === "ondemand") style = value.style;
    else problems.add(`${path}.style`, value.style, "pm-style", "must be \"dynamic\", \"static\" or \"ondemand\"", "pick one of the three php-fpm process managers");
  }
  const int = (field: string, range: { min: number; max: number }, what: string) =>
    optionalInt(problems, `${path}.${field}`, value[field], range, "pm-consistency", what);
  const maxChildren = int("maxChildren", LIMITS.pmServers, "pm.max_children") ?? d.maxChildren;
  const maxRequests = int("maxRequests", LIMITS.pmMaxRequests, "pm.max_requests") ?? d.maxRequests;
  const only = (field: string, styles: PmStyle[]) => {
    if (value[field] !== undefined && !styles.includes(style)) {
      problems.add(`${path}.${field}`, value[field], "pm-unused-setting", `applies only to pm = ${styles.join(" or ")}, not ${style}; php-fpm would ignore it`,
        `remove it, or set pm.style to ${styles[0]}`);
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
    const maxSpare = (dynamicOk ? int("maxSpareServers", LIMITS.pmServers, "pm.max_spare_servers") : undefined) ?? Math.max(minSpare, Math.min(d.maxSpareServers, maxChildren));
    const start = (dynamicOk ? int("startServers", LIMITS.pmServers, "pm.start_servers") : undefined) ?? Math.min(Math.max(d.startServers, minSpare), maxSpare);
    pm = { style: "dynamic", maxChildren, startServers: start, minSpareServers: minSpare, maxSpareServers: maxSpare, maxRequests };
  }
  if (problems.count === before) problems.addAll(pmProblems(pm, path));
  return pm;
}

function readPoolListen(problems: Problems, path: string, value: unknown): PoolListen | undefined {
  const fix = "give a unix socket path such as /run/php/app.sock or a TCP address such as 127.0.0.1:9000";
  if (typeof value !== "string" && typeof value !== "number") {
    problems.add(path, value, value === undefined ? "required" : "type",
      value === undefined ? "is required" : `must be a string or a port number, got ${value === null ? "null" : typeof value}`, fix);
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

function readPool(problems: Problems, path: string, value: unknown): { pool: Omit<Pool, "backlog" | "backlogSource"> | undefined; backlog: number | undefined; validName: string | undefined } | undefined {
  if (!checkObject(problems, path, value, POOL_FIELDS, "a pool")) return undefined;
  const name = value.name === undefined
    ? (problems.add(`${path}.name`, undefined, "required", "is required", "give the pool a name such as app"), undefined)
    : checkPattern(problems, `${path}.name`, value.name, NAME_PATTERN, "safe-name", "the pool name", "use 1-64 letters, digits, _ . - starting with a letter or digit");
  const listen = readPoolListen(problems, `${path}.listen`, value.listen);
  const backlog = optionalInt(problems, `${path}.backlog`, value.backlog, LIMITS.backlog, "backlog-range", "listen.backlog");
  const user = accountField(problems, `${path}.user`, value.user, "the user");
  const group = accountField(problems, `${path}.group`, value.group, "the group");
  const listenOwner = accountField(problems, `${path}.listenOwner`, value.listenOwner, "listen.owner");
  const listenGroup = accountField(problems, `${path}.listenGroup`, value.listenGroup, "listen.group");
  let listenMode: string = DEFAULTS.listenMode;
  if (value.listenMode !== undefined) {
    const m = checkPattern(problems, `${path}.listenMode`, value.listenMode, SOCKET_MODE_PATTERN, "socket-mode", "listen.mode",
      "write an octal mode as a string, e.g. \"0660\" (a number like 660 would be read as decimal)");
    if (m !== undefined) listenMode = m.padStart(4, "0");
  }
  if (listen?.kind === "tcp") {
    for (const f of ["listenOwner", "listenGroup", "listenMode"]) {
      if (value[f] !== undefined) {
        problems.add(`${path}.${f}`, value[f], "unix-only-setting", "applies only to unix sockets; this pool listens on TCP",
          "remove it, or listen on a unix socket path");
      }
    }
  }
  const pm = readPm(problems, `${path}.pm`, value.pm);
  const extra: ExtraDirective[] = [];
  if (value.extra !== undefined) {
    if (!isRecord(value.extra)) {
      problems.add(`${path}.extra`, value.extra, "type", "must be an object of directive: value", "give e.g. { \"php_admin_value[memory_limit]\": \"128M\" }");
    } else {
      for (const key of Object.keys(value.extra).sort()) {
        const v = checkExtraDirective(problems, `${path}.extra[${JSON.stringify(key)}]`, key, value.extra[key]);
        if (v !== undefined) extra.push({ key, value: v });
      }
    }
  }
  if (name === undefined || listen === undefined) return { pool: undefined, backlog, validName: name };
  return { pool: { name, listen, user, group, listenOwner, listenGroup, listenMode, pm, extra }, backlog, validName: name };
}

function readListener(problems: Problems, path: string, value: unknown, poolNames: ReadonlySet<string>): DraftListener | undefined {
  if (!checkObject(problems, path, value, LISTENER_FIELDS, "a listener")) return undefined;
  let listen: TcpEndpoint | undefined;
  if (value.listen === undefined) problems.add(`${path}.listen`, undefined, "required", "is required", "give an address such as 80, 127.0.0.1:8080 or [::]:80");
  else if (typeof value.listen !== "string" && typeof value.listen !== "number") {
    problems.add(`${path}.listen`, value.listen, "type", `must be a string or a port number, got ${value.listen === null ? "null" : typeof value.listen}`, "give an address such as 80, 127.0.0.1:8080 or [::]:80");
  } else if (typeof value.listen === "string" && value.listen.startsWith("unix:")) {
    problems.add(`${path}.listen`, value.listen, "listen-address", "nginx unix-socket listeners are not supported: a listener is a TCP address", "use a TCP address such as 127.0.0.1:8080");
  } else {
    const parsed = parseTcpEndpoint(value.listen, "nginx");
    if ("message" in parsed) {
      const unsafe = typeof value.listen === "string" ? unsafeCharacters(value.listen.replace(/^\[[^\]\s]*\]/, "")) : undefined;
      problems.add(`${path}.listen`, value.listen, "listen-address", `the listen address ${unsafe ?? parsed.message}`,
        unsafe ? "use IPV4:PORT, [IPV6]:PORT or PORT" : parsed.fix);
    } else listen = parsed;
  }
  const backlog = optionalInt(problems, `${path}.backlog`, value.backlog, LIMITS.backlog, "backlog-range", "nginx backlog=");
  const serverNames: string[] = [];
  if (value.serverName !== undefined) {
    const names = Array.isArray(value.serverName) ? value.serverName : [value.serverName];
    const many = Array.isArray(value.serverName);
    names.forEach((n: unknown, j: number) => {
      const ok = checkPattern(problems, many ? `${path}.serverName[${j}]` : `${path}.serverName`, n, SERVER_NAME_PATTERN, "server-name",
        "the server name", "use a host name such as example.com, *.example.com or _ (no regular expressions)");
      if (ok !== undefined && ok.length <= 253) serverNames.push(ok);
      else if (ok !== undefined) problems.add(`${path}.serverName`, n, "server-name", "is longer than 253 characters", "use a shorter host name");
    });
  }
  let pool: string | undefined;
  if (value.pool === undefined) problems.add(`${path}.pool`, undefined, "required", "is required", "name the php-fpm pool this listener forwards to");
  else {
    pool = checkPattern(problems, `${path}.pool`, value.pool, NAME_PATTERN, "safe-name", "the pool name", "name one of the profile's pools");
    if (pool !== undefined && !poolNames.has(pool)) {
      problems.add(`${path}.pool`, pool, "listener-pool-exists", `names no pool of this profile (pools: ${[...poolNames].join(", ") || "none"})`,
        "use the name of one of the profile's pools, or add the pool");
      pool = undefined;
    }
  }
  const root = value.root === undefined ? DEFAULTS.root : checkAbsolutePath(problems, `${path}.root`, value.root, "the document root") ?? DEFAULTS.root;
  let defaultServer = false;
  if (value.defaultServer !== undefined) {
    if (typeof value.defaultServer !== "boolean") {
      problems.add(`${path}.defaultServer`, value.defaultServer, "type", `must be true or false, got ${typeof value.defaultServer}`, "write true or false");
    } else defaultServer = value.defaultServer;
  }
  if (listen === undefined || pool === undefined) return undefined;
  return { index: -1, listen, backlog, serverNames, defaultServer, pool, root };
}

function readInput(problems: Problems, input: unknown): Draft | undefined {
  if (!checkObject(problems, "", input, PROFILE_FIELDS, "the profile")) return undefined;
  let name = "invalid";
  if (input.name === undefined) problems.add("name", undefined, "required", "is required", "give the profile a name such as web");
  else name = checkPattern(problems, "name", input.name, NAME_PATTERN, "safe-name", "the profile name", "use 1-64 letters, digits, _ . - starting with a letter or digit") ?? "invalid";
  let backlog: number | undefined;
  if (input.backlog === undefined) problems.add("backlog", undefined, "required", "is required", "give the accept-queue length every listener should get, e.g. 1024");
  else backlog = checkInt(problems, "backlog", input.backlog, LIMITS.backlog, "backlog-range", "the profile backlog");
  const somaxconn = optionalInt(problems, "somaxconn", input.somaxconn, LIMITS.somaxconn, "somaxconn-range", "net.core.somaxconn");
  const tcpMaxSynBacklog = optionalInt(problems, "tcpMaxSynBacklog", input.tcpMaxSynBacklog, LIMITS.tcpMaxSynBacklog, "syn-backlog-range", "net.ipv4.tcp_max_syn_backlog");
  let mode: Mode = DEFAULTS.mode;
  if (input.mode !== undefined) {
    if (input.mode === "atLeast" || input.mode === "exact") mode = input.mode;
    else problems.add("mode", input.mode, "mode-value", "must be \"atLeast\" or \"exact\"", "use \"atLeast\" (never lower a larger host value) or \"exact\"");
  }
  let netdev: number | undefined;
  if (input.netdevMaxBacklog !== undefined) {
    if (typeof input.netdevMaxBacklog === "number") {
      problems.add("netdevMaxBacklog", input.netdevMaxBacklog, "netdev-opt-in",
        "net.core.netdev_max_backlog is a NIC queue global to the machine (not per network namespace, not a listen queue); it needs an explicit opt-in",
        `write { value: ${input.netdevMaxBacklog}, machineGlobal: true } if you really mean to change it for the whole machine`);
    } else if (checkObject(problems, "netdevMaxBacklog", input.netdevMaxBacklog, NETDEV_FIELDS, "netdevMaxBacklog")) {
      if (input.netdevMaxBacklog.machineGlobal !== true) {
        problems.add("netdevMaxBacklog.machineGlobal", input.netdevMaxBacklog.machineGlobal, "netdev-opt-in",
          "must be true: net.core.netdev_max_backlog is global to the machine, not per network namespace",
          "set machineGlobal: true to acknowledge it, or drop netdevMaxBacklog");
      }
      netdev = input.netdevMaxBacklog.value === undefined
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
    if (r?.pool) pools.push({ index, pool: r.pool, backlog: r.backlog });
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

function derive(d: Draft & { backlog: number }): BacklogProfile {
  const pools: Pool[] = d.pools.map((p) => ({
    ...p.pool,
    backlog: p.backlog ?? d.backlog,
    backlogSource: p.backlog === undefined ? "profile" : "pool",
  }));
  const groupBacklog = new Map<string, number>();
  const emitted = new Set<string>();
  for (const l of d.listeners) {
    const a = formatEndpoint(l.listen);
    if (l.backlog !== undefined && !groupBacklog.has(a)) groupBacklog.set(a, l.backlog);
  }
  const listeners: Listener[] = d.listeners.map((l) => {
    const address = formatEndpoint(l.listen);
    const shared = groupBacklog.get(address);
    const emitsBacklog = !emitted.has(address);
    emitted.add(address);
    const pool = pools.find((p) => p.name === l.pool) as Pool;
    return {
      listen: l.listen,
      address,
      backlog: l.backlog ?? shared ?? d.backlog,
      backlogSource: l.backlog !== undefined ? "listener" : shared !== undefined ? "address" : "profile",
      emitsBacklog,
      serverNames: l.serverNames,
      defaultServer: l.defaultServer,
      pool: l.pool,
      fastcgiPass: fastcgiTarget(pool.listen),
      root: l.root,
    };
  });
  const largest = Math.max(d.backlog, ...pools.map((p) => p.backlog), ...listeners.map((l) => l.backlog));
  const somaxconn = d.somaxconn ?? largest;
  const sysctls: Sysctls = d.netdev === undefined
    ? { [SOMAXCONN]: somaxconn, [TCP_MAX_SYN_BACKLOG]: d.tcpMaxSynBacklog ?? somaxconn }
    : { [SOMAXCONN]: somaxconn, [TCP_MAX_SYN_BACKLOG]: d.tcpMaxSynBacklog ?? somaxconn, [NETDEV_MAX_BACKLOG]: d.netdev };
  return {
    name: d.name,
    mode: d.mode,
    backlog: d.backlog,
    sysctls,
    sources: {
      somaxconn: d.somaxconn === undefined ? "derived" : "override",
      tcpMaxSynBacklog: d.tcpMaxSynBacklog === undefined ? "derived" : "override",
    },
    pools,
    listeners,
  };
}

/** Rewrite `pools[k]`/`listeners[k]` (draft indexes) to the indexes the input used. */
function remap(p: Problem, pools: readonly DraftPool[], listeners: readonly DraftListener[]): Problem {
  const fix = (s: string) => s.replace(/\b(pools|listeners)\[(\d+)\]/g, (_m, list: string, k: string) => {
    const src = list === "pools" ? pools[Number(k)]?.index : listeners[Number(k)]?.index;
    return `${list}[${src ?? k}]`;
  });
  return { ...p, path: fix(p.path), message: fix(p.message), fix: fix(p.fix) };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function evaluate(input: unknown): { problems: readonly Problem[]; profile: BacklogProfile | undefined } {
  const problems = new Problems();
  const draft = readInput(problems, input);
  if (draft === undefined || draft.backlog === undefined) return { problems: problems.all, profile: undefined };
  const profile = derive({ ...draft, backlog: draft.backlog });
  const seen = new Set(problems.all.map((p) => `${p.path}\u0000${p.rule}`));
  for (const p of checkProfile(profile)) {
    const q = remap(p, draft.pools, draft.listeners);
    const key = `${q.path}\u0000${q.rule}`;
    if (!seen.has(key)) {
      seen.add(key);
      problems.addAll([q]);
    }
  }
  return { problems: problems.all, profile: problems.count === 0 ? deepFreeze(profile) : undefined };
}

/**
 * Validate a profile input without throwing: every problem, in input order (field checks
 * first, then cross-field rules over the items whose own fields are valid). Empty when
 * {@link defineProfile} would succeed.
 */
export function validateProfile(input: unknown): readonly Problem[] {
  return evaluate(input).problems;
}

/**
 * Validate `input`, apply defaults, derive every value and check every rule.
 *
 * @returns a deeply frozen {@link BacklogProfile}.
 * @throws {@link ProfileError} listing every problem (field path, value, rule, fix) when
 *   anything is wrong; nothing is adjusted silently.
 *
 * @example
 * const profile = defineProfile({
 *   name: "web", backlog: 1024,
 *   pools: [{ name: "app", listen: "/run/php/app.sock" }],
 *   listeners: [{ listen: 80, serverName: "example.com", pool: "app" }],
 * });
 * profile.sysctls["net.core.somaxconn"]; // 1024
 */
export function defineProfile(input: ProfileInput): BacklogProfile {
  const { problems, profile } = evaluate(input);
  if (profile === undefined || problems.length > 0) {
    const name = isRecord(input) && typeof input.name === "string" && NAME_PATTERN.test(input.name) ? ` "${input.name}"` : "";
    throw new ProfileError(problems, `backlog profile${name}`);
  }
  DEFINED.add(profile);
  return profile;
}

/** Profiles {@link defineProfile} made: the only derived profiles taken without checking them again. */
const DEFINED = new WeakSet<object>();

/**
 * The profile for a component argument: a {@link BacklogProfile} that {@link defineProfile} made is
 * taken as it is; anything else is validated and derived as a {@link ProfileInput}. So a hand-made
 * object shaped like a derived profile (frozen or not) never skips the rules.
 *
 * @throws {@link ProfileError} listing every problem.
 */
export function toProfile(input: ProfileInput | BacklogProfile): BacklogProfile {
  return typeof input === "object" && input !== null && DEFINED.has(input) ? (input as BacklogProfile) : defineProfile(input as ProfileInput);
}

/** `true` when `key` is an extra-directive key the profile owns (case-insensitive). */
export function isOwnedPoolKey(key: string): boolean {
  return OWNED_POOL_KEYS.includes(key.toLowerCase());
}
