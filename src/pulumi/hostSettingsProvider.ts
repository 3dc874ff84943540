/**
 * The dynamic provider of {@link HostSettings}: what the engine calls for each host, in its own
 * process. It runs the scripts of core plan.ts over one SSH connection each:
 * - create/update: apply (files, config tests, sysctl -p, restarts) and verify; a verification
 *   mismatch fails the operation with a table of host, setting, expected and effective;
 * - delete: restore what was there before the first deploy, and verify that;
 * - read (`pulumi refresh`): probe, and report whether the host still matches (drift).
 * Diffs compare the program's decision only: an unchanged, in-sync host costs no SSH connection.
 *
 * The engine keeps, with every resource, the code it loads this provider with (`__provider`). From
 * compiled JavaScript that code is a few lines that `require` this module (see hostSettings.ts
 * `providerFor`); from TypeScript sources it is this module's code itself, by value.
 */
import * as pulumi from "@pulumi/pulumi";
import { watchEngine } from "./engineWatch";
import { type ApplyPlan, contentHash, observeSpec, probeScript, reportToken, restoreScript, applyScript } from "../core/plan";
import { type HostReport, effectiveOf, parseReport } from "../core/report";
import { type ScriptResult, runScript } from "../transport/ssh";
import { type ComparisonRow, type ExpectedValue, compare, formatMismatchTable } from "../core/verify";
import { rolloutNote } from "../core/rollout";
import { type HostSettingsInputs, type HostSettingsOutputs, type RecordedPlan, applyPlanOf, hasChanges } from "./hostSettings";

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
