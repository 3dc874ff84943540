/**
 * BacklogFleet: many hosts that share one backlog profile, changed batch after batch.
 */
import * as pulumi from "@pulumi/pulumi";
import { BacklogHost, type BacklogHostArgs, FLEET_HOST_ARGS, type SshConnectionArgs, type VerificationRow } from "./backlogHost";
import type { HostPresence } from "./hostSettings";
import { conflictMode } from "../core/converge";
import { type BacklogProfile, toProfile } from "../core/profile";
import {
  type RolloutInput,
  type RolloutPlan,
  type RolloutPolicy,
  type ServiceAction,
  batchIndex,
  describeRollout,
  hostPlaces,
  planRollout,
  stopReason,
  toRollout,
} from "../core/rollout";

export {
  DEFAULT_MAX_PARALLEL,
  MaxParallel,
  RolloutError,
  RolloutInput,
  RolloutPlan,
  RolloutPolicy,
  SERVICE_ACTIONS,
  ServiceAction,
  HostRollout,
  batchSize,
  hostPlaces,
  planRollout,
  rolloutNote,
  toBatches,
  toRollout,
  worstAction,
} from "../core/rollout";

/** One host of a fleet. */
export interface FleetHost {
  /** Name of the host: names its child resources and its entry in the outputs. Unique in the fleet. */
  name: string;
  /** How to reach it (see {@link BacklogHostArgs.connection}). */
  connection: pulumi.Input<SshConnectionArgs>;
  /**
   * Whether the machine is there (see {@link BacklogHostArgs.presence}). Default `"present"`.
   * `ec2Hosts` sets `"stopped"` for a stopped or stopping instance and `"gone"` for a terminated
   * or shutting-down one; such hosts are not probed, not changed and not in the rollout's batches.
   */
  presence?: HostPresence;
}

/** Arguments of {@link BacklogFleet}: those of {@link BacklogHostArgs} except `connection` and `rolloutPlace` (set per host), plus the hosts and the rollout. */
export interface BacklogFleetArgs extends Omit<BacklogHostArgs, "connection" | "rolloutPlace"> {
  /** The hosts, in rollout order. Each becomes a {@link BacklogHost} child named `<fleet>-<host>`. */
  hosts: FleetHost[];
  /**
   * How a change rolls out over the hosts (see {@link RolloutInput}): batches of
   * `maxParallel` hosts (a count, or `"N%"` of the hosts rounded up), in the order of `hosts`,
   * the hosts that could not be probed last; batch k+1 starts when every host of batch k has
   * applied and verified, and the rollout stops once more than `maxFailedHosts` hosts have failed.
   *
   * Default `{}`: all hosts at once when no host needs more than `"relisten"` (nothing is
   * dropped), else 25 % of the hosts at a time (rounded up); `maxFailedHosts` 0.
   */
  rollout?: RolloutInput;
}

/** Validates the profile and the host list before anything is registered. */
function fleetProfile(args: BacklogFleetArgs): BacklogProfile {
  const profile = toProfile(args.profile);
  conflictMode(args.conflicts, "conflicts");
  const seen = new Set<string>();
  for (const [i, h] of args.hosts.entries()) {
    if (typeof h.name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(h.name)) {
      throw new Error(`hosts[${i}].name ${JSON.stringify(h.name)}: must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
    if (seen.has(h.name)) {
      throw new Error(`hosts[${i}].name ${JSON.stringify(h.name)}: duplicate host name; each host needs its own name`);
    }
    seen.add(h.name);
  }
  return profile;
}

/**
 * Applies one backlog profile to many hosts (each a {@link BacklogHost}), batch after batch. The
 * profile and the rollout are validated once, before any host is touched.
 *
 * Rollout: the hosts of batch k+1 depend (Pulumi `dependsOn`) on the hosts of batch k, so the
 * engine touches them only after every host of batch k has applied and verified its settings. How
 * many hosts a batch has comes from `rollout.maxParallel`, or by default from the services' planned
 * actions (output {@link actions}): all at once when nothing is reloaded or restarted, 25 % of the
 * hosts otherwise. The hosts whose probe failed go last, in batches of their own after every
 * probed host (so that their failure cannot stop the others; each is probed again when its batch
 * starts). A host that fails (unreachable, failed config test, verification mismatch) fails the
 * deployment with its name, and its message ends with the hosts it leaves untouched; the other
 * hosts of its batch finish, later batches are not touched (with `pulumi up --continue-on-error`
 * and `rollout.maxFailedHosts` > 0 they go on until more hosts than that have failed).
 */
export class BacklogFleet extends pulumi.ComponentResource {
  /** The host components, by host name. */
  public readonly hosts: Record<string, BacklogHost>;
  /** Verification rows by host name. */
  public readonly verification: pulumi.Output<Record<string, VerificationRow[]>>;
  /** Whether each host matches the profile after this run (see {@link BacklogHost.inSync}). */
  public readonly inSync: pulumi.Output<Record<string, boolean>>;
  /** Whether each host matched the profile when this run probed it, before any change. */
  public readonly inSyncBefore: pulumi.Output<Record<string, boolean>>;
  /** Whether this run changes (after `up`: changed) each host. */
  public readonly changed: pulumi.Output<Record<string, boolean>>;
  /** Per host and systemd unit: what the deployment does to the service (decided from the probe). */
  public readonly actions: pulumi.Output<Record<string, Record<string, ServiceAction>>>;
  /** The rollout: host names, batch after batch (one batch: all at once). */
  public readonly rollout: pulumi.Output<string[][]>;
  /**
   * Hosts whose machine is not there, by name: `"stopped"` (kept as last deployed, not touched)
   * or `"gone"` (forgotten without SSH once it leaves the host list). Empty when all are present.
   */
  public readonly absent: pulumi.Output<Record<string, "stopped" | "gone">>;

  /**
   * @param name - Logical name; each host's component is named `<name>-<host name>`.
   * @param args - The hosts, the profile they share, the rollout and, optionally, paths and service names.
   * @param opts - Component resource options (parent, providers, aliases, …).
   * @throws {@link ProfileError} when the profile breaks a rule, {@link RolloutError} for an
   *   invalid rollout, and `Error` for an invalid or duplicate host name: all before any host is touched.
   */
  constructor(name: string, args: BacklogFleetArgs, opts?: pulumi.ComponentResourceOptions) {
    const profile = fleetProfile(args);
    const policy = toRollout(args.rollout);
    const names = args.hosts.map((h) => h.name);
    // The batches hold the hosts that can be deployed; a stopped or gone one changes nothing.
    const present = args.hosts.filter((h) => (h.presence ?? "present") === "present").map((h) => h.name);
    super(
      "backlog:index:BacklogFleet",
      name,
      {
        profile,
        hosts: names,
        rollout: { maxParallel: policy.maxParallel ?? null, maxFailedHosts: policy.maxFailedHosts },
      },
      opts,
    );

    // Each host's dependsOn is an Output that needs the whole fleet (every host's planned
    // actions, the earlier batches' hosts): it is read once all hosts exist.
    let constructed = (): void => undefined;
    const allConstructed = pulumi.output(new Promise<boolean>((resolve) => (constructed = () => resolve(true))));
    const later: { plan?: pulumi.Output<RolloutPlan>; gates?: (batches: string[][]) => pulumi.Output<pulumi.Resource[]>[] } = {};

    this.hosts = {};
    for (const h of args.hosts) {
      const hostArgs: BacklogHostArgs = {
        connection: h.connection,
        profile,
        paths: args.paths,
        services: args.services,
        ...(args.onGone !== undefined ? { onGone: args.onGone } : {}),
        ...(args.conflicts !== undefined ? { conflicts: args.conflicts } : {}),
        ...(h.presence !== undefined ? { presence: h.presence } : {}),
        // Its place in the batches: what its own failure message says about the hosts after it.
        rolloutPlace: allConstructed.apply(() => later.plan!.apply((p) => places(p)[h.name])),
      };
      // The fleet records the profile once for all its hosts (see FLEET_HOST_ARGS).
      FLEET_HOST_ARGS.add(hostArgs);
      this.hosts[h.name] = new BacklogHost(`${name}-${h.name}`, hostArgs, {
        parent: this,
        dependsOn: allConstructed.apply(() =>
          later.plan!.apply((p): pulumi.Input<pulumi.Resource[]> => {
            const k = batchIndex(p.batches)[h.name];
            // A stopped or gone host is in no batch: it changes nothing, so it waits for nothing.
            return k === undefined || k === 0 ? [] : later.gates!(p.batches)[k - 1];
          }),
        ) as pulumi.Output<pulumi.Resource[]>,
      });
    }
    const byHost = <T>(pick: (host: BacklogHost) => pulumi.Output<T>): pulumi.Output<Record<string, T>> =>
      pulumi.all(Object.fromEntries(Object.entries(this.hosts).map(([n, host]) => [n, pick(host)]))) as pulumi.Output<Record<string, T>>;
    this.verification = byHost((host) => host.verification);
    this.inSync = byHost((host) => host.inSync);
    this.inSyncBefore = byHost((host) => host.inSyncBefore);
    this.changed = byHost((host) => host.changed);
    this.actions = byHost((host) => host.actions);

    // The plan waits for every host's probe, with maxParallel set too: the hosts whose probe
    // failed go last (planRollout), so no host is registered before all probes have ended. That
    // costs the first batch the time between its own probes and the slowest one (docs/fleets.md).
    // Only a probed host's actions are read: an unprobed one's wait for its turn (BacklogHost).
    const probes = pulumi.all(
      Object.fromEntries(
        present.map((n) => {
          const host = this.hosts[n];
          return [
            n,
            host.probeFailure.apply((failure) =>
              failure === undefined
                ? host.actions.apply((actions) => ({ failed: false, actions }))
                : pulumi.output({ failed: true, actions: {} as Record<string, ServiceAction> }),
            ),
          ];
        }),
      ),
    ) as pulumi.Output<Record<string, { failed: boolean; actions: Record<string, ServiceAction> }>>;
    const plan = probes.apply((pr) =>
      planRollout(
        present,
        Object.fromEntries(Object.entries(pr).map(([n, x]) => [n, x.actions])),
        policy,
        present.filter((n) => pr[n].failed),
      ),
    );
    const places = memo((p: RolloutPlan) => hostPlaces(p, policy));
    later.plan = plan;
    later.gates = memo((batches: string[][]) => rolloutGates(name, this, batches, this.hosts, policy));
    plan.apply((p) => pulumi.log.info(describeRollout(p, policy), this));
    this.rollout = plan.apply((p) => p.batches);
    this.absent = pulumi.output(
      Object.fromEntries(args.hosts.filter((h) => h.presence === "stopped" || h.presence === "gone").map((h) => [h.name, h.presence as "stopped" | "gone"])),
    );
    constructed();

    // The profile for the policy pack (its hosts do not record it), and the rollout. The per-host
    // rows are the hosts' settings resources' outputs already: recorded again here, they would
    // make every state write of the run larger.
    this.registerOutputs({ profile, rollout: this.rollout, absent: this.absent });
  }
}

/** Caches the result of `f` for the last argument (the plan is computed once per program run). */
function memo<A, R>(f: (a: A) => R): (a: A) => R {
  let last: { a: A; r: R } | undefined;
  return (a) => {
    if (!last || last.a !== a) last = { a, r: f(a) };
    return last.r;
  };
}

/**
 * One gate per batch but the last: an Output that resolves when every host of that batch has
 * settled (applied and verified, or failed), to the hosts of the batch that succeeded (what the
 * next batch depends on, so the edges go from one batch to the one before only). It fails, so that
 * the next batch is never registered, when more than `maxFailedHosts` hosts failed in this and the
 * earlier batches; every later gate then fails with the same error.
 *
 * A host counts as failed when its verification output fails: the engine reports its settings
 * resource as failed (or skipped) to the program, which the SDK turns into a rejected output;
 * `pulumi.recover` turns that into `false` here. At preview a changed host's verification is
 * unknown, so are the gates, and the next batches depend on this one's resources only implicitly.
 *
 * The failures of earlier batches are kept in plain state rather than chained through Outputs (an
 * Output carries its resources along, which would make every batch depend on all earlier ones):
 * gate k runs only once batch k has settled, which is after gate k-1 has run.
 */
function rolloutGates(
  name: string,
  fleet: BacklogFleet,
  batches: string[][],
  hosts: Record<string, BacklogHost>,
  policy: RolloutPolicy,
): pulumi.Output<pulumi.Resource[]>[] {
  const settled = (n: string): pulumi.Output<boolean> =>
    pulumi.recover(
      hosts[n].verification.apply(() => true),
      () => false,
    );
  const failed: string[] = [];
  // One error object for every host it stops: Pulumi's Node.js host reports an error object once.
  let stopped: Error | undefined;
  return batches.slice(0, -1).map((batch, k) =>
    pulumi.all(batch.map(settled)).apply((ok) => {
      if (stopped) throw stopped; // this batch was never touched
      failed.push(...batch.filter((_, i) => !ok[i]));
      const reason = stopReason(failed, policy);
      if (reason !== undefined) {
        stopped = new pulumi.ResourceError(
          `${name}: rollout stopped after batch ${k + 1} of ${batches.length}: ${reason}; ` +
            `not touched: ${batches
              .slice(k + 1)
              .flat()
              .join(", ")}`,
          fleet,
          true,
        );
        // No stack frames (hideStack: Pulumi prints the message only). Pulumi's Node.js host still
        // formats the error with util.inspect(err, { colors: true }), and on Node 24.9 that loops
        // on a frame under node_modules without a further "/" (here `node_modules/@pulumi/output.ts`,
        // the SDK's source-mapped apply): 16-40 s of CPU before it gives up ("Invalid string length").
        stopped.stack = `${stopped.name}: ${stopped.message}`;
        throw stopped;
      }
      return batch.filter((_, i) => ok[i]).map((n) => hosts[n] as pulumi.Resource);
    }),
  );
}
