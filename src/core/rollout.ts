/**
 * Rolling rollouts of a fleet (pure: no Pulumi, no I/O): the `rollout` argument of
 * {@link BacklogFleet}, its validation, the split of the hosts into batches, and the default policy.
 *
 * A fleet applies a change batch after batch: the hosts of batch k+1 are touched only when every
 * host of batch k has finished (applied and verified). How many hosts go at once depends on how
 * disruptive the change is for the services on each host:
 *
 *   "none" < "relisten" < "reload" < "restart"
 *
 * `none` and `relisten` (listen() again on the live socket) drop no request, so by default a fleet
 * whose every host needs at most that goes all at once; a `reload` or a `restart` anywhere makes it
 * go {@link DEFAULT_MAX_PARALLEL} of the hosts at a time.
 */

import type { ServiceAction } from "./plan";

/** What a host does to one service (`none` < `relisten` < `reload` < `restart`); defined with the apply plan. */
export type { ServiceAction };

/** The actions from the least to the most disruptive. */
export const SERVICE_ACTIONS: readonly ServiceAction[] = Object.freeze(["none", "relisten", "reload", "restart"] as const);

/** How many hosts a rollout may touch at once: a count of hosts, or a percentage of the fleet. */
export type MaxParallel = number | `${number}%`;

/** The `rollout` argument of a fleet (and the stack configuration `backlog:rollout`). */
export interface RolloutInput {
  /**
   * How many hosts are changed at the same time: a whole number of hosts (≥ 1), or `"N%"` of the
   * fleet's hosts (N from 1 to 100, rounded up, at least 1 host). Hosts are taken in the order of
   * the fleet's host list.
   *
   * Default: adaptive. All hosts at once when no host needs more than `"relisten"` for any
   * service (no request is dropped); otherwise {@link DEFAULT_MAX_PARALLEL} (`"25%"`) of the hosts.
   * When set, it is used whatever the actions are.
   */
  maxParallel?: MaxParallel;
  /**
   * How many hosts may fail (unreachable, failed config test, verification mismatch) before the
   * rollout stops, counted over all finished batches; the batch after the one that crosses the
   * limit is never touched. A whole number ≥ 0, in hosts. Default `0`: stop after the first batch
   * with a failed host.
   *
   * More than 0 takes effect only with `pulumi up --continue-on-error`: without it the Pulumi
   * engine itself stops the update at the first failed resource (the other hosts of the same batch
   * still finish; no later batch starts).
   */
  maxFailedHosts?: number;
}

/** A validated {@link RolloutInput}. */
export interface RolloutPolicy {
  /** As given, validated; `undefined`: the adaptive default. */
  readonly maxParallel: MaxParallel | undefined;
  /** Validated, default filled in (0). */
  readonly maxFailedHosts: number;
}

/**
 * The batch size used when some host needs a reload or a restart and `maxParallel` is not set:
 * a quarter of the hosts (rounded up; one at a time up to 4 hosts). At least 75 % of the fleet
 * keeps serving while a batch reloads or restarts (the same bound as Kubernetes' default
 * `maxUnavailable` of a Deployment), and the rollout takes at most 4 batches whatever the fleet's
 * size, so its duration stays about 4 × one host's apply rather than growing with the fleet.
 */
export const DEFAULT_MAX_PARALLEL: MaxParallel = "25%";

/** A rollout setting that breaks a rule: names the field, the value and the rule. */
export class RolloutError extends Error {
  /** The field, e.g. `rollout.maxParallel`. */
  readonly field: string;
  /** The value given. */
  readonly value: unknown;
  /** The rule it breaks. */
  readonly rule: string;

  /**
   * @param field - The field, e.g. `rollout.maxParallel`.
   * @param value - The value given.
   * @param rule - The rule it breaks.
   */
  constructor(field: string, value: unknown, rule: string) {
    super(`${field} ${show(value)}: ${rule}`);
    this.name = "RolloutError";
    this.field = field;
    this.value = value;
    this.rule = rule;
  }
}

function show(value: unknown): string {
  if (value === undefined) return "undefined";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

const PERCENT = /^(\d+)%$/;

/**
 * Checks one `maxParallel` value.
 * @throws {@link RolloutError} unless it is a whole number ≥ 1 or `"N%"` with N from 1 to 100.
 */
export function checkMaxParallel(value: unknown, field = "rollout.maxParallel"): MaxParallel {
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 1) {
      throw new RolloutError(field, value, `must be a whole number of hosts, at least 1 (or a percentage of the hosts, "1%" to "100%")`);
    }
    return value;
  }
  if (typeof value === "string") {
    const m = PERCENT.exec(value);
    if (!m) {
      throw new RolloutError(field, value, `must be a whole number of hosts (at least 1) or a whole percentage of the hosts written "N%", N from 1 to 100`);
    }
    const n = Number(m[1]);
    if (n < 1 || n > 100) {
      throw new RolloutError(field, value, "a percentage of the hosts must be from 1% to 100%");
    }
    return `${n}%` as MaxParallel;
  }
  throw new RolloutError(field, value, `must be a whole number of hosts (at least 1) or a percentage string "N%" (1 to 100)`);
}

/**
 * Validates a `rollout` argument and fills in the defaults. Unknown fields are refused (a typo
 * such as `maxParalell` would otherwise be ignored silently).
 *
 * @param input - The argument as given (from TypeScript or from stack configuration).
 * @param field - Its name in messages.
 * @throws {@link RolloutError} naming the field, the value and the rule.
 */
export function toRollout(input: unknown, field = "rollout"): RolloutPolicy {
  if (input === undefined || input === null) return { maxParallel: undefined, maxFailedHosts: 0 };
  if (typeof input !== "object" || Array.isArray(input)) {
    throw new RolloutError(field, input, "must be an object { maxParallel?, maxFailedHosts? }");
  }
  const known = ["maxParallel", "maxFailedHosts"];
  for (const key of Object.keys(input)) {
    if (!known.includes(key)) {
      throw new RolloutError(`${field}.${key}`, (input as Record<string, unknown>)[key], `unknown field; a rollout has ${known.join(" and ")}`);
    }
  }
  const { maxParallel, maxFailedHosts } = input as Record<string, unknown>;
  const policy = {
    maxParallel: maxParallel === undefined ? undefined : checkMaxParallel(maxParallel, `${field}.maxParallel`),
    maxFailedHosts: 0,
  };
  if (maxFailedHosts !== undefined) {
    if (typeof maxFailedHosts !== "number" || !Number.isInteger(maxFailedHosts) || maxFailedHosts < 0) {
      throw new RolloutError(`${field}.maxFailedHosts`, maxFailedHosts, "must be a whole number of hosts, 0 or more (0: stop after the first failed host)");
    }
    policy.maxFailedHosts = maxFailedHosts;
  }
  return policy;
}

/**
 * How many hosts of a fleet of `hostCount` go at once: a count is capped at the fleet's size;
 * `"N%"` is N % of the hosts rounded up, at least 1. An empty fleet gives 0.
 */
export function batchSize(maxParallel: MaxParallel, hostCount: number): number {
  if (!Number.isInteger(hostCount) || hostCount < 0) throw new RangeError(`hostCount ${hostCount}: must be a whole number, 0 or more`);
  if (hostCount === 0) return 0;
  const checked = checkMaxParallel(maxParallel);
  if (typeof checked === "number") return Math.min(checked, hostCount);
  const percent = Number(checked.slice(0, -1));
  return Math.max(1, Math.ceil((percent * hostCount) / 100));
}

/** Splits `items` into consecutive batches of `size` (the last one may be smaller), keeping their order. */
export function toBatches<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`batch size ${size}: must be a whole number, at least 1`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The most disruptive of `actions` (`"none"` for none). An unknown action counts as `"restart"`. */
export function worstAction(actions: Iterable<string>): ServiceAction {
  let worst = 0;
  for (const a of actions) {
    const rank = SERVICE_ACTIONS.indexOf(a as ServiceAction);
    worst = Math.max(worst, rank < 0 ? SERVICE_ACTIONS.length - 1 : rank);
  }
  return SERVICE_ACTIONS[worst];
}

/** Whether an action can drop or delay requests (`reload`, `restart`). */
export function isDisruptive(action: ServiceAction): boolean {
  return SERVICE_ACTIONS.indexOf(action) > SERVICE_ACTIONS.indexOf("relisten");
}

/** How a fleet rolls out one change. */
export interface RolloutPlan {
  /** Host names, batch after batch: the probed hosts first, then those that could not be probed. */
  readonly batches: string[][];
  /** Hosts per batch (the last batch of the probed hosts, and of the unprobed ones, may have fewer). */
  readonly batchSize: number;
  /** The `maxParallel` used (`undefined`: all at once by the adaptive default). */
  readonly maxParallel: MaxParallel | undefined;
  /** The most disruptive action of each host (over its services). */
  readonly worst: Record<string, ServiceAction>;
  /** One sentence: why these batches. */
  readonly reason: string;
  /** The hosts whose probe failed, in host order: in the last batches, after every probed host. */
  readonly unprobed: string[];
}

/**
 * Plans a rollout: the batches of `hosts` (in the given order) for the `policy`, given each host's
 * planned action per service (a host missing from `actions` counts as `"none"`).
 *
 * The hosts named in `unprobed` (whose probe failed: unreachable, wrong host key, …) go into
 * batches of their own after every other host, in host order and of the same size. Such a host
 * most likely fails at its turn, and without `pulumi up --continue-on-error` the engine starts no
 * new step after the first failure: deployed last, its failure cannot keep the reachable hosts
 * from being deployed. Its actions are unknown and are not counted for the adaptive batch size (a
 * down host would otherwise slow down the whole fleet). The batch size (`maxParallel`, `"N%"` of
 * the hosts) counts all `hosts`.
 *
 * @param hosts - The host names that take part, in rollout order.
 * @param actions - Per host, its planned action per service (from its probe).
 * @param policy - The validated rollout (see {@link toRollout}).
 * @param unprobed - Hosts of `hosts` whose probe failed. Default: none. Names not in `hosts` are ignored.
 */
export function planRollout(
  hosts: readonly string[],
  actions: Readonly<Record<string, Readonly<Record<string, string>> | undefined>>,
  policy: RolloutPolicy,
  unprobed: readonly string[] = [],
): RolloutPlan {
  const failed = new Set(unprobed);
  const probed = hosts.filter((h) => !failed.has(h));
  const last = hosts.filter((h) => failed.has(h));
  const worst: Record<string, ServiceAction> = {};
  for (const h of hosts) worst[h] = worstAction(Object.values((failed.has(h) ? undefined : actions[h]) ?? {}));
  const disruptive = probed.filter((h) => isDisruptive(worst[h]));
  let maxParallel = policy.maxParallel;
  let reason: string;
  if (maxParallel !== undefined) {
    reason = `maxParallel ${maxParallel} as configured`;
  } else if (disruptive.length === 0) {
    reason = `no host needs more than "relisten" (no request is dropped)`;
  } else {
    maxParallel = DEFAULT_MAX_PARALLEL;
    const shown =
      disruptive
        .slice(0, 3)
        .map((h) => `${h} (${worst[h]})`)
        .join(", ") + (disruptive.length > 3 ? `, … (${disruptive.length} hosts)` : "");
    reason = `default maxParallel ${DEFAULT_MAX_PARALLEL}: ${shown} must reload or restart a service`;
  }
  const size = maxParallel === undefined ? hosts.length : batchSize(maxParallel, hosts.length);
  const batches = size === 0 ? [] : [...toBatches(probed, size), ...toBatches(last, size)];
  return { batches, batchSize: size, maxParallel, worst, reason, unprobed: last };
}

/**
 * A host's place in a fleet's rollout, as its settings resource records it (input `rollout`): what
 * its own failure message says about the hosts after it. Computed by `hostPlaces` (src/core/rollout.ts).
 */
export interface HostRollout {
  /** The host's batch, from 1. */
  batch: number;
  /** How many batches the rollout has. */
  batches: number;
  /** The hosts in later batches, in rollout order: at most {@link MAX_NAMED_LATER} names. */
  later: string[];
  /** How many hosts the later batches hold in all (≥ `later.length`). */
  laterCount: number;
  /** `rollout.maxFailedHosts` of the fleet. */
  maxFailedHosts: number;
}

/** How many of the later hosts a {@link HostRollout} names (the state holds one list per host). */
export const MAX_NAMED_LATER = 20;

/**
 * Each host's place in the plan when it has more than one batch (the hosts of the last batch with
 * no later host). A plan of one batch gives none: no host waits for another, and no failure
 * leaves a host untouched.
 */
export function hostPlaces(plan: Pick<RolloutPlan, "batches">, policy: RolloutPolicy): Record<string, HostRollout> {
  const out: Record<string, HostRollout> = {};
  const n = plan.batches.length;
  if (n < 2) return out;
  plan.batches.forEach((batch, k) => {
    const later = plan.batches.slice(k + 1).flat();
    for (const h of batch) {
      out[h] = { batch: k + 1, batches: n, later: later.slice(0, MAX_NAMED_LATER), laterCount: later.length, maxFailedHosts: policy.maxFailedHosts };
    }
  });
  return out;
}

/**
 * The sentence that ends a host's failure message in a fleet: which hosts its failure keeps from
 * being touched, and why. `undefined` when no host comes after it.
 *
 * With `maxFailedHosts` 0 the rollout stops at the host's batch (the fleet's gate refuses the next
 * batch, and the engine itself starts no new step after a failure). With more, the later batches
 * go on only under `pulumi up --continue-on-error`, until more hosts than that have failed.
 */
export function rolloutNote(place: HostRollout | undefined): string | undefined {
  if (!place || place.laterCount === 0) return undefined;
  const named = place.later.join(", ") + (place.laterCount > place.later.length ? `, … (${place.laterCount} hosts)` : "");
  if (place.maxFailedHosts === 0) {
    return `rollout stopped at this host's batch ${place.batch} of ${place.batches}: not touched: ${named} (rollout.maxFailedHosts 0)`;
  }
  return (
    `rollout: this host is in batch ${place.batch} of ${place.batches}; the later batches (${named}) go on only with ` +
    `pulumi up --continue-on-error, until more than ${place.maxFailedHosts} host(s) have failed (rollout.maxFailedHosts ${place.maxFailedHosts}); without it they are not touched`
  );
}

/** Index of the batch each host is in. */
export function batchIndex(batches: readonly (readonly string[])[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [i, b] of batches.entries()) {
    for (const h of b) out[h] = i;
  }
  return out;
}

/**
 * Whether the rollout may go on to the next batch after `failed` hosts failed in the batches so
 * far: `undefined` when it may, else why not.
 */
export function stopReason(failed: readonly string[], policy: RolloutPolicy): string | undefined {
  if (failed.length <= policy.maxFailedHosts) return undefined;
  return `${failed.length} host(s) failed (${failed.join(", ")}), more than rollout.maxFailedHosts ${policy.maxFailedHosts}`;
}

/** One line for the deployment log: how the rollout goes, why, where the unprobed hosts go, and when it stops. */
export function describeRollout(plan: RolloutPlan, policy: RolloutPolicy): string {
  const hosts = plan.batches.reduce((n, b) => n + b.length, 0);
  const unprobed = plan.unprobed;
  const named = `${unprobed.slice(0, 5).join(", ")}${unprobed.length > 5 ? `, … (${unprobed.length} hosts)` : ""}`;
  const last =
    unprobed.length === 0
      ? ""
      : unprobed.length === hosts
        ? `; no host could be probed (${named})`
        : `; last, in batch(es) of their own: ${named}, which could not be probed (each is probed again when its batch starts), ` +
          `so that their failure cannot stop the hosts that can be deployed`;
  if (plan.batches.length <= 1) return `rollout: all ${hosts} host(s) at once (${plan.reason})${last}`;
  const stop =
    policy.maxFailedHosts === 0
      ? "stops after the first batch with a failed host"
      : `stops after the batch in which more than ${policy.maxFailedHosts} host(s) have failed (needs pulumi up --continue-on-error)`;
  return `rollout: ${plan.batches.length} batches of up to ${plan.batchSize} host(s) (${plan.reason})${last}; ${stop}`;
}
