/**
 * HostSettings: the one custom resource that touches a host. It is a Pulumi dynamic resource whose
 * provider runs the scripts of {@link ./plan} over one SSH connection each:
 * - create/update: apply (files, config tests, sysctl -p, restarts) and verify; a verification
 *   mismatch fails the operation with a table of host, setting, expected and effective;
 * - delete: restore what was there before the first deploy, and verify that;
 * - read (`pulumi refresh`): probe, and report whether the host still matches (drift).
 * Diffs compare the program's decision only: an unchanged, in-sync host costs no SSH connection here.
 * What a run changes is in inputs of its own (`settings`, `files`, `services`, `retired`), so that
 * the engine's diff of old and new inputs (`pulumi preview --diff`) names exactly that.
 */
import * as pulumi from "@pulumi/pulumi";
import { watchEngine } from "./engineWatch";
import {
  type ApplyPlan,
  type ManagedService,
  type RelistenSocket,
  type ServiceAction,
  applyScript,
  contentHash,
  observeSpec,
  probeScript,
  reportToken,
  restoreScript,
} from "../core/plan";
import type { HostChanges, HostDecision } from "../core/converge";
import { type HostReport, effectiveOf, parseReport } from "../core/report";
import { type ScriptResult, type SshConnection, runScript } from "../transport/ssh";
import { type ComparisonRow, type ExpectedValue, compare, formatMismatchTable } from "../core/verify";
import { type HostRollout, rolloutNote } from "../core/rollout";

/** Plain inputs of the provider (the component passes Outputs of these). */
export interface HostSettingsInputs {
  /** SSH connection; a secret in state. */
  connection: SshConnection;
  /** Name of the host in messages and outputs. */
  hostName: string;
  /** `user@host:port` of the connection, not secret: a change replaces the resource. */
  target: string;
  /**
   * What to apply, without what differs from run to run (unset when the probe failed, see
   * {@link probeFailure}): files with their rendered contents, kernel keys, units, sockets. It stays
   * the same while the profile and the host's own values stay the same, so `pulumi preview --diff`
   * does not show it for a drifted host. The run's own parts are in {@link run};
   * {@link applyPlanOf} puts them together. (States written before this shape hold the whole
   * `ApplyPlan` here; they still work.)
   */
  plan?: RecordedPlan;
  /**
   * This run's own part of the plan: the host's state generation the probe saw, each touched unit's
   * step (with the sockets' inodes), the files given back, and how many changes the run makes.
   * Its diff is hidden (resource option `hideDiffs`): previews show at most `~ run (hidden)`.
   */
  run?: RunInputs;
  /**
   * What this run changes, one field each, as `pulumi preview --diff` shows them (the engine diffs
   * these inputs against the state's). Per setting (kernel key, or a socket's effective backlog)
   * that differs: `"current → wanted"`, e.g. `{"net.core.somaxconn": "1000 → 8192"}`; a socket not
   * listening reads `missing`, and mode `atLeast` reads `→ >=8192`.
   *
   * This and {@link files}, {@link services}, {@link retired}, {@link recovers} are filled in
   * previews only; `up` records them empty, which is what is pending once its apply verified. So
   * the state always holds "nothing pending", and the next preview shows exactly what differs then
   * (not the difference to what the last run repaired).
   */
  settings?: Record<string, string>;
  /**
   * Per managed file that differs from the profile: its unified diff (host → profile, hunks only,
   * at most 60 lines), one line per element. Previews only (see {@link settings}).
   */
  files?: Record<string, string[]>;
  /** Per unit that this run touches: its action and why. Previews only (see {@link settings}). */
  services?: Record<string, { action: Exclude<ServiceAction, "none">; reason: string }>;
  /** Files that go back to their originals (no longer in the profile). Previews only (see {@link settings}). */
  retired?: string[];
  /** `true` when an earlier run on the host was cut short: it is rolled back first. Previews only; absent otherwise. */
  recovers?: true;
  /** What verification expects after the apply. */
  expected?: ExpectedValue[];
  /** Kernel values before the first deploy: what delete puts back and verifies. */
  before?: Record<string, number | undefined>;
  /** Fingerprint of the wanted state. */
  desiredHash?: string;
  /**
   * @deprecated Not read any more (whether the run changes the host is in {@link settings},
   * {@link files}, {@link services}, {@link retired}); states written by earlier versions hold it.
   */
  inSync?: boolean;
  /** Why the program could not probe the host (then plan, expected, before and desiredHash are unset). */
  probeFailure?: string;
  /**
   * What a delete does when the host cannot be reached (gone, replaced, or with another host key):
   * `forget` (default) succeeds with a warning naming the host and what stays on it; `fail` fails.
   */
  onGone?: "forget" | "fail";
  /**
   * Whether the machine is there to be deployed (default `"present"`). `"stopped"` (it exists but
   * cannot answer, e.g. a stopped EC2 instance) and `"gone"` (it will never answer again, e.g. a
   * terminated EC2 instance) make this resource touch nothing and open no SSH connection: its
   * inputs stay those of its last deploy (`check`), and a change of presence is an update that
   * records only the presence, so that `pulumi refresh` does not try to reach it. `BacklogHost` also
   * registers a `"gone"` host with `retainOnDelete`, so that once it leaves the program the engine
   * drops it without calling delete.
   */
  presence?: HostPresence;
}

/** One unit's step in {@link RunInputs.steps}. */
export interface ServiceStep {
  /** `relisten`, `reload` or `restart` (see plan.ts `ServiceAction`). */
  action: Exclude<ServiceAction, "none">;
  /** Why (e.g. `/etc/php/8.2/fpm/pool.d/www.conf: only the backlog changes`). */
  reason: string;
  /** The sockets listened again in place (actions `relisten` and `reload`), with old and new backlog; omitted when none. */
  relisten?: RelistenSocket[];
}

/** {@link HostSettingsInputs.run}. */
export interface RunInputs {
  /** The host's state generation the probe saw (see plan.ts `ApplyPlan.generation`). */
  generation?: number;
  /** Per unit that this run touches, its step; a unit not named gets `none`. */
  steps: Record<string, ServiceStep>;
  /** Files that go back to their originals. */
  retired: string[];
  /**
   * What the run changes, structured (converge.ts `HostChanges`: each setting with `current` and
   * `wanted` numbers, each file with its diff, the services' actions): in `pulumi preview --json`
   * at `steps[].newState.inputs.run.changes`, for CI gates; in the state after `up`, the drift that
   * run repaired.
   */
  changes: HostChanges;
  /**
   * The host's place in its fleet's rollout (set by `BacklogFleet` when the rollout has more than
   * one batch; see {@link runWithPlace}): a failure of this host ends its message with the hosts it
   * leaves untouched (core rollout.ts `rolloutNote`). Read only when the host fails. Part of `run`
   * so that it adds no line of its own to `pulumi preview --diff`; a change of it alone is no change
   * (the diff looks at the changes, not at the place).
   */
  rolloutPlace?: HostRollout;
}

/** {@link HostSettingsInputs.plan}: an `ApplyPlan` whose services carry unit, test and ports only. */
export type RecordedPlan = Omit<ApplyPlan, "services" | "generation" | "retired"> & {
  services: (Omit<ManagedService, "action"> & { action?: ServiceAction })[];
  /** Only in states written before {@link HostSettingsInputs.run} existed. */
  generation?: number;
  /** Only in states written before {@link HostSettingsInputs.run} existed. */
  retired?: string[];
};

/** The inputs a decision gives (see {@link HostSettingsInputs}). */
export type DecisionInputs = Required<Pick<HostSettingsInputs, "plan" | "run" | "settings" | "files" | "services" | "retired">> &
  Pick<HostSettingsInputs, "recovers">;

/**
 * Splits a decision (converge.ts `decide`) into the resource's inputs: the plan without the run's
 * own parts (`plan`), those parts (`run`), and, in a preview (`preview` true), the changes as fields
 * of their own, so that the engine's diff of old and new inputs names what changes and nothing
 * else; for `up` they are empty (what is pending after its apply). Pure.
 */
export function decisionInputs(d: Pick<HostDecision, "plan" | "changes">, preview: boolean): DecisionInputs {
  const { generation, retired, services, ...rest } = d.plan;
  const steps: Record<string, ServiceStep> = {};
  for (const s of services) {
    if (s.action === "none") continue;
    steps[s.unit] = { action: s.action, reason: s.reason ?? "", ...(s.relisten?.length ? { relisten: s.relisten } : {}) };
  }
  const c = d.changes;
  return {
    plan: { ...rest, services: services.map(({ unit, test, ports }) => ({ unit, test, ...(ports ? { ports } : {}) })) },
    run: { ...(generation !== undefined ? { generation } : {}), steps, retired: retired ?? [], changes: c },
    settings: preview ? settingLines(c) : {},
    files: preview ? Object.fromEntries(c.files.map((f) => [f.path, diffLines(f.diff)])) : {},
    services: preview ? Object.fromEntries(Object.entries(steps).map(([unit, st]) => [unit, { action: st.action, reason: st.reason }])) : {},
    retired: preview ? c.retired : [],
    ...(preview && c.recovers ? { recovers: true as const } : {}),
  };
}

/**
 * {@link HostSettingsInputs.run} with the host's place in its fleet's rollout (none: as it is). A
 * host without a decision (its probe failed) that has a place gets a run that changes nothing but
 * carries the place, so that its failure message names the hosts after it too. Pure.
 */
export function runWithPlace(run: RunInputs | undefined, place: HostRollout | undefined): RunInputs | undefined {
  if (place === undefined) return run;
  const base: RunInputs = run ?? { steps: {}, retired: [], changes: { settings: [], files: [], retired: [], services: [], recovers: false } };
  return { ...base, rolloutPlace: place };
}

/** Per setting, `current → wanted` (mode atLeast: `→ >=wanted`; a socket not listening: `missing`). */
export function settingLines(c: Pick<HostChanges, "settings">): Record<string, string> {
  return Object.fromEntries(c.settings.map((s) => [s.setting, `${s.current ?? "missing"} → ${s.comparison === "atLeast" ? ">=" : ""}${s.wanted}`]));
}

/** A unified diff's lines without its `---`/`+++` header (the file's path is the key already). */
function diffLines(diff: string): string[] {
  return diff
    .replace(/\n$/, "")
    .split("\n")
    .filter((l, i) => !(i < 2 && /^(---|\+\+\+) /.test(l)));
}

/** Whether the inputs say this run changes anything on the host. */
export function hasChanges(i: Pick<HostSettingsInputs, "run" | "settings" | "files" | "services" | "retired" | "recovers">): boolean {
  const c = i.run?.changes;
  const inRun = c !== undefined && (c.settings.length > 0 || c.files.length > 0 || c.retired.length > 0 || c.services.length > 0 || c.recovers);
  return (
    inRun ||
    Object.keys(i.run?.steps ?? {}).length > 0 ||
    (i.run?.retired ?? []).length > 0 ||
    Object.keys(i.settings ?? {}).length > 0 ||
    Object.keys(i.files ?? {}).length > 0 ||
    Object.keys(i.services ?? {}).length > 0 ||
    (i.retired ?? []).length > 0 ||
    i.recovers === true
  );
}

/**
 * The `ApplyPlan` the scripts take, put together from {@link HostSettingsInputs.plan} and
 * {@link HostSettingsInputs.run}; a state of the earlier shape (whole plan in `plan`, no `run`)
 * gives its plan as it is. Pure.
 */
export function applyPlanOf(i: Pick<HostSettingsInputs, "plan" | "run">): ApplyPlan | undefined {
  if (!i.plan) return undefined;
  const run = i.run;
  const generation = run ? run.generation : i.plan.generation;
  return {
    ...i.plan,
    ...(generation !== undefined ? { generation } : {}),
    retired: run?.retired ?? i.plan.retired ?? [],
    services: i.plan.services.map((s) => {
      const step = run?.steps[s.unit];
      const action: ServiceAction = run ? (step?.action ?? "none") : (s.action ?? "none");
      const reason = run ? step?.reason : s.reason;
      const relisten = run ? (step ? (step.relisten ?? []) : undefined) : s.relisten;
      return {
        unit: s.unit,
        test: s.test,
        action,
        ...(reason ? { reason } : {}),
        ...((action === "relisten" || action === "reload") && relisten ? { relisten } : {}),
        ...(s.ports ? { ports: s.ports } : {}),
      };
    }),
  };
}

/**
 * Whether a host's machine is there: `"present"` (deploy it), `"stopped"` (it exists but cannot
 * answer: keep its last deployed state, touch nothing), `"gone"` (it will never answer again:
 * forget it without SSH). See docs/fleets.md.
 */
export type HostPresence = "present" | "stopped" | "gone";

/** The values of {@link HostPresence}. */
export const HOST_PRESENCES: readonly HostPresence[] = Object.freeze(["present", "stopped", "gone"] as const);

/** Outputs: the inputs plus what verification found and what the last apply did. */
export interface HostSettingsOutputs extends HostSettingsInputs {
  verification: ComparisonRow[];
  /**
   * Whether the host matches the profile: `true` after an apply that verified; `pulumi refresh`
   * sets it from a new probe (`false`: drift since the last deploy, which the next `up` repairs).
   */
  inSync?: boolean;
  /** Per unit, what the last apply did (`relisten`, `reload`, `restart`, `restart (fallback: …)`, `none`). */
  applied?: Record<string, string>;
}

/** The message of a script that stopped: host, what, step, rollback state and the step's output. */
export function failureMessage(host: string, what: string, report: HostReport | undefined, result: ScriptResult): string {
  const step = report?.failure?.step ?? report?.steps.at(-1) ?? "start";
  if (result.timedOut) {
    return `${host}: ${what} timed out in step ${step}: the connection was closed and the host rolls the run back (see connection.scriptTimeoutSeconds)`;
  }
  const rolled =
    report?.rolledBack === true
      ? " (everything was put back)"
      : report?.rolledBack === false
        ? " (the rollback was INCOMPLETE: see the host's /var/lib/pulumi-backlog/txn)"
        : "";
  const detail = report?.failure ? report.failure.output : result.stderr.trim() || "(no output)";
  return `${host}: ${what} failed at ${step}${rolled}:\n${detail}`;
}

function verify(host: string, expected: ExpectedValue[], report: HostReport): ComparisonRow[] {
  const rows = compare(expected, effectiveOf(report));
  // Advisory rows (a sysctl conflict left in mode report) are reported in the output, not fatal.
  if (rows.some((r) => !r.ok && !r.advisory)) {
    throw new Error(
      `${host}: verification failed, the host does not have what the profile says:\n` + formatMismatchTable([{ host, rows: rows.filter((r) => !r.advisory) }]),
    );
  }
  return rows;
}

/** Runs a script on the host and parses its report; a connection failure or a report that does not parse names the host. */
async function run(inputs: Pick<HostSettingsInputs, "connection" | "hostName">, what: string, script: (token: string) => string) {
  const token = reportToken();
  let result: ScriptResult;
  // A killed `pulumi` leaves this provider running: the session ends with the engine instead.
  const engine = watchEngine();
  try {
    result = await runScript(inputs.connection, script(token), { signal: engine.signal });
  } catch (err) {
    throw new Error(`${inputs.hostName}: ${(err as Error).message}`);
  } finally {
    engine.stop();
  }
  let report: HostReport | undefined;
  try {
    report = parseReport(result.stdout, token);
  } catch (err) {
    if (result.code === 0) throw new Error(`${inputs.hostName}: ${what}: the host's report was rejected: ${(err as Error).message}`);
  }
  if (result.code !== 0 || !report?.complete) throw new Error(failureMessage(inputs.hostName, what, report, result));
  return report;
}

/** What each service got, from an apply's report. */
function appliedActions(plan: ApplyPlan, report: HostReport): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of plan.services) {
    const fallback = report.fallbacks[s.unit];
    const did = report.did.filter((d) => d.unit === s.unit).map((d) => d.action);
    out[s.unit] = fallback !== undefined ? `restart (fallback: ${fallback.split("\n")[0]})` : did.length ? did.join("+") : "none";
  }
  return out;
}

function restorePlan(props: { plan: RecordedPlan }) {
  return {
    stateDir: props.plan.stateDir,
    owner: props.plan.owner,
    ...(props.plan.legacyName ? { legacyName: props.plan.legacyName } : {}),
    paths: props.plan.files.map((f) => f.path),
    sysctlKeys: props.plan.sysctlKeys,
    services: props.plan.services.map((s) => ({ unit: s.unit })),
  };
}

async function apply(inputs: HostSettingsInputs, creating: boolean): Promise<HostSettingsOutputs> {
  if (inputs.probeFailure || !inputs.plan || !inputs.expected) {
    throw new Error(`${inputs.hostName}: ${inputs.probeFailure ?? "nothing to apply: the host was not probed"}`);
  }
  const plan = applyPlanOf(inputs) as ApplyPlan;
  const step = inputs.connection.scriptTimeoutSeconds;
  const report = await run(inputs, "apply", (token) =>
    applyScript(plan, { token, ...(step ? { stepTimeoutSeconds: Math.max(10, Math.floor(step / 3)) } : {}) }),
  );
  let verification: ComparisonRow[];
  try {
    verification = verify(inputs.hostName, inputs.expected, report);
  } catch (err) {
    if (!creating) throw err;
    // A create that fails leaves nothing in the state, so destroy would never restore this host:
    // give it back now, so that it is exactly as before.
    const given = await run(inputs, "restore", (token) => restoreScript(restorePlan({ ...inputs, plan }), { token })).then(
      () => "the host was given back as it was before",
      (e: Error) => `giving the host back failed too: ${e.message}`,
    );
    throw new Error(`${(err as Error).message}\n${given}`);
  }
  return { ...inputs, inSync: true, verification, applied: appliedActions(plan, report) };
}

/**
 * A warning from inside the dynamic provider, shown by the engine like the program's own. The
 * dynamic provider's process does not connect its log to the engine by itself; its first argument
 * is the engine's address, so it is connected here (falls back to stderr).
 */
async function warnFromProvider(message: string): Promise<void> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const settings = require("@pulumi/pulumi/runtime/settings");
    const addr = process.argv[2];
    if (!settings.getEngine() && addr && /^[\w.:[\]-]+$/.test(addr)) {
      settings.resetOptions(settings.options().project ?? "", settings.options().stack ?? "", 1, addr, "", false, "");
    }
    await pulumi.log.warn(message);
  } catch {
    console.error(`warning: ${message}`);
  }
}

/**
 * Runs `f`; when it fails and the host has hosts after it in its fleet's rollout, the message ends
 * with a line that names them and says why they are not touched (see {@link RunInputs.rolloutPlace}).
 */
async function withRolloutNote<T>(inputs: Pick<HostSettingsInputs, "run">, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    const note = rolloutNote(inputs.run?.rolloutPlace);
    if (note === undefined) throw err;
    throw new Error(`${(err as Error).message}\n${note}`);
  }
}

/** Whether every input of `news` has the same value in `olds` (the dynamic provider's own key aside). */
function sameInputs(olds: object, news: object): boolean {
  const canon = (v: unknown): string =>
    JSON.stringify(v, (_k, x) =>
      x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(
            Object.entries(x)
              .filter(([, y]) => y !== undefined)
              .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
          )
        : x,
    );
  const o = olds as Record<string, unknown>;
  return (
    Object.entries(news).every(([k, v]) => k === "__provider" || k === "inSync" || v === undefined || canon(o[k]) === canon(v)) &&
    Object.keys(o).every((k) => k in news || ["__provider", "verification", "applied", "inSync"].includes(k) || o[k] === undefined)
  );
}

/** The dynamic provider. Exported for tests; use {@link HostSettings}. */
export const hostSettingsProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: Partial<HostSettingsInputs>, news: HostSettingsInputs): Promise<pulumi.dynamic.CheckResult> {
    // A stopped or gone machine was not probed: the program has no decision for it. Its inputs stay
    // those of its last deploy, with only the program's view of the machine new (its presence, how
    // to reach it, its name), so that `pulumi preview --diff` shows `presence` and nothing else.
    if ((news.presence ?? "present") === "present" || olds.plan === undefined) return { inputs: news };
    const { connection, hostName, target, onGone, presence } = news;
    return { inputs: { ...olds, connection, hostName, target, onGone, presence } };
  },

  async diff(_id: string, olds: HostSettingsOutputs, news: HostSettingsInputs): Promise<pulumi.dynamic.DiffResult> {
    // A stopped or gone machine: nothing to do on it and nobody to ask. Only a change of presence is
    // an update, which records it without SSH (so that `pulumi refresh` knows not to try).
    const presence = news.presence ?? "present";
    const was = olds.presence ?? "present";
    if (presence !== "present") return { changes: presence !== was };
    if (olds.target !== news.target) return { changes: true, replaces: ["target"], deleteBeforeReplace: true };
    // A machine recorded as stopped or gone that is present again is checked (apply and verify).
    const needed =
      was !== "present" || news.probeFailure !== undefined || !olds.plan || olds.desiredHash !== news.desiredHash || hasChanges(news) || olds.inSync === false;
    if (!needed) return { changes: false };
    // "Unknown": the engine then diffs the old inputs against these itself and shows only the fields
    // that differ (the settings, file diffs and service steps of this run), instead of printing every
    // input. When they are equal it would see no change at all, and when this provider's own code
    // changed (another version of the library) it would print that code's diff: then say "change"
    // here (the engine prints every input, its own key aside).
    const code = (p: object) => (p as Record<string, unknown>).__provider;
    return code(olds) !== code(news) || sameInputs(olds, news) ? { changes: true } : {};
  },

  async create(inputs: HostSettingsInputs): Promise<pulumi.dynamic.CreateResult> {
    if ((inputs.presence ?? "present") !== "present") {
      // Never deployed and not there now: recorded without a plan (a later delete does nothing);
      // deployed once it is present, as an update that starts from nothing.
      return { id: `${inputs.hostName}:not-deployed`, outs: { ...inputs, verification: [] } };
    }
    const outs = await withRolloutNote(inputs, () => apply(inputs, true));
    return { id: `${inputs.hostName}:${outs.plan?.stateDir}/owners/${outs.plan?.owner}`, outs };
  },

  async update(_id: string, olds: HostSettingsOutputs, news: HostSettingsInputs): Promise<pulumi.dynamic.UpdateResult> {
    // A machine now stopped or gone: record its presence (and the options of its registration), no SSH.
    if ((news.presence ?? "present") !== "present") return { outs: { ...olds, presence: news.presence, onGone: news.onGone } };
    // A host recorded while stopped or gone (no plan yet) is deployed for the first time: a failed
    // verification gives it back, as a create does.
    return { outs: await withRolloutNote(news, () => apply(news, !olds.plan)) };
  },

  async delete(_id: string, props: HostSettingsOutputs): Promise<void> {
    if (!props.plan) return; // never applied
    const plan = props.plan;
    let report: HostReport;
    try {
      report = await run(props, "restore", (token) => restoreScript(restorePlan({ ...props, plan }), { token }));
    } catch (err) {
      const message = (err as Error).message;
      // Unreachable after every attempt, or another machine answers (new host key): the host we
      // deployed is gone. Forgetting it touches nothing; what it had stays there, restorable later.
      const gone = /: (cannot connect to|host key mismatch for|timed out after \d+ s connecting to)/.test(message);
      if (!gone || props.onGone === "fail") throw err;
      await warnFromProvider(
        `${props.hostName}: forgotten without restoring: the host cannot be reached (${message.replace(/^[^:]*: /, "")}). ` +
          `If it comes back, what the deployment changed is still on it, with its originals in ${plan.stateDir}: put it back into the inventory and deploy (then destroy gives them back).`,
      );
      return;
    }
    if (report.warnings.some((w) => w.startsWith("shared with other owners"))) return;
    const before = props.before ?? {};
    const wrong = plan.sysctlKeys.filter((k) => before[k] !== undefined && report.sysctls[k] !== before[k]);
    if (wrong.length > 0) {
      throw new Error(`${props.hostName}: restore did not bring back ${wrong.map((k) => `${k} (wanted ${before[k]}, has ${report.sysctls[k]})`).join(", ")}`);
    }
  },

  async read(id: string, props: HostSettingsOutputs): Promise<pulumi.dynamic.ReadResult> {
    // A machine recorded as stopped or gone cannot answer: keep what the state says, no SSH.
    if (!props.plan || !props.expected || (props.presence ?? "present") !== "present") return { id, props };
    const plan = props.plan;
    const report = await run(props, "probe", (token) => probeScript(observeSpec(plan), { token }));
    const verification = compare(props.expected, effectiveOf(report));
    const filesOk = plan.files.every((f) => report.files[f.path] === contentHash(f.content));
    return { id, props: { ...props, verification, inSync: filesOk && !report.journalOpen && verification.every((r) => r.ok) } };
  },
};

/** Planned actions of a plan, by unit (what `preview` shows and the rollout decides on). */
export function plannedActions(plan: Pick<ApplyPlan, "services"> | undefined): Record<string, ServiceAction> {
  return Object.fromEntries((plan?.services ?? []).map((s) => [s.unit, s.action]));
}

/** Arguments of {@link HostSettings}: Pulumi inputs of {@link HostSettingsInputs}. */
export type HostSettingsArgs = { [K in keyof HostSettingsInputs]: pulumi.Input<HostSettingsInputs[K]> };

/**
 * The arguments of {@link HostSettings} that come from a decision (see {@link decisionInputs}), one
 * Output per field; all unset when there is no decision (the probe failed).
 */
export function decisionArgs(decision: pulumi.Output<Pick<HostDecision, "plan" | "changes"> | undefined>): {
  [K in keyof DecisionInputs]: pulumi.Output<DecisionInputs[K] | undefined>;
} {
  const preview = pulumi.runtime.isDryRun();
  const inputs = decision.apply((d) => (d ? decisionInputs(d, preview) : undefined));
  const field = <K extends keyof DecisionInputs>(k: K) => inputs.apply((i) => i?.[k]);
  return {
    plan: field("plan"),
    run: field("run"),
    settings: field("settings"),
    files: field("files"),
    services: field("services"),
    retired: field("retired"),
    recovers: field("recovers"),
  };
}

/**
 * Applies, verifies and on delete restores one host's backlog settings. Created by
 * {@link BacklogHost}; use that component rather than this resource directly.
 */
export class HostSettings extends pulumi.dynamic.Resource {
  declare public readonly verification: pulumi.Output<ComparisonRow[]>;
  declare public readonly inSync: pulumi.Output<boolean>;
  declare public readonly applied: pulumi.Output<Record<string, string> | undefined>;

  constructor(name: string, args: HostSettingsArgs, opts?: pulumi.CustomResourceOptions) {
    // Type pulumi-nodejs:dynamic/backlog:HostSettings (what it is, in previews); the alias keeps
    // resources made by 0.1 (type pulumi-nodejs:dynamic:Resource) from being replaced.
    super(
      hostSettingsProvider,
      name,
      { ...args, verification: undefined, applied: undefined, inSync: undefined },
      {
        ...opts,
        additionalSecretOutputs: ["connection"],
        hideDiffs: [...(opts?.hideDiffs ?? []), "run"],
        aliases: [...(opts?.aliases ?? []), { type: "pulumi-nodejs:dynamic:Resource" }],
      },
      "backlog",
      "HostSettings",
    );
  }
}
