/**
 * A preview an operator can approve (issue 15), with the real Pulumi engine against two lab hosts:
 * the drift of the issue (net.core.somaxconn lowered to 1000, listen.backlog edited in the pool
 * file on one host), then `pulumi preview` plain, `--diff` and `--json`, and no-op previews.
 */
import { execFileSync } from "node:child_process";
import type { Stack } from "@pulumi/pulumi/automation";
import { Lab, tearDownAfterAll, requireLabMachine, testStack } from "./harness";

jest.setTimeout(600_000);

const POOL = "/etc/php/8.2/fpm/pool.d/www.conf";
const profile = {
  name: "it-preview",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
};

const lab = new Lab("prv");
let stack: Stack;
let remove: () => Promise<void>;
let drifted: string;
let other: string;

beforeAll(async () => {
  requireLabMachine();
  lab.up(2);
  [drifted, other] = lab.hosts.map((h) => h.name) as [string, string];
  ({ stack, remove } = await testStack("preview", { "backlog:inventory": lab.inventory, "backlog:profile": profile }));
  await stack.up({ onOutput: () => undefined });
});

tearDownAfterAll(lab, () => [stack ? { stack, remove } : undefined]);

/** The pulumi CLI on this test's stack (the Automation API has no `--diff` or `--json` preview). */
function pulumi(...args: string[]): string {
  const env = { ...process.env, ...(stack.workspace.envVars ?? {}) };
  return execFileSync("pulumi", [...args, "--stack", stack.name, "--non-interactive", "--color", "never"], {
    cwd: stack.workspace.workDir,
    env,
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
}

/** The lines `preview --diff` prints for one host's settings resource (from its header to the next resource or section). */
function resourceBlock(text: string, host: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.includes(`::backlog-${host}-settings]`));
  if (start < 0) return [];
  const end = lines.findIndex(
    (l, i) => i > start && (/^\s{0,4}[~+\- ]?\s*(pulumi|backlog):/.test(l) || /^(Resources:|\s*--outputs:--)/.test(l) || /^\S/.test(l)),
  );
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

function drift(host: string): void {
  lab.sh(
    host,
    `sysctl -w net.core.somaxconn=1000 >/dev/null && sed -i 's/^listen.backlog = .*/listen.backlog = 511/' ${POOL} && grep -qx 'listen.backlog = 511' ${POOL}`,
  );
}

async function outputs(): Promise<Record<string, Record<string, unknown>>> {
  const out = await stack.outputs();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.value as Record<string, unknown>]));
}

test("right after the first deploy: inSync reads true, inSyncBefore false and changed true; a no-op preview prints no change lines", async () => {
  const out = await outputs();
  expect(out.inSync).toEqual({ [drifted]: true, [other]: true });
  expect(out.inSyncBefore).toEqual({ [drifted]: false, [other]: false });
  expect(out.changed).toEqual({ [drifted]: true, [other]: true });

  const quiet = await stack.preview();
  expect(quiet.changeSummary.update ?? 0).toBe(0);
  expect(quiet.stdout).not.toMatch(/will change:/);
  const diff = pulumi("preview", "--diff");
  expect(diff).not.toMatch(/HostSettings: \(update\)|will change:|\(hidden\)/);
});

test("a drifted host: plain, --diff and --json previews name the host, each value current → wanted, the file's diff lines and the action", async () => {
  drift(drifted);

  // Plain preview: the message attached to the host, and the changed fields on the resource's line.
  const t0 = Date.now();
  const plain = await stack.preview();
  const plainSeconds = (Date.now() - t0) / 1000;
  expect(plain.changeSummary.update).toBe(1);
  const text = plain.stdout;
  expect(text).toContain(`backlog-${drifted} will change:`);
  expect(text).toContain("net.core.somaxconn: 1000 → 8192");
  expect(text).toMatch(/^\s*-listen\.backlog = 511$/m);
  expect(text).toMatch(/^\s*\+listen\.backlog = 8192$/m);
  expect(text).toContain("php8.2-fpm: relisten (/etc/php/8.2/fpm/pool.d/www.conf: only the backlog changes)");
  expect(text).toContain(`backlog-${drifted}-settings update [diff: ~files,services,settings]`);
  expect(text).not.toContain(`backlog-${other} will change:`);

  // --diff: the engine's own diff of the inputs names exactly the fields that changed.
  const block = resourceBlock(pulumi("preview", "--diff"), drifted);
  const shown = block.join("\n");
  expect(shown).toContain('+ net.core.somaxconn: "1000 → 8192"');
  expect(shown).toContain(`+ ${POOL}: [`);
  expect(shown).toContain('"-listen.backlog = 511"');
  expect(shown).toContain('"+listen.backlog = 8192"');
  expect(shown).toContain('+ action: "relisten"');
  // Nothing of the plan (rendered contents), hashes, expected values, the connection or the provider's code.
  expect(shown).not.toMatch(/\bplan\b|content|desiredHash|expected|connection|__provider|before/);
  // The run's own data (state generation, socket inodes) is one hidden line.
  expect(block.filter((l) => /\(hidden\)/.test(l))).toEqual(["      ~ run (hidden)"]);
  console.log(`preview (plain) ${plainSeconds.toFixed(1)} s; --diff block of the drifted host: ${block.length} lines:\n${shown}`);

  // --json: the same, structured, for CI gates.
  const json = JSON.parse(pulumi("preview", "--json")) as {
    steps: { op: string; urn: string; detailedDiff?: Record<string, unknown>; newState?: { inputs?: Record<string, any> } }[];
    changeSummary: Record<string, number>;
  };
  expect(json.changeSummary.update).toBe(1);
  const step = json.steps.find((s) => s.urn.endsWith(`::backlog-${drifted}-settings`));
  expect(step?.op).toBe("update");
  const inputs = step?.newState?.inputs ?? {};
  expect(inputs.settings).toEqual({ "net.core.somaxconn": "1000 → 8192" });
  expect(inputs.files[POOL]).toEqual(expect.arrayContaining(["-listen.backlog = 511", "+listen.backlog = 8192"]));
  expect(inputs.services).toEqual({ "php8.2-fpm": { action: "relisten", reason: `${POOL}: only the backlog changes` } });
  expect(inputs.run.changes.settings).toEqual([{ setting: "net.core.somaxconn", current: 1000, wanted: 8192, comparison: "equal" }]);
  expect(inputs.run.changes.services).toEqual([expect.objectContaining({ unit: "php8.2-fpm", action: "relisten" })]);
  // The engine's field-by-field diff: outside the run's own (hidden) data, exactly the three fields.
  const paths = Object.keys(step?.detailedDiff ?? {});
  expect(paths.filter((p) => !p.startsWith("run.")).sort()).toEqual([`files["${POOL}"]`, 'services["php8.2-fpm"]', 'settings["net.core.somaxconn"]'].sort());
  expect(paths).toContain("run.generation");
  // The other host: no step but "same" (preview --json lists only steps that do something, without --show-sames).
  expect(json.steps.filter((s) => s.urn.endsWith(`::backlog-${other}-settings`) && s.op !== "same")).toEqual([]);

  // up repairs it; the outputs then say what they mean after the run.
  await stack.up({ onOutput: () => undefined });
  expect(lab.sh(drifted, "cat /proc/sys/net/core/somaxconn").trim()).toBe("8192");
  expect(lab.sh(drifted, `grep '^listen.backlog' ${POOL}`).trim()).toBe("listen.backlog = 8192");
  const out = await outputs();
  expect(out.inSync).toEqual({ [drifted]: true, [other]: true });
  expect(out.inSyncBefore).toEqual({ [drifted]: false, [other]: true });
  expect(out.changed).toEqual({ [drifted]: true, [other]: false });
  // What the apply did per unit (a relisten with no socket to listen again, the socket's backlog
  // being right already, reads "none").
  expect(Object.keys(out.applied[drifted] as object).sort()).toEqual(["nginx", "php8.2-fpm"]);
});

test("the same drift right after the run that repaired it shows as in a first preview (not as a difference to that run), and a no-op preview after up says nothing", async () => {
  drift(drifted);
  const block = resourceBlock(pulumi("preview", "--diff"), drifted);
  const shown = block.join("\n");
  expect(shown).toContain('+ net.core.somaxconn: "1000 → 8192"');
  expect(shown).toContain('"-listen.backlog = 511"');
  expect(shown).toContain('+ action: "relisten"');
  expect(shown).not.toMatch(/\bplan\b|content|desiredHash|expected/);
  await stack.up({ onOutput: () => undefined });
  const quiet = await stack.preview();
  expect(quiet.changeSummary.update ?? 0).toBe(0);
  expect(quiet.stdout).not.toMatch(/will change:/);
  expect(pulumi("preview", "--diff")).not.toMatch(/HostSettings: \(update\)|will change:|\(hidden\)/);
});

test("only the batches change (backlog:rollout maxParallel 1): no host is updated, nothing of them in preview --diff, and up changes no host", async () => {
  await stack.setConfig("backlog:rollout", { value: JSON.stringify({ maxParallel: 1 }) });
  const settingsUpdates = () => {
    const json = JSON.parse(pulumi("preview", "--json")) as { steps: { op: string; urn: string }[] };
    return json.steps.filter((s) => s.urn.endsWith("-settings") && s.op !== "same").map((s) => `${s.op} ${s.urn}`);
  };
  try {
    const quiet = await stack.preview();
    expect(quiet.stdout).toMatch(/rollout: 2 batches of up to 1 host\(s\)/);
    expect(quiet.stdout).not.toMatch(/will change:/);
    // (The fleet component itself records its rollout setting: that is its own update.)
    expect(settingsUpdates()).toEqual([]);
    expect(pulumi("preview", "--diff")).not.toMatch(/HostSettings: \(update\)|will change:|\(hidden\)|rolloutPlace/);
    let out = "";
    await stack.up({ onOutput: (o) => (out += o) });
    expect(out).not.toMatch(/-settings\s+updat/);
    const state = await stack.exportStack();
    const settings = (state.deployment.resources as Record<string, any>[]).find((r) => String(r.urn).endsWith(`::backlog-${drifted}-settings`));
    console.log(
      `after up with maxParallel 1: run.rolloutPlace in the state of backlog-${drifted}-settings: ${JSON.stringify(settings?.inputs?.run?.rolloutPlace)}`,
    );
  } finally {
    await stack.removeConfig("backlog:rollout");
  }
  expect(settingsUpdates()).toEqual([]);
  expect(pulumi("preview", "--diff")).not.toMatch(/HostSettings: \(update\)|\(hidden\)|rolloutPlace/);
});
