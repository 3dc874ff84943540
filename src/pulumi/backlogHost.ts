/**
 * BacklogHost: one Linux host whose listen-backlog settings follow one profile.
 */
import * as pulumi from "@pulumi/pulumi";
import { basename } from "node:path";
import {
  type ConflictMode,
  type HostChanges,
  type HostDecision,
  type ServiceNames,
  conflictMode,
  decide,
  formatChanges,
  managedKeys,
  serviceNames,
  socketsToObserve,
} from "../core/converge";
import { STATE_DIR, type ServiceAction, checkOwner, probeScript, reportToken } from "../core/plan";
import { parseReport } from "../core/report";
import { type BacklogProfile, type ProfileInput, toProfile } from "../core/profile";
import { type HostPaths, render, resolvePaths } from "../core/render";
import { HOST_PRESENCES, type HostPresence, HostSettings, decisionArgs, plannedActions, runWithPlace } from "./hostSettings";
export { HOST_PRESENCES, type HostPresence } from "./hostSettings";
import { type SysctlConflict, conflictAdvice, formatConflict } from "../core/sysctlSources";
import type { HostRollout } from "../core/rollout";
import { type SshConnection, insecureHops, parseHostKey, runScript, sshTarget } from "../transport/ssh";
import type { ComparisonRow } from "../core/verify";

/**
 * Pulumi inputs of a bastion (see {@link SshConnection.proxy}): the fields of {@link SshConnection}
 * except `proxy` and `sudo`, each a `pulumi.Input`.
 */
export type SshProxyArgs = { [K in keyof SshEndpoint]: pulumi.Input<SshEndpoint[K]> };
/** An SSH endpoint without a bastion of its own and without sudo: what a bastion is. */
type SshEndpoint = Omit<SshConnection, "proxy" | "sudo">;
/** An SSH connection without its bastion (the bastion is an input of its own). */
type SshDirect = Omit<SshConnection, "proxy">;

/**
 * Pulumi inputs of an {@link SshConnection}: every field may be a `pulumi.Input` (e.g. the private
 * key as `config.requireSecret("sshKey")`), and `proxy` takes {@link SshProxyArgs}.
 */
export type SshConnectionArgs = { [K in keyof SshDirect]: pulumi.Input<SshDirect[K]> } & {
  /** A bastion to hop through (its own user, key and pinned host key). */
  proxy?: pulumi.Input<SshProxyArgs>;
};

/** Arguments of {@link BacklogHost}. */
export interface BacklogHostArgs {
  /**
   * How to reach the host over SSH. The host key must be pinned (`hostKey`); `privateKey` and
   * `passphrase` should be Pulumi secrets (the whole connection is stored as a secret either way).
   */
  connection: pulumi.Input<SshConnectionArgs>;
  /**
   * The backlog profile: a {@link ProfileInput} (validated here, before any host is touched) or a
   * profile already made with `defineProfile`.
   */
  profile: ProfileInput | BacklogProfile;
  /** File locations on the host. Default: Debian 12 (`/etc/sysctl.d`, `/etc/php/8.2/fpm/pool.d`, `/etc/nginx/conf.d`). */
  paths?: Partial<HostPaths>;
  /** Unit and binary names of php-fpm and nginx. Default: Debian 12 (`php8.2-fpm`, `php-fpm8.2`, `nginx`). */
  services?: Partial<ServiceNames>;
  /**
   * This deployment's name on the host, among the host's owners (`/var/lib/pulumi-backlog/owners/<owner>`):
   * the files it manages. Default: the component's name. Keep it when renaming the component (or
   * moving the host into a fleet) to carry the host over without a give-back; a new name also works:
   * the originals are kept once per host, and the old name's delete gives back only what no other
   * owner manages. Pattern `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
   */
  owner?: string;
  /**
   * When this host leaves the program (removed, replaced) and cannot be reached to give it back:
   * `"forget"` (default) deletes it from the stack with a warning naming it and what stays on it;
   * `"fail"` fails the delete (and so every later `up`) until it can be reached.
   */
  onGone?: "forget" | "fail";
  /**
   * What to do with a line of another sysctl file (/etc/sysctl.conf, a sysctl.d file in /etc, /run,
   * /usr/local/lib, /usr/lib or /lib) that sets a managed key to another value and that boot
   * (systemd-sysctl), `sysctl --system` or `sysctl -p` applies after the drop-in (docs/sysctl.md).
   * `"report"` (default): a warning per line, the `sysctlConflicts` output, and advisory rows in
   * `verification`; the file is not touched. `"neutralize"`: the line is also commented out with a
   * marker (`# pulumi-backlog neutralized …: <line>`) inside the apply's transaction; the file's
   * original is kept on the host and destroy puts it back byte for byte.
   */
  conflicts?: ConflictMode;
  /**
   * Whether the machine is there (default `"present"`; a plain value, not an Output: it decides
   * resource options). `"stopped"`: it exists but cannot answer (a stopped EC2 instance): no SSH,
   * nothing changed, the state of its last deploy is kept, and a warning says so on every run.
   * `"gone"`: it will never answer again (a terminated EC2 instance): no SSH, nothing changed, and
   * its settings resource is registered with `retainOnDelete`, so that when it later leaves the
   * program the engine drops it from the stack without a delete (without SSH). `ec2Hosts` sets it
   * from the instance's state; see docs/fleets.md.
   */
  presence?: HostPresence;
  /**
   * The host's place in a fleet's rollout (batch, batch count, the hosts after it,
   * `maxFailedHosts`); set by {@link BacklogFleet} for every host when its rollout has more than one
   * batch, unset otherwise (default: a host on its own). It ends the host's own failure message
   * with the hosts that its failure leaves untouched, and a host in a later batch whose probe
   * failed is probed again when its batch starts (in `up`, not in previews). Recorded on the
   * settings resource (input `run.rolloutPlace`), but a change of it alone updates nothing.
   */
  rolloutPlace?: pulumi.Input<HostRollout | undefined>;
}

/** One row of a host's verification output: one setting, what the profile expects and what the host has. */
export interface VerificationRow {
  /**
   * The setting: a kernel key (`net.core.somaxconn`, `net.ipv4.tcp_max_syn_backlog`) or a listening
   * socket (`php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock)`, `nginx listen 0.0.0.0:80 backlog`).
   */
  setting: string;
  /** The value the profile expects (for a socket: `min(backlog, somaxconn)`, what `listen()` gives it). */
  expected: number;
  /** The value read back from the host (`/proc/sys`, `ss` Send-Q), or `null` when it could not be read (socket not listening). */
  effective: number | null;
  /** Whether the effective value satisfies the expected one. */
  ok: boolean;
  /**
   * True on a row that is reported but does not fail the deploy: what boot or `sysctl --system`
   * would leave while a conflicting sysctl line is left in place (`conflicts: "report"`). Absent otherwise.
   */
  advisory?: boolean;
}

/** A line of another sysctl file that undoes the drop-in (output `sysctlConflicts`). */
export interface SysctlConflictRow extends SysctlConflict {
  /** `"reported"` (left in place), or `"neutralized"` (commented out by this run's mode `neutralize`). */
  action: "reported" | "neutralized";
}

/**
 * The arguments of the hosts a {@link BacklogFleet} makes. Such a host does not record the profile
 * among its inputs or outputs: its fleet records it once (the policy pack reads it there). A
 * profile change then leaves the host components as they were (an engine "same" step, which writes
 * nothing to the state); only the settings resources change. Internal: not exported by the package.
 */
export const FLEET_HOST_ARGS = new WeakSet<BacklogHostArgs>();

/**
 * Validates everything that can be checked without the host (so bad input touches nothing) and
 * returns the component's recorded inputs: what policies and `pulumi stack export` see. The
 * connection is reduced to where it goes and how the host key is checked; no key material.
 */
function hostProps(name: string, args: BacklogHostArgs) {
  const profile = toProfile(args.profile);
  const paths = resolvePaths(args.paths);
  if (args.onGone !== undefined && args.onGone !== "forget" && args.onGone !== "fail") {
    throw new Error(`${name}: onGone ${JSON.stringify(args.onGone)}: must be "forget" or "fail"`);
  }
  if (args.presence !== undefined && !HOST_PRESENCES.includes(args.presence)) {
    throw new Error(`${name}: presence ${JSON.stringify(args.presence)}: must be one of ${HOST_PRESENCES.map((p) => `"${p}"`).join(", ")}`);
  }
  // No connection is made to a stopped or gone machine: its host key may be unknown by now.
  if ((args.presence ?? "present") === "present") checkConnection(name, args.connection);
  const services = serviceNames(args.services);
  const view = (c: Omit<SshConnection, "privateKey" | "passphrase" | "proxy">) => ({
    host: c.host,
    port: c.port ?? 22,
    user: c.user ?? "root",
    hostKey: c.hostKey ?? null,
    insecureIgnoreHostKey: c.insecureIgnoreHostKey === true,
  });
  const connection = pulumi.unsecret(
    pulumi.output(args.connection).apply((c) => {
      const conn = c as unknown as SshConnection;
      return { ...view(conn), sudo: conn.sudo ?? (conn.user ?? "root") !== "root", proxy: conn.proxy ? view(conn.proxy) : null };
    }),
  );
  return { profile, recorded: { ...(FLEET_HOST_ARGS.has(args) ? {} : { profile }), paths, services, connection } };
}

/** Rejects a plain connection whose host key is not pinned, before anything runs. */
function checkConnection(name: string, connection: pulumi.Input<SshConnectionArgs>): void {
  if (pulumi.Output.isInstance(connection) || connection === undefined) return;
  const c = connection as SshConnectionArgs;
  if (c.insecureIgnoreHostKey === true) return; // warned for every hop in the constructor
  if (c.hostKey === undefined) {
    throw new Error(
      `${name}: connection.hostKey is required: pin the host's public key ("ssh-ed25519 AAAA…"), or set insecureIgnoreHostKey for a throwaway host`,
    );
  }
  if (typeof c.hostKey === "string") parseHostKey(c.hostKey);
}

/**
 * Keeps one host's kernel listen queues, php-fpm pools and nginx listeners consistent with one
 * backlog profile, and proves it: after every change it reads `/proc/sys` and each listening
 * socket's effective backlog (`ss`) and fails the deployment on any difference.
 *
 * Each `pulumi up` probes the host once (read-only, one SSH connection) to detect drift; a host that
 * needs changes gets one more connection that applies and verifies. `pulumi destroy` puts back the
 * files and kernel values the host had before the first deploy and restarts the services.
 */
export class BacklogHost extends pulumi.ComponentResource {
  /** Per setting: expected and effective value after the last deploy, and whether they match. */
  public readonly verification: pulumi.Output<VerificationRow[]>;
  /**
   * Whether the host matches the profile after this run: `true` once its apply verified, and for a
   * host that needed nothing (the last verified state); `false` when a `pulumi refresh` found drift
   * since. Unknown at preview for a host this run changes. (It used to mean what {@link inSyncBefore}
   * means, and read `false` right after a deploy that changed the host: see CHANGELOG.md.)
   */
  public readonly inSync: pulumi.Output<boolean>;
  /** Whether the host matched the profile when this run probed it, before any change (`false`: drift or a changed profile). */
  public readonly inSyncBefore: pulumi.Output<boolean>;
  /** Whether this run changes the host (known at preview: what `changes` lists); after `up`, whether it changed it. */
  public readonly changed: pulumi.Output<boolean>;
  /**
   * Why this run's probe of the host failed (unreachable, wrong host key, a failed probe script),
   * before any host is changed; `undefined` when it succeeded or the machine is absent. Known at
   * preview. A fleet puts such a host in its last batches; if it is probed again there and that
   * works, it is deployed all the same ({@link reasons}, {@link verification} say what became of it).
   */
  public readonly probeFailure: pulumi.Output<string | undefined>;
  /** Why the host did not match at probe time (empty when in sync). */
  public readonly reasons: pulumi.Output<string[]>;
  /**
   * The {@link sysctlConflicts} that win at boot (systemd-sysctl), one sentence each (should be
   * empty). Kept for compatibility: the warnings are the sysctl conflicts' (one per line).
   */
  public readonly bootOverrides: pulumi.Output<string[]>;
  /**
   * Every line of another sysctl file that undoes the drop-in, as probed before this run: file
   * (a link's target), line, key, value, the tools that let it win, and what this run did with it.
   * Empty when none.
   */
  public readonly sysctlConflicts: pulumi.Output<SysctlConflictRow[]>;
  /**
   * Per systemd unit, what this run does to it, decided from the probe (known at preview):
   * `none`, `relisten` (listen() again on the running sockets, no connection lost), `reload` or
   * `restart`. A relisten that cannot work on the host falls back to a restart (see {@link applied}).
   */
  public readonly actions: pulumi.Output<Record<string, ServiceAction>>;
  /** Per unit, why it gets its action (empty for `none`). */
  public readonly actionReasons: pulumi.Output<Record<string, string>>;
  /** Per unit, what the last apply really did (`restart (fallback: …)` when a relisten could not work). */
  public readonly applied: pulumi.Output<Record<string, string>>;
  /**
   * What this run changes on the host, decided from the probe (known at preview): values
   * `current → wanted`, each differing file with a unified diff, files given back, and the action
   * per service with its reason. All lists empty when the host already matches.
   */
  public readonly changes: pulumi.Output<HostChanges>;

  /**
   * @param name - Logical name; also names the host's state directory on the host
   *   (`/var/lib/pulumi-backlog/<name>`) and its child resource `<name>-settings`.
   * @param args - Connection, profile and, optionally, paths and service names.
   * @param opts - Component resource options (parent, providers, aliases, …).
   * @throws {@link ProfileError} when the profile breaks a rule, and `Error` when the host key is not
   *   pinned: both before any host is touched.
   */
  constructor(name: string, args: BacklogHostArgs, opts?: pulumi.ComponentResourceOptions) {
    const { profile, recorded } = hostProps(name, args);
    super("backlog:index:BacklogHost", name, recorded, opts);
    const { services } = recorded;
    const discover = profile.pools.length > 0 && (args.services?.phpFpmUnit === undefined || args.paths?.phpFpmPoolDir === undefined);

    const connection = pulumi.secret(pulumi.output(args.connection) as pulumi.Output<SshConnection>);
    // Every hop that skips the host key check is named, whatever the shape of the input.
    pulumi.unsecret(connection).apply((c) => {
      for (const hop of insecureHops(c)) {
        pulumi.log.warn(
          `${name}: insecureIgnoreHostKey is set for ${hop}: the SSH host key is not checked; anyone on the path can impersonate this host.`,
          this,
        );
      }
    });
    // The deployment's name on the host (its entry among the host's owners): the component's name.
    // Stack and project are part of it: two stacks with the same resource names on one host are
    // two owners, never one.
    const legacyName = name.replace(/[^A-Za-z0-9_.-]/g, "_");
    const owner = checkOwner(
      args.owner ??
        `${pulumi.getProject()}.${pulumi.getStack()}.${legacyName}`
          .replace(/[^A-Za-z0-9_.-]/g, "_")
          .slice(-128)
          .replace(/^[^A-Za-z0-9]+/, ""),
    );
    const spec = {
      stateDir: STATE_DIR,
      owner,
      ...socketsToObserve(profile),
      sysctlKeys: managedKeys(profile),
      // Where the files go does not depend on the host; only the kernel values in them do.
      // php-fpm is found on the host unless both its unit and its pool directory are given.
      paths: render(profile, { paths: args.paths })
        .filter((f) => !discover || f.kind !== "php-fpm-pool")
        .map((f) => f.path),
      units: [...(profile.pools.length && !discover ? [services.phpFpmUnit] : []), ...(profile.listeners.length ? [services.nginxUnit] : [])],
      ...(discover
        ? {
            discoverPhp: {
              poolFiles: render(profile, { paths: args.paths })
                .filter((f) => f.kind === "php-fpm-pool")
                .map((f) => basename(f.path)),
            },
          }
        : {}),
    };
    // The probe reads only; its result holds no secret, so it is unwrapped from the connection's secrecy.
    // A host that cannot be probed (unreachable, wrong host key, a key it does not expose) does not stop
    // the program: its settings resource fails with the reason, and the other hosts go on.
    const presence = args.presence ?? "present";
    const conflictsMode = conflictMode(args.conflicts, `${name}: conflicts`);
    type Outcome = HostDecision | { failure: string } | { absent: "stopped" | "gone" };
    const probe = async (conn: SshConnection): Promise<Outcome> => {
      try {
        const token = reportToken();
        const result = await runScript(conn, probeScript(spec, { token }));
        if (result.timedOut) throw new Error(`probe of ${sshTarget(conn)} timed out (connection.scriptTimeoutSeconds)`);
        const report = parseReport(result.stdout, token);
        if (result.code !== 0 || !report.complete) {
          throw new Error(`probe failed on ${sshTarget(conn)}: ${result.stderr.trim() || "incomplete output"}`);
        }
        return decide(profile, report, { paths: args.paths, services: args.services, owner, legacyName, conflicts: conflictsMode });
      } catch (err) {
        const failure = (err as Error).message;
        pulumi.log.warn(`${name}: ${failure}`, this);
        return { failure };
      }
    };
    const first: pulumi.Output<Outcome> = presence !== "present" ? pulumi.output({ absent: presence }) : pulumi.unsecret(connection.apply(probe));
    // A fleet puts a host whose probe failed in its last batches. In `up`, when that batch is not
    // the first, the host is probed again once the batches before it have ended (its dependsOn):
    // a host that was down for a moment is then deployed in this run, only later. A host that
    // was probed does not wait for its place (the fleet's plan is made from the probes).
    const outcome: pulumi.Output<Outcome> =
      presence !== "present" || pulumi.runtime.isDryRun()
        ? first
        : pulumi.unsecret(
            first.apply(
              (o): pulumi.Output<Outcome> =>
                !("failure" in o)
                  ? pulumi.output(o)
                  : pulumi.output(args.rolloutPlace).apply(
                      (place): pulumi.Output<Outcome> =>
                        place === undefined || place.batch < 2
                          ? pulumi.output(o)
                          : connection.apply(async (conn) => {
                              // A rollout stopped before its batch: it is never registered, so not probed either.
                              if (!(await dependenciesSettled(opts?.dependsOn))) return o;
                              pulumi.log.info(
                                `${name}: probing again now that its batch ${place.batch} of ${place.batches} starts (the probe before the rollout failed: ${o.failure})`,
                                this,
                              );
                              return probe(conn);
                            }),
                    ),
            ),
          );
    const decided = <T>(pick: (d: HostDecision) => T, otherwise: T): pulumi.Output<T> =>
      outcome.apply((o) => ("failure" in o || "absent" in o ? otherwise : pick(o)));
    const absentReason =
      presence === "stopped"
        ? `${name}: the machine is stopped: not probed and not changed (no SSH); the stack keeps what its last deploy recorded, and the next run after it starts again checks it`
        : `${name}: the machine is gone for good: not probed and not changed (no SSH); once it leaves the inventory it is dropped from the stack without a restore (what the deployment changed stays on its disk)`;
    if (presence !== "present") pulumi.log.warn(absentReason, this);

    const decision = decisionArgs(decided((d): HostDecision | undefined => d, undefined));
    const settings = new HostSettings(
      `${name}-settings`,
      {
        connection,
        hostName: name,
        target: connection.apply((c) => sshTarget(c)),
        // The plan, and what this run changes in fields of their own (what preview --diff shows).
        ...decision,
        // The host's place in the fleet's batches rides in `run` (hidden in diffs, see RunInputs).
        run: pulumi.all([decision.run, pulumi.output(args.rolloutPlace)]).apply(([run, place]) => runWithPlace(run, place)),
        expected: decided((d) => d.expected, undefined),
        before: decided((d) => d.before as Record<string, number | undefined>, undefined),
        desiredHash: decided((d) => d.desiredHash, undefined),
        probeFailure: outcome.apply((o) => ("failure" in o ? o.failure : undefined)),
        onGone: args.onGone ?? "forget",
        presence,
      },
      { parent: this, ...(presence === "gone" ? { retainOnDelete: true } : {}) },
    );

    this.verification = settings.verification.apply((rows: ComparisonRow[]) =>
      rows.map(({ setting, expected, effective, ok, advisory }) => ({ setting, expected, effective, ok, ...(advisory ? { advisory } : {}) })),
    );
    this.inSync = settings.inSync.apply((v) => v === true);
    this.probeFailure = first.apply((o) => ("failure" in o ? o.failure : undefined));
    this.inSyncBefore = decided((d) => d.inSync, false);
    this.changed = decided((d) => !d.inSync, false);
    this.actions = decided((d) => plannedActions(d.plan), {});
    this.actionReasons = decided((d) => Object.fromEntries(d.plan.services.filter((sv) => sv.reason).map((sv) => [sv.unit, sv.reason as string])), {});
    this.applied = settings.applied.apply((a) => a ?? {});
    this.changes = decided((d) => d.changes, { settings: [], files: [], retired: [], services: [], recovers: false });
    // What this run changes, attached to this host in every preview and up (nothing when nothing changes).
    this.changes.apply((c) => {
      const text = formatChanges(c);
      if (text) pulumi.log.info(`${name} will change:\n${text}`, this);
    });
    this.reasons = outcome.apply((o) => ("failure" in o ? [o.failure] : "absent" in o ? [absentReason] : o.reasons));
    // One warning per conflicting line (the sysctl conflict's); bootOverrides is the same set, those that win at boot.
    this.bootOverrides = decided(
      (d) =>
        d.conflicts
          .filter((c) => c.tools.includes("systemd-sysctl"))
          .map((c) => `${c.key} is set again by ${c.file}:${c.line} (${c.text}), which is read after the drop-in at boot`),
      [],
    );
    this.sysctlConflicts = decided(
      (d) => d.conflicts.map((c): SysctlConflictRow => ({ ...c, action: d.conflictMode === "neutralize" ? "neutralized" : "reported" })),
      [],
    );
    this.sysctlConflicts.apply((list) => {
      for (const c of list) {
        pulumi.log.warn(`${name}: sysctl conflict: ${formatConflict(c)}. ${conflictAdvice(c.action === "neutralized" ? "neutralize" : "report")}`, this);
      }
    });
    // The recorded inputs again as outputs (stack policies see outputs only), and nothing that
    // changes from run to run: equal outputs cost no state write (the engine elides it), and the
    // rows are in the settings resource's outputs already. The properties above are the API.
    this.registerOutputs(recorded);
  }
}

/**
 * Resolves once `dependsOn` has resolved (`true`) or failed (`false`); at once (`true`) unless it
 * is an Output. In a fleet: when the batches before the host's have ended, `false` when the
 * rollout stopped before it.
 */
function dependenciesSettled(dependsOn: unknown): Promise<boolean> {
  if (!pulumi.Output.isInstance(dependsOn)) return Promise.resolve(true);
  return new Promise((resolve) => {
    pulumi
      .recover(
        (dependsOn as pulumi.Output<unknown>).apply(() => true),
        () => false,
      )
      .apply((ok) => resolve(ok));
  });
}
