/**
 * pulumi-backlog as a Pulumi component provider, so that programs in every Pulumi language (YAML,
 * Python, Go, C#, Java) can use `BacklogHost` and `BacklogFleet`.
 *
 * The engine starts this directory as a plugin (PulumiPlugin.yaml, `runtime: nodejs`); the Node.js
 * language host loads this file, finds the exported ComponentResource classes and serves them with
 * @pulumi/pulumi's `componentProviderHost`, which infers the package schema from their TypeScript
 * types. The package name `backlog` (package.json) makes the type tokens `backlog:index:<Class>`.
 *
 * Why a facade and not the library's classes themselves: schema inference accepts only plain
 * interfaces of strings, numbers, booleans, arrays, maps, enums and nested interfaces. The library's
 * TypeScript arguments use unions (`profile: ProfileInput | BacklogProfile`, `listen: string | number`,
 * `serverName: string | string[]`, `mode: "atLeast" | "exact"`), an intersection (`SshConnectionArgs`),
 * `readonly` arrays, the literal type `true`, `Omit<…>` inheritance and a map of resources as an
 * output, all of which the analyzer rejects or drops (see docs/api.md, "Other Pulumi languages").
 * These classes take the same arguments in schema-friendly shapes and build the library's own
 * component, unchanged, as their child: validation, probing, applying, verifying and restoring are
 * the library's, and the child records the derived profile that the policy pack reads.
 */
import * as pulumi from "@pulumi/pulumi";
import * as backlog from "pulumi-backlog";

/** How the profile's kernel values meet the values a host already has. */
export enum Mode {
  /** Never lower a kernel value the host already has above the profile (default). */
  AtLeast = "atLeast",
  /** Set exactly the profile's values, lower or higher. */
  Exact = "exact",
}

/** php-fpm process manager style (`pm`). */
export enum PmStyle {
  Dynamic = "dynamic",
  Static = "static",
  Ondemand = "ondemand",
}

/** Opt-in for `net.core.netdev_max_backlog`, which is global to the machine. */
export interface NetdevMaxBacklog {
  /** Packets queued on the input side per CPU, 1..2147483647. */
  value: number;
  /** Must be true: acknowledges that this key is global to the machine, not per network namespace. */
  machineGlobal: boolean;
}

/** php-fpm process manager settings (defaults: Debian's `www.conf`, clamped to maxChildren). */
export interface ProcessManager {
  /** `pm`. Default `dynamic`. */
  style?: PmStyle;
  /** `pm.max_children`, 1..65535. Default 5. */
  maxChildren?: number;
  /** `pm.start_servers` (dynamic only). Default 2. */
  startServers?: number;
  /** `pm.min_spare_servers` (dynamic only). Default 1. */
  minSpareServers?: number;
  /** `pm.max_spare_servers` (dynamic only). Default min(3, maxChildren). */
  maxSpareServers?: number;
  /** `pm.max_requests` (0 = never recycle a worker). Default 0. */
  maxRequests?: number;
  /** `pm.process_idle_timeout` in seconds (ondemand only), 1..86400. Default 10. */
  processIdleTimeoutSeconds?: number;
}

/** One php-fpm pool. */
export interface Pool {
  /** Pool name: ini section `[name]` and file `name.conf`. */
  name: string;
  /** Where the pool listens: an absolute unix socket path, or `IPV4:PORT`, `[IPV6]:PORT`, or a bare `PORT`. */
  listen: string;
  /** `listen.backlog`, 1..65535. Default: the profile's backlog. */
  backlog?: number;
  /** Worker user. Default `www-data`. */
  user?: string;
  /** Worker group. Default `www-data`. */
  group?: string;
  /** `listen.owner` of a unix socket. Default `www-data`. */
  listenOwner?: string;
  /** `listen.group` of a unix socket. Default `www-data`. */
  listenGroup?: string;
  /** `listen.mode` of a unix socket, octal string. Default `0660`. */
  listenMode?: string;
  /** Process manager settings. */
  pm?: ProcessManager;
  /** Extra pool directives (`php_admin_value[memory_limit]` → `128M`), rendered sorted by key. */
  extra?: Record<string, string>;
}

/** One nginx `server` block that forwards PHP requests to a pool. */
export interface Listener {
  /** nginx listen address: `PORT`, `*:PORT`, `IPV4:PORT` or `[IPV6]:PORT`. */
  listen: string;
  /** Name of the php-fpm pool (in this profile) that `.php` requests go to. */
  pool: string;
  /** `backlog=`, 1..65535. Default: the profile's backlog. */
  backlog?: number;
  /** `server_name` values. Default: none. */
  serverNames?: string[];
  /** Document root. Default `/var/www/html`. */
  root?: string;
  /** Add `default_server` to the listen directive. Default false. */
  defaultServer?: boolean;
}

/**
 * The backlog profile: the single source of truth for every listen-backlog setting of a host. It is
 * validated when the component is constructed, before any host is touched (plain values only).
 */
export interface Profile {
  /** Profile name, written into the generated files. */
  name: string;
  /** Accept-queue length wanted for every listener, 1..65535. */
  backlog: number;
  /** Explicit `net.core.somaxconn`, 1..65535. Default: the largest application backlog. */
  somaxconn?: number;
  /** Explicit `net.ipv4.tcp_max_syn_backlog`. Default: somaxconn. */
  tcpMaxSynBacklog?: number;
  /** `atLeast` (default) or `exact`. */
  mode?: Mode;
  /** Opt-in, machine-global `net.core.netdev_max_backlog`. Default: not managed. */
  netdevMaxBacklog?: NetdevMaxBacklog;
  /** php-fpm pools. */
  pools?: Pool[];
  /** nginx listeners. */
  listeners?: Listener[];
}

/** A bastion to hop through: its own address, user, key and pinned host key. */
export interface Bastion {
  /** Host name or IP address. */
  host: pulumi.Input<string>;
  /** SSH port. Default 22. */
  port?: pulumi.Input<number>;
  /** Login user. Default `root`. */
  user?: pulumi.Input<string>;
  /** Private key (OpenSSH or PEM). Pass a secret. */
  privateKey: pulumi.Input<string>;
  /** Passphrase of the private key. Pass a secret. */
  passphrase?: pulumi.Input<string>;
  /** The host's public key line (`ssh-ed25519 AAAA…`). Required unless insecureIgnoreHostKey. */
  hostKey?: pulumi.Input<string>;
  /** Accept any host key (throwaway hosts only; warned about on every run). Default false. */
  insecureIgnoreHostKey?: pulumi.Input<boolean>;
  /** Seconds per connection attempt, handshake included. Default 15. */
  dialTimeoutSeconds?: pulumi.Input<number>;
  /** Connection attempts before giving up. Default 5. */
  dialAttempts?: pulumi.Input<number>;
  /** Of a bastion: how many handshakes with it at once from one process. Default 8 (under sshd's MaxStartups 10). */
  maxStartups?: pulumi.Input<number>;
}

/** How to reach a host over SSH. The host key is pinned; the connection is kept as a secret. */
export interface Connection extends Bastion {
  /** Run the scripts through `sudo -n`. Default: true when user is not root. */
  sudo?: pulumi.Input<boolean>;
  /** A bastion to hop through. */
  proxy?: pulumi.Input<Bastion>;
}

/** File locations on the host (default: Debian 12). */
export interface HostPaths {
  /** Absolute path of the sysctl drop-in. Default `/etc/sysctl.d/zz-pulumi-backlog.conf`. */
  sysctlDropIn?: string;
  /** Directory php-fpm includes pool files from. Default `/etc/php/8.2/fpm/pool.d`. */
  phpFpmPoolDir?: string;
  /** The nginx file with the server blocks. Default `/etc/nginx/conf.d/pulumi-backlog.conf`. */
  nginxConf?: string;
}

/** Unit and binary names of php-fpm and nginx (default: Debian 12). */
export interface ServiceNames {
  /** systemd unit of php-fpm. Default `php8.2-fpm`. */
  phpFpmUnit?: string;
  /** php-fpm binary, used for `-t`. Default `php-fpm8.2`. */
  phpFpmBinary?: string;
  /** systemd unit of nginx. Default `nginx`. */
  nginxUnit?: string;
  /** nginx binary, used for `-t`. Default `nginx`. */
  nginxBinary?: string;
}

/** One row of a host's verification: a setting, the value the profile expects and what the host has. */
export interface VerificationRow {
  /** The setting, e.g. `net.core.somaxconn` or `php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock)`. */
  setting: string;
  /** Value the profile expects. */
  expected: number;
  /** Value read back from the host; absent when it could not be read (key unreadable, socket not listening). */
  effective?: number;
  /** Whether the effective value is the expected one. */
  ok: boolean;
}

/** Arguments of BacklogHost. */
export interface BacklogHostArgs {
  /** How to reach the host over SSH (host key pinned; privateKey should be a secret). */
  connection: pulumi.Input<Connection>;
  /** The backlog profile (plain values). */
  profile: Profile;
  /** File locations on the host. Default: Debian 12. */
  paths?: HostPaths;
  /** php-fpm and nginx unit and binary names. Default: Debian 12. */
  services?: ServiceNames;
}

/** One host of a fleet. */
export interface FleetHost {
  /** Name of the host, unique in the fleet: names its child resources and its entry in the outputs. */
  name: string;
  /** How to reach it over SSH. */
  connection: pulumi.Input<Connection>;
}

/** Arguments of BacklogFleet. */
export interface BacklogFleetArgs {
  /** The hosts; each becomes a BacklogHost child named `<fleet>-<host>`. */
  hosts: FleetHost[];
  /** The backlog profile every host gets (plain values). */
  profile: Profile;
  /** File locations on the hosts. Default: Debian 12. */
  paths?: HostPaths;
  /** php-fpm and nginx unit and binary names. Default: Debian 12. */
  services?: ServiceNames;
}

/** The library's profile input from the schema's shape; the library validates it. */
function toProfile(component: string, profile: Profile): backlog.ProfileInput {
  if (pulumi.Output.isInstance(profile as unknown)) {
    throw new Error(
      `${component}: profile must be plain values known before the deployment (it is validated before any host is touched); it depends on another resource's output`,
    );
  }
  return {
    ...profile,
    mode: profile.mode as backlog.Mode | undefined,
    netdevMaxBacklog: profile.netdevMaxBacklog as backlog.NetdevMaxBacklogInput | undefined,
    pools: profile.pools?.map((p) => ({ ...p, pm: p.pm as backlog.PmInput | undefined })),
    listeners: profile.listeners?.map(({ serverNames, ...l }) => ({ ...l, serverName: serverNames })),
  };
}

/** Drops what the schema sends as absent, so the library applies its defaults. */
function defined<T extends object>(value: T | undefined): Partial<T> | undefined {
  return value === undefined ? undefined : (Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>);
}

function plainRows(rows: { setting: string; expected: number; effective: number | null; ok: boolean }[]): VerificationRow[] {
  return rows.map(({ setting, expected, effective, ok }) => (effective === null ? { setting, expected, ok } : { setting, expected, effective, ok }));
}

/**
 * Keeps one Linux host's kernel listen queues, php-fpm pools and nginx listeners consistent with
 * one backlog profile and proves it: after every change it reads `/proc/sys` and each listening
 * socket's effective backlog and fails the deployment on any difference. `destroy` restores what the
 * host had before. (The library's BacklogHost, for every Pulumi language.)
 */
export class BacklogHost extends pulumi.ComponentResource {
  /** Per setting: expected and effective value after the last deploy, and whether they match. */
  public readonly verification: pulumi.Output<VerificationRow[]>;
  /** Whether the host matched the profile when this program probed it (false: drift or a new profile). */
  public readonly inSync: pulumi.Output<boolean>;
  /** Why the host did not match at probe time (empty when in sync). */
  public readonly reasons: pulumi.Output<string[]>;
  /** sysctl.d files that would override a managed key at boot (should be empty). */
  public readonly bootOverrides: pulumi.Output<string[]>;

  constructor(name: string, args: BacklogHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("backlog:index:BacklogHost", name, {}, opts);
    const host = new backlog.BacklogHost(
      name,
      {
        connection: args.connection as pulumi.Input<backlog.SshConnectionArgs>,
        profile: toProfile(`BacklogHost ${name}`, args.profile),
        paths: defined(args.paths),
        services: defined(args.services),
      },
      { parent: this },
    );
    this.verification = host.verification.apply(plainRows);
    this.inSync = host.inSync;
    this.reasons = host.reasons;
    this.bootOverrides = host.bootOverrides;
    this.registerOutputs({ verification: this.verification, inSync: this.inSync, reasons: this.reasons, bootOverrides: this.bootOverrides });
  }
}

/**
 * Applies one backlog profile to many hosts (each a BacklogHost), in parallel. The profile is
 * validated once, before any host is touched; a host that fails fails the deployment with its name
 * while the others still converge. (The library's BacklogFleet, for every Pulumi language.)
 */
export class BacklogFleet extends pulumi.ComponentResource {
  /** Verification rows by host name. */
  public readonly verification: pulumi.Output<Record<string, VerificationRow[]>>;
  /** Whether each host matched the profile when this program probed it, by host name. */
  public readonly inSync: pulumi.Output<Record<string, boolean>>;

  constructor(name: string, args: BacklogFleetArgs, opts?: pulumi.ComponentResourceOptions) {
    super("backlog:index:BacklogFleet", name, {}, opts);
    const fleet = new backlog.BacklogFleet(
      name,
      {
        hosts: args.hosts.map((h) => ({ name: h.name, connection: h.connection as pulumi.Input<backlog.SshConnectionArgs> })),
        profile: toProfile(`BacklogFleet ${name}`, args.profile),
        paths: defined(args.paths),
        services: defined(args.services),
      },
      { parent: this },
    );
    this.verification = fleet.verification.apply((byHost) => Object.fromEntries(Object.entries(byHost).map(([host, rows]) => [host, plainRows(rows)])));
    this.inSync = fleet.inSync;
    this.registerOutputs({ verification: this.verification, inSync: this.inSync });
  }
}
