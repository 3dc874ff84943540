/**
 * Derivation: from the walker's checked draft (`Draft`, see walk.ts) to a `BacklogProfile`
 * (inherited backlogs, one nginx backlog per address written once, somaxconn and the SYN queue),
 * and what the rules, render and verify read off a derived profile: `fastcgiTarget`,
 * `formatPoolListen`, `appBacklogs`, and `kernelTargets` (the values a host should get, given its
 * values before).
 *
 * @packageDocumentation
 */

import { type Problem, ProfileError, Problems, type TcpEndpoint, checkInt, formatEndpoint } from "../validation";
import {
  type BacklogProfile,
  type KernelValues,
  type Listener,
  MACHINE_GLOBAL_SYSCTLS,
  type Mode,
  NETDEV_MAX_BACKLOG,
  type Pool,
  type PoolListen,
  SOMAXCONN,
  type SysctlKey,
  type Sysctls,
  TCP_MAX_SYN_BACKLOG,
} from "./types";

// ---------------------------------------------------------------------------------------
// Helpers shared by derivation, rules, render and verify

/**
 * The nginx `fastcgi_pass` target for a pool: `unix:PATH`, or the TCP address with a
 * wildcard replaced by loopback (`127.0.0.1`, `[::1]` for `[::]`).
 *
 * @param listen - where the pool listens.
 */
export function fastcgiTarget(listen: PoolListen): string {
  if (listen.kind === "unix") return `unix:${listen.path}`;
  const e = listen.endpoint;
  if (e.host === null || e.host === "0.0.0.0") return `127.0.0.1:${e.port}`;
  if (e.host === "::") return `[::1]:${e.port}`;
  return formatEndpoint(e);
}

/**
 * Text form of a pool's `listen` value as php-fpm reads it.
 *
 * @param listen - where the pool listens.
 */
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

/**
 * Every application backlog of a profile: pools first, then listeners.
 *
 * @param profile - a derived profile.
 */
export function appBacklogs(profile: BacklogProfile): AppBacklog[] {
  return [
    ...profile.pools.map(
      (p, i): AppBacklog => ({
        path: `pools[${i}].backlog`,
        backlog: p.backlog,
        explicit: p.backlogSource === "pool",
        transport: p.listen.kind,
        program: "php-fpm",
      }),
    ),
    ...profile.listeners.map(
      (l, i): AppBacklog => ({
        path: `listeners[${i}].backlog`,
        backlog: l.backlog,
        explicit: l.backlogSource === "listener",
        transport: "tcp",
        program: "nginx",
      }),
    ),
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
 * @param profile - a derived profile.
 * @param hostBefore - the host's values before the first deployment (e.g. parsed from
 *   /proc/sys). Each must be a whole number 0..2147483647, else a {@link ProfileError} is thrown.
 */
export function kernelTargets(profile: BacklogProfile, hostBefore?: KernelValues): KernelTarget[] {
  const problems = new Problems();
  for (const [key, value] of Object.entries(hostBefore ?? {})) {
    if (value === undefined) continue;
    if (!(key === SOMAXCONN || key === TCP_MAX_SYN_BACKLOG || key === NETDEV_MAX_BACKLOG)) {
      problems.add(
        `hostBefore[${JSON.stringify(key)}]`,
        value,
        "host-value",
        "is not a sysctl this library manages",
        `use one of ${SOMAXCONN}, ${TCP_MAX_SYN_BACKLOG}, ${NETDEV_MAX_BACKLOG}`,
      );
      continue;
    }
    checkInt(problems, `hostBefore[${JSON.stringify(key)}]`, value, { min: 0, max: 2147483647 }, "host-value", "a host's kernel value");
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
// The draft (what the walker hands over) and derivation

/** A pool whose name and listen are valid, with the index it had in the input. */
export interface DraftPool {
  /** Index in the input's `pools`. */
  readonly index: number;
  /** The pool, defaults applied, without its backlog. */
  readonly pool: Omit<Pool, "backlog" | "backlogSource">;
  /** `listen.backlog` as given (valid), or `undefined` to inherit the profile's. */
  readonly backlog: number | undefined;
  /**
   * php-fpm's pm consistency problems over settings where a bad field was replaced by its
   * default (empty when the pm's fields were valid: then the walker reported them in place).
   * `defineProfile` reports them after the cross-field rules, where the `pm-consistency` rule
   * has always reported them.
   */
  readonly pmFollowUp: readonly Problem[];
}

/** A listener whose listen and pool are valid, with the index it had in the input. */
export interface DraftListener {
  /** Index in the input's `listeners`. */
  readonly index: number;
  /** The parsed nginx address. */
  readonly listen: TcpEndpoint;
  /** `backlog=` as given (valid), or `undefined` to share the address's or inherit the profile's. */
  readonly backlog: number | undefined;
  /** Valid server names. */
  readonly serverNames: readonly string[];
  /** Whether it is the address's `default_server`. */
  readonly defaultServer: boolean;
  /** Name of a kept pool. */
  readonly pool: string;
  /** Document root (default applied). */
  readonly root: string;
}

/**
 * What the walker hands to {@link derive}: every valid field with defaults applied; a bad optional
 * field is `undefined` (derived instead), an item with a bad name, listen or pool is left out.
 */
export interface Draft {
  /** Profile name (`"invalid"` when it was bad: the problem is recorded, the draft never becomes a profile). */
  readonly name: string;
  /** Mode (default `atLeast`). */
  readonly mode: Mode;
  /** The profile backlog, or `undefined` when missing or bad (then nothing is derived). */
  readonly backlog: number | undefined;
  /** Explicit `net.core.somaxconn`, or `undefined` to derive it. */
  readonly somaxconn: number | undefined;
  /** Explicit `net.ipv4.tcp_max_syn_backlog`, or `undefined` to derive it. */
  readonly tcpMaxSynBacklog: number | undefined;
  /** Opted-in `net.core.netdev_max_backlog`, or `undefined` (not managed). */
  readonly netdev: number | undefined;
  /** Kept pools, in input order. */
  readonly pools: readonly DraftPool[];
  /** Kept listeners, in input order. */
  readonly listeners: readonly DraftListener[];
}

/**
 * Derive a profile from a draft: each pool's and listener's backlog (given, shared by the
 * address, or the profile's), which listener of an address writes `backlog=`, `fastcgi_pass`,
 * somaxconn (largest application backlog unless given) and the SYN queue (somaxconn unless
 * given). Checks nothing: the walker checked the fields, the rules check the result.
 *
 * @param d - the walker's draft, with a valid profile backlog. Item indexes in the result are
 *   the draft's, not the input's (see `DraftPool.index`).
 */
export function derive(d: Draft & { backlog: number }): BacklogProfile {
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
  const sysctls: Sysctls =
    d.netdev === undefined
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
