/**
 * The backlog profile's types and defaults: the sysctl keys and the modes, what a profile can be
 * given (`ProfileInput` and its parts), what `defineProfile` returns (`BacklogProfile` and its
 * parts), and `DEFAULTS`. Types and constants only, no logic.
 *
 * @packageDocumentation
 */

import type { TcpEndpoint } from "../validation";

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
export type PoolListen = { readonly kind: "unix"; readonly path: string } | { readonly kind: "tcp"; readonly endpoint: TcpEndpoint };

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
