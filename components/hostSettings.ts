/**
 * HostSettings: the one custom resource that touches a host. It is a Pulumi dynamic resource whose
 * provider runs the scripts of {@link ./plan} over one SSH connection each:
 * - create/update: apply (files, config tests, sysctl -p, restarts) and verify; a verification
 *   mismatch fails the operation with a table of host, setting, expected and effective;
 * - delete: restore what was there before the first deploy, and verify that;
 * - read (`pulumi refresh`): probe, and report whether the host still matches (drift).
 * Diffs compare fingerprints only: an unchanged, in-sync host costs no SSH connection here.
 */
import * as pulumi from "@pulumi/pulumi";
import { ApplyPlan, ServiceAction, applyScript, contentHash, probeScript, reportToken, restoreScript } from "./plan";
import type { HostChanges } from "./converge";
import { HostReport, effectiveOf, parseReport } from "./report";
import { ScriptResult, SshConnection, runScript } from "./ssh";
import { ComparisonRow, ExpectedValue, compare, formatMismatchTable } from "./verify";

/** Plain inputs of the provider (the component passes Outputs of these). */
export interface HostSettingsInputs {
  /** SSH connection; a secret in state. */
  connection: SshConnection;
  /** Name of the host in messages and outputs. */
  hostName: string;
  /** `user@host:port` of the connection, not secret: a change replaces the resource. */
  target: string;
  /** What to apply (unset when the probe failed, see {@link probeFailure}). */
  plan?: ApplyPlan;
  /** What verification expects after the apply. */
  expected?: ExpectedValue[];
  /** Kernel values before the first deploy: what delete puts back and verifies. */
  before?: Record<string, number | undefined>;
  /** Fingerprint of the wanted state. */
  desiredHash?: string;
  /** Whether the host matched the profile when the program probed it. */
  inSync: boolean;
  /** Why the program could not probe the host (then plan, expected, before and desiredHash are unset). */
  probeFailure?: string;
  /**
   * What a delete does when the host cannot be reached (gone, replaced, or with another host key):
   * `forget` (default) succeeds with a warning naming the host and what stays on it; `fail` fails.
   */
  onGone?: "forget" | "fail";
  /**
   * What this run changes on the host (converge.ts `HostChanges`), decided from the probe: in the
   * state after the run it is what the run changed (the drift it repaired), and in
   * `pulumi preview --json` it is in this resource's step, for CI gates.
   */
  changes?: HostChanges;
}

/** Outputs: the inputs plus what verification found and what the last apply did. */
export interface HostSettingsOutputs extends HostSettingsInputs {
  verification: ComparisonRow[];
  /** Per unit, what the last apply did (`relisten`, `reload`, `restart`, `restart (fallback: …)`, `none`). */
  applied?: Record<string, string>;
}

/** The message of a script that stopped: host, what, step, rollback state and the step's output. */
export function failureMessage(host: string, what: string, report: HostReport | undefined, result: ScriptResult): string {
  const step = report?.failure?.step ?? report?.steps.at(-1) ?? "start";
  if (result.timedOut) {
    return `${host}: ${what} timed out in step ${step}: the connection was closed and the host rolls the run back (see connection.scriptTimeoutSeconds)`;
  }
  const rolled = report?.rolledBack === true ? " (everything was put back)" : report?.rolledBack === false ? " (the rollback was INCOMPLETE: see the host's /var/lib/pulumi-backlog/txn)" : "";
  const detail = report?.failure ? report.failure.output : result.stderr.trim() || "(no output)";
  return `${host}: ${what} failed at ${step}${rolled}:\n${detail}`;
}

function verify(host: string, expected: ExpectedValue[], report: HostReport): ComparisonRow[] {
  const rows = compare(expected, effectiveOf(report));
  if (rows.some((r) => !r.ok)) {
    throw new Error(`${host}: verification failed, the host does not have what the profile says:\n` +
      formatMismatchTable([{ host, rows }]));
  }
  return rows;
}

/** Runs a script on the host and parses its report; a connection failure or a report that does not parse names the host. */
async function run(inputs: Pick<HostSettingsInputs, "connection" | "hostName">, what: string, script: (token: string) => string) {
  const token = reportToken();
  let result: ScriptResult;
  try {
    result = await runScript(inputs.connection, script(token));
  } catch (err) {
    throw new Error(`${inputs.hostName}: ${(err as Error).message}`);
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

function restorePlan(props: HostSettingsInputs & { plan: ApplyPlan }) {
  return { stateDir: props.plan.stateDir, owner: props.plan.owner, ...(props.plan.legacyName ? { legacyName: props.plan.legacyName } : {}), paths: props.plan.files.map((f) => f.path), sysctlKeys: props.plan.sysctlKeys, services: props.plan.services };
}

async function apply(inputs: HostSettingsInputs, creating: boolean): Promise<HostSettingsOutputs> {
  if (inputs.probeFailure || !inputs.plan || !inputs.expected) {
    throw new Error(`${inputs.hostName}: ${inputs.probeFailure ?? "nothing to apply: the host was not probed"}`);
  }
  const plan = inputs.plan;
  const step = inputs.connection.scriptTimeoutSeconds;
  const report = await run(inputs, "apply", (token) => applyScript(plan, { token, ...(step ? { stepTimeoutSeconds: Math.max(10, Math.floor(step / 3)) } : {}) }));
  let verification: ComparisonRow[];
  try {
    verification = verify(inputs.hostName, inputs.expected, report);
  } catch (err) {
    if (!creating) throw err;
    // A create that fails leaves nothing in the state, so destroy would never restore this host:
    // give it back now, so that it is exactly as before.
    const given = await run(inputs, "restore", (token) => restoreScript(restorePlan({ ...inputs, plan }), { token })).then(() => "the host was given back as it was before", (e: Error) => `giving the host back failed too: ${e.message}`);
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

/** The dynamic provider. Exported for tests; use {@link HostSettings}. */
export const hostSettingsProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: HostSettingsOutputs, news: HostSettingsInputs): Promise<pulumi.dynamic.DiffResult> {
    const replaces = olds.target !== news.target ? ["target"] : [];
    const changes = replaces.length > 0 || news.probeFailure !== undefined || olds.desiredHash !== news.desiredHash || !news.inSync || !olds.inSync;
    return { changes, replaces, deleteBeforeReplace: true };
  },

  async create(inputs: HostSettingsInputs): Promise<pulumi.dynamic.CreateResult> {
    const outs = await apply(inputs, true);
    return { id: `${inputs.hostName}:${outs.plan?.stateDir}/owners/${outs.plan?.owner}`, outs };
  },

  async update(_id: string, _olds: HostSettingsOutputs, news: HostSettingsInputs): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: await apply(news, false) };
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
      await warnFromProvider(`${props.hostName}: forgotten without restoring: the host cannot be reached (${message.replace(/^[^:]*: /, "")}). ` +
        `If it comes back, what the deployment changed is still on it, with its originals in ${plan.stateDir}: put it back into the inventory and deploy (then destroy gives them back).`);
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
    if (!props.plan || !props.expected) return { id, props };
    const plan = props.plan;
    const report = await run(props, "probe", (token) => probeScript({
      stateDir: plan.stateDir,
      owner: plan.owner,
      sysctlKeys: plan.sysctlKeys,
      paths: plan.files.map((f) => f.path),
      units: plan.services.map((s) => s.unit),
      ...plan.sockets,
    }, { token }));
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
    super(hostSettingsProvider, name, { ...args, verification: undefined, applied: undefined },
      { ...opts, additionalSecretOutputs: ["connection"], aliases: [...(opts?.aliases ?? []), { type: "pulumi-nodejs:dynamic:Resource" }] },
      "backlog", "HostSettings");
  }
}
