/**
 * HostSettings: the one custom resource that touches a host, a Pulumi dynamic resource. Its
 * provider (hostSettingsProvider.ts) applies, verifies and restores over SSH; this module holds the
 * resource, the shape of its inputs and outputs, and the pure functions that make those inputs
 * from a decision (core converge.ts).
 * What a run changes is in inputs of its own (`settings`, `files`, `services`, `retired`), so that
 * the engine's diff of old and new inputs (`pulumi preview --diff`) names exactly that.
 */
import * as pulumi from "@pulumi/pulumi";
import { relative, sep } from "node:path";
import type { ApplyPlan, ManagedService, RelistenSocket, ServiceAction } from "../core/plan";
import type { HostChanges, HostDecision } from "../core/converge";
import type { SshConnection } from "../transport/ssh";
import type { ComparisonRow, ExpectedValue } from "../core/verify";
import type { HostRollout } from "../core/rollout";

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
   * run repaired, with each file's `diff` empty (the outputs `changes` of BacklogHost and of the
   * stack keep the diffs; see {@link withoutDiffs}).
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
    // The files' diffs are for approving a preview; after `up` the outputs `changes` of BacklogHost
    // and of the stack keep them. Here they would be stored twice per host (inputs and outputs) and
    // written with every checkpoint of the stack.
    run: { ...(generation !== undefined ? { generation } : {}), steps, retired: retired ?? [], changes: preview ? c : withoutDiffs(c) },
    settings: preview ? settingLines(c) : {},
    files: preview ? Object.fromEntries(c.files.map((f) => [f.path, diffLines(f.diff)])) : {},
    services: preview ? Object.fromEntries(Object.entries(steps).map(([unit, st]) => [unit, { action: st.action, reason: st.reason }])) : {},
    retired: preview ? c.retired : [],
    ...(preview && c.recovers ? { recovers: true as const } : {}),
  };
}

/** The changes with each file's diff left empty (what `up` records in {@link RunInputs.changes}). Pure. */
export function withoutDiffs(c: HostChanges): HostChanges {
  return c.files.length === 0 ? c : { ...c, files: c.files.map((f) => ({ ...f, diff: "" })) };
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
 * What the engine's copy of the provider requires (see {@link providerFor}), for the provider module
 * at `file` (an absolute path) and a project folder `cwd` (the working folder of the engine's
 * dynamic provider process): when the module is installed, the package's own name and export
 * (`pulumi-backlog/internal/pulumi/hostSettingsProvider.js`, from the last `node_modules` on its
 * path, so that it is found wherever the project's modules are); otherwise its path relative to the
 * project (`./.build/src/pulumi/hostSettingsProvider.js`, this repository's compiled program).
 * `undefined` when the module is TypeScript source or an installed module outside `dist/`: then the
 * engine keeps the provider's code itself. Pure.
 */
export function providerSpecifier(file: string, cwd: string): string | undefined {
  const path = file.split(sep).join("/");
  if (!path.endsWith(".js")) return undefined;
  const at = path.lastIndexOf("/node_modules/");
  if (at >= 0) {
    const parts = path.slice(at + "/node_modules/".length).split("/");
    const name = parts[0].startsWith("@") ? parts.splice(0, 2).join("/") : parts.splice(0, 1)[0];
    return parts[0] === "dist" && parts.length > 1 ? `${name}/internal/${parts.slice(1).join("/")}` : undefined;
  }
  const rel = relative(cwd, file).split(sep).join("/");
  return rel.startsWith("../") ? rel : `./${rel}`;
}

/**
 * The module text the engine keeps with each resource (`__provider`) and loads the provider with in
 * its dynamic provider process, for a provider module at `spec` (see {@link providerSpecifier}): a
 * handler that `require`s hostSettingsProvider from there on the first call and hands every call to
 * it. Written here rather than serialized from a function: about 1 KB per host in the state and
 * in every checkpoint, twice (inputs and outputs), instead of the whole provider (about 110 KB from
 * sources; the engine writes the stack's state after every step, so that size was most of a large
 * fleet's run time) or a serialized shim (2.7 KB). Pure.
 */
export function providerModule(spec: string): string {
  const hint = "In this repository, build the program first: npm run build:program (npm ci and npm run pulumi do it).";
  return [
    "exports.handler = function () {",
    `  var spec = ${JSON.stringify(spec)}, impl;`,
    "  function load() {",
    "    if (impl) return impl;",
    '    var target = spec.charAt(0) === "." ? require("path").resolve(process.cwd(), spec) : spec;',
    "    try {",
    "      impl = require(target).hostSettingsProvider;",
    "    } catch (err) {",
    `      throw new Error("pulumi-backlog: the HostSettings provider cannot be loaded from " + target + " (project folder " + process.cwd() + "): " + err.message + ${JSON.stringify(`\n${hint}`)});`,
    "    }",
    "    return impl;",
    "  }",
    "  return {",
    "    check: async function (o, n) { return load().check(o, n); },",
    "    diff: async function (id, o, n) { return load().diff(id, o, n); },",
    "    create: async function (i) { return load().create(i); },",
    "    update: async function (id, o, n) { return load().update(id, o, n); },",
    "    delete: async function (id, p) { return load().delete(id, p); },",
    "    read: async function (id, p) { return load().read(id, p); },",
    "  };",
    "};",
    "",
  ].join("\n");
}

let providerText: pulumi.Input<string> | undefined;

/**
 * What HostSettings keeps as `__provider` (one per process): from compiled JavaScript,
 * {@link providerModule} of where hostSettingsProvider.js is; from TypeScript sources (tests,
 * examples run by ts-node), the provider itself serialized by value, as Pulumi does for any dynamic
 * provider's code.
 */
export function providerFor(): pulumi.Input<string> {
  if (providerText === undefined) {
    const spec = providerSpecifier(`${__dirname}${sep}hostSettingsProvider${__filename.endsWith(".js") ? ".js" : ".ts"}`, process.cwd());
    if (spec) providerText = providerModule(spec);
    else {
      const provider = require("./hostSettingsProvider").hostSettingsProvider as pulumi.dynamic.ResourceProvider;
      providerText = pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true }).then((f) => f.text);
    }
  }
  return providerText;
}

/**
 * Applies, verifies and on delete restores one host's backlog settings. Created by
 * {@link BacklogHost}; use that component rather than this resource directly.
 */
export class HostSettings extends pulumi.CustomResource {
  declare public readonly verification: pulumi.Output<ComparisonRow[]>;
  declare public readonly inSync: pulumi.Output<boolean>;
  declare public readonly applied: pulumi.Output<Record<string, string> | undefined>;

  constructor(name: string, args: HostSettingsArgs, opts?: pulumi.CustomResourceOptions) {
    // A dynamic resource (Pulumi's own dynamic provider runs it), registered as
    // pulumi.dynamic.Resource does but with the provider's module text made here (providerFor).
    // Type pulumi-nodejs:dynamic/backlog:HostSettings (what it is, in previews); the alias keeps
    // resources made by 0.1 (type pulumi-nodejs:dynamic:Resource) from being replaced.
    super(
      "pulumi-nodejs:dynamic/backlog:HostSettings",
      name,
      { ...args, __provider: providerFor(), verification: undefined, applied: undefined, inSync: undefined },
      {
        ...opts,
        additionalSecretOutputs: ["connection"],
        hideDiffs: [...(opts?.hideDiffs ?? []), "run"],
        aliases: [...(opts?.aliases ?? []), { type: "pulumi-nodejs:dynamic:Resource" }],
      },
    );
  }
}
