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
import { ApplyPlan, HostReport, applyScript, contentHash, effectiveOf, parseReport, probeScript, restoreScript } from "./plan";
import { SshConnection, runScript } from "./ssh";
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
}

/** Outputs: the inputs plus what verification found. */
export interface HostSettingsOutputs extends HostSettingsInputs {
  verification: ComparisonRow[];
}

function fail(host: string, what: string, report: HostReport, stderr: string): never {
  const detail = report.failure ? `${report.failure.step}:\n${report.failure.output}` : stderr.trim() || "(no output)";
  throw new Error(`${host}: ${what} failed at ${detail}`);
}

function verify(host: string, expected: ExpectedValue[], report: HostReport): ComparisonRow[] {
  const rows = compare(expected, effectiveOf(report));
  if (rows.some((r) => !r.ok)) {
    throw new Error(`${host}: verification failed, the host does not have what the profile says:\n` +
      formatMismatchTable([{ host, rows }]));
  }
  return rows;
}

/** Runs a script on the host; a connection failure names the host. */
async function run(inputs: Pick<HostSettingsInputs, "connection" | "hostName">, script: string) {
  try {
    return await runScript(inputs.connection, script);
  } catch (err) {
    throw new Error(`${inputs.hostName}: ${(err as Error).message}`);
  }
}

async function apply(inputs: HostSettingsInputs): Promise<HostSettingsOutputs> {
  if (inputs.probeFailure || !inputs.plan || !inputs.expected) {
    throw new Error(`${inputs.hostName}: ${inputs.probeFailure ?? "nothing to apply: the host was not probed"}`);
  }
  const result = await run(inputs, applyScript(inputs.plan));
  const report = parseReport(result.stdout);
  if (result.code !== 0 || !report.complete) {
    fail(inputs.hostName, "apply", report, result.stderr);
  }
  const verification = verify(inputs.hostName, inputs.expected, report);
  return { ...inputs, inSync: true, verification };
}

/** The dynamic provider. Exported for tests; use {@link HostSettings}. */
export const hostSettingsProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: HostSettingsOutputs, news: HostSettingsInputs): Promise<pulumi.dynamic.DiffResult> {
    const replaces = olds.target !== news.target ? ["target"] : [];
    const changes = replaces.length > 0 || news.probeFailure !== undefined || olds.desiredHash !== news.desiredHash || !news.inSync || !olds.inSync;
    return { changes, replaces, deleteBeforeReplace: true };
  },

  async create(inputs: HostSettingsInputs): Promise<pulumi.dynamic.CreateResult> {
    const outs = await apply(inputs);
    return { id: `${inputs.hostName}:${outs.plan?.stateDir}`, outs };
  },

  async update(_id: string, _olds: HostSettingsOutputs, news: HostSettingsInputs): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: await apply(news) };
  },

  async delete(_id: string, props: HostSettingsOutputs): Promise<void> {
    if (!props.plan) return; // never applied
    const script = restoreScript({
      stateDir: props.plan.stateDir,
      paths: props.plan.files.map((f) => f.path),
      sysctlKeys: props.plan.sysctlKeys,
      services: props.plan.services,
    });
    const result = await run(props, script);
    const report = parseReport(result.stdout);
    if (result.code !== 0 || !report.complete) {
      fail(props.hostName, "restore", report, result.stderr);
    }
    const before = props.before ?? {};
    const wrong = props.plan.sysctlKeys.filter((k) => before[k] !== undefined && report.sysctls[k] !== before[k]);
    if (wrong.length > 0) {
      throw new Error(`${props.hostName}: restore did not bring back ${wrong.map((k) => `${k} (wanted ${before[k]}, has ${report.sysctls[k]})`).join(", ")}`);
    }
  },

  async read(id: string, props: HostSettingsOutputs): Promise<pulumi.dynamic.ReadResult> {
    if (!props.plan || !props.expected) return { id, props };
    const plan = props.plan;
    const result = await run(props, probeScript({
      stateDir: plan.stateDir,
      sysctlKeys: plan.sysctlKeys,
      paths: plan.files.map((f) => f.path),
      units: plan.services.map((s) => s.unit),
    }));
    const report = parseReport(result.stdout);
    if (result.code !== 0 || !report.complete) {
      fail(props.hostName, "probe", report, result.stderr);
    }
    const verification = compare(props.expected, effectiveOf(report));
    const filesOk = plan.files.every((f) => report.files[f.path] !== null && report.files[f.path] !== undefined &&
      report.files[f.path] === contentHash(f.content));
    return { id, props: { ...props, verification, inSync: filesOk && verification.every((r) => r.ok) } };
  },
};

/** Arguments of {@link HostSettings}: Pulumi inputs of {@link HostSettingsInputs}. */
export type HostSettingsArgs = { [K in keyof HostSettingsInputs]: pulumi.Input<HostSettingsInputs[K]> };

/**
 * Applies, verifies and on delete restores one host's backlog settings. Created by
 * {@link BacklogHost}; use that component rather than this resource directly.
 */
export class HostSettings extends pulumi.dynamic.Resource {
  declare public readonly verification: pulumi.Output<ComparisonRow[]>;
  declare public readonly inSync: pulumi.Output<boolean>;

  constructor(name: string, args: HostSettingsArgs, opts?: pulumi.CustomResourceOptions) {
    super(hostSettingsProvider, name, { ...args, verification: undefined },
      { ...opts, additionalSecretOutputs: ["connection"] });
  }
}
