/**
 * The dynamic provider runs from serialized code in its own process. These tests serialize it the
 * way Pulumi does and exercise the copy, so that code the serializer cannot carry (Sets, classes
 * extending Error, names it mistakes for globals) fails here rather than in a deployment.
 */
import * as pulumi from "@pulumi/pulumi";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Module = require("node:module");
import {
  type HostSettingsOutputs,
  applyPlanOf,
  decisionInputs,
  hasChanges,
  plannedActions,
  providerShim,
  providerSpecifier,
  runWithPlace,
} from "../../../src/pulumi/hostSettings";
import { failureMessage, hostSettingsProvider } from "../../../src/pulumi/hostSettingsProvider";
import type { HostReport } from "../../../src/core/report";
import { probeReport } from "../fixtures";

jest.setTimeout(30_000);

async function serializedProvider(): Promise<pulumi.dynamic.ResourceProvider> {
  const { text, exportName } = await pulumi.runtime.serializeFunction(() => hostSettingsProvider);
  const mod = new Module("serialized-provider") as Module & { _compile(code: string, file: string): void; paths: string[] };
  const repo = resolve(__dirname, "..", "..", "..");
  mod.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(repo);
  mod._compile(text, join(repo, "serialized-provider.js"));
  return (mod.exports as Record<string, () => pulumi.dynamic.ResourceProvider>)[exportName]();
}

function closedPort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

const base: HostSettingsOutputs = {
  connection: { host: "127.0.0.1", port: 22, hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4Gg4rD+B/RoFavrJXOmlAiMKiC5EyU7hiPf8omSLLJ", privateKey: "" },
  hostName: "web1",
  target: "root@127.0.0.1:22",
  plan: {
    stateDir: "/var/lib/pulumi-backlog",
    owner: "web1",
    files: [],
    sysctlKeys: ["net.core.somaxconn"],
    services: [],
    sockets: { unixPaths: [], tcpPorts: [] },
  },
  expected: [],
  before: { "net.core.somaxconn": 4096 },
  desiredHash: "a",
  inSync: true,
  verification: [],
};

test("diff: an in-sync host with an unchanged profile has no changes", async () => {
  const provider = await serializedProvider();
  await expect(provider.diff!("id", base, { ...base })).resolves.toEqual({ changes: false });
  // Inputs of the earlier shape (inSync, changes) in the old state do not make a change by themselves.
  await expect(
    provider.diff!("id", { ...base, changes: { settings: [] } } as HostSettingsOutputs, { ...base, settings: {}, files: {}, services: {}, retired: [] }),
  ).resolves.toEqual({ changes: false });
});

test("diff: a changed profile or drift is an update that the engine diffs field by field; another target a replacement", async () => {
  const provider = await serializedProvider();
  // "Unknown" (no `changes`): the engine diffs old and new inputs itself and shows the fields that differ.
  await expect(provider.diff!("id", base, { ...base, desiredHash: "b" })).resolves.toEqual({});
  await expect(provider.diff!("id", base, { ...base, settings: { "net.core.somaxconn": "1000 → 8192" } })).resolves.toEqual({});
  await expect(provider.diff!("id", base, { ...base, services: { nginx: { action: "reload", reason: "x" } } })).resolves.toEqual({});
  // In `up` the change fields are empty: the run's own part says that it changes the host.
  const drift = {
    settings: [{ setting: "net.core.somaxconn", current: 1000, wanted: 8192, comparison: "equal" as const }],
    files: [],
    retired: [],
    services: [],
    recovers: false,
  };
  await expect(provider.diff!("id", base, { ...base, run: { generation: 2, steps: {}, retired: [], changes: drift } })).resolves.toEqual({});
  await expect(provider.diff!("id", base, { ...base, files: { "/etc/x": ["-a", "+b"] } })).resolves.toEqual({});
  await expect(provider.diff!("id", base, { ...base, retired: ["/etc/y"] })).resolves.toEqual({});
  // A refresh found drift (output inSync false) while the inputs are the same: a change all the same,
  // said outright (the engine's own diff would find none).
  await expect(provider.diff!("id", { ...base, inSync: false }, { ...base })).resolves.toEqual({ changes: true });
  const withSettings = { ...base, settings: { "net.core.somaxconn": "1000 → 8192" } };
  await expect(provider.diff!("id", withSettings, withSettings)).resolves.toEqual({ changes: true });
  const moved = await provider.diff!("id", base, { ...base, target: "root@127.0.0.2:22" });
  expect(moved).toEqual({ changes: true, replaces: ["target"], deleteBeforeReplace: true });
});

const place = { batch: 2, batches: 3, later: ["web3"], laterCount: 1, maxFailedHosts: 0 };
const emptyRun = { generation: 2, steps: {}, retired: [], changes: { settings: [], files: [], retired: [], services: [], recovers: false } };

test("runWithPlace: the place rides in run; a host without a decision gets a run that changes nothing", () => {
  expect(runWithPlace(emptyRun, undefined)).toBe(emptyRun);
  expect(runWithPlace(undefined, undefined)).toBeUndefined();
  expect(runWithPlace(emptyRun, place)).toEqual({ ...emptyRun, rolloutPlace: place });
  const bare = runWithPlace(undefined, place)!;
  expect(bare.rolloutPlace).toEqual(place);
  expect(hasChanges({ run: bare })).toBe(false);
});

test("diff: the host's place in the rollout alone is no change; with another reason it does not hide the change", async () => {
  const provider = await serializedProvider();
  const first = { ...base, run: runWithPlace(emptyRun, { ...place, batch: 1, later: ["web2", "web3"], laterCount: 2 }) };
  await expect(provider.diff!("id", { ...base, run: emptyRun }, first)).resolves.toEqual({ changes: false });
  await expect(provider.diff!("id", first, { ...base, run: runWithPlace(emptyRun, place) })).resolves.toEqual({ changes: false });
  await expect(provider.diff!("id", first, { ...base, run: emptyRun })).resolves.toEqual({ changes: false });
  // Drift found by a refresh: still a change (the engine diffs the inputs; run differs, hidden).
  await expect(provider.diff!("id", { ...first, inSync: false }, { ...base, run: runWithPlace(emptyRun, place) })).resolves.toEqual({});
  await expect(provider.diff!("id", { ...first, inSync: false }, first)).resolves.toEqual({ changes: true });
  await expect(provider.diff!("id", first, { ...first, desiredHash: "b" })).resolves.toEqual({});
});

test("a failed host's message ends with the hosts after it that are not touched, and why", async () => {
  const provider = await serializedProvider();
  await expect(provider.create!({ ...base, probeFailure: "cannot connect to root@127.0.0.1:22: boom", run: runWithPlace(undefined, place) })).rejects.toThrow(
    /^web1: cannot connect to root@127\.0\.0\.1:22: boom\nrollout stopped at this host's batch 2 of 3: not touched: web3 \(rollout\.maxFailedHosts 0\)$/,
  );
  await expect(provider.update!("id", base, { ...base, probeFailure: "boom", run: runWithPlace(undefined, { ...place, maxFailedHosts: 2 }) })).rejects.toThrow(
    /^web1: boom\nrollout: this host is in batch 2 of 3; the later batches \(web3\) go on only with pulumi up --continue-on-error, until more than 2 host\(s\) have failed/,
  );
  // In the last batch: nothing after it, the message is the host's own.
  await expect(
    provider.create!({ ...base, probeFailure: "boom", run: runWithPlace(undefined, { ...place, batch: 3, later: [], laterCount: 0 }) }),
  ).rejects.toThrow(/^web1: boom$/);
});

async function unreachable(): Promise<HostSettingsOutputs> {
  const dir = mkdtempSync(join(tmpdir(), "backlog-key-"));
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "k")]);
  const port = await closedPort();
  return { ...base, connection: { ...base.connection, port, dialAttempts: 1, privateKey: readFileSync(join(dir, "k"), "utf8") } };
}

test("delete on an unreachable host forgets it by default, with a warning naming the host, the cause and what stays on it", async () => {
  const provider = await serializedProvider();
  const props = await unreachable();
  const said: string[] = [];
  // The serialized provider runs in Node's own context (compiled with Module), not in Jest's: spy
  // on that context's console.
  const realm = new Module("console-of-the-provider") as Module & { _compile(code: string, file: string): void };
  realm._compile("module.exports = console;", join(resolve(__dirname, "..", "..", ".."), "console-of-the-provider.js"));
  const console = realm.exports as Console;
  const warn = jest.spyOn(console, "warn").mockImplementation((m: unknown) => void said.push(String(m)));
  const error = jest.spyOn(console, "error").mockImplementation((m: unknown) => void said.push(String(m)));
  try {
    await expect(provider.delete!("id", props)).resolves.toBeUndefined();
  } finally {
    warn.mockRestore();
    error.mockRestore();
  }
  const port = props.connection.port;
  expect(said.join("\n")).toMatch(
    new RegExp(
      `web1: forgotten without restoring: the host cannot be reached \\(cannot connect to root@127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*/var/lib/pulumi-backlog`,
    ),
  );
});

test("delete on an unreachable host with onGone: fail fails with a message that names the host and the cause", async () => {
  const provider = await serializedProvider();
  const props = { ...(await unreachable()), onGone: "fail" as const };
  const error = await provider.delete!("id", props).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeDefined();
  expect((error as Error).message).toMatch(new RegExp(`^web1: cannot connect to root@127\\.0\\.0\\.1:${props.connection.port}: .*ECONNREFUSED`));
});

test("delete of a resource that was never applied touches no host", async () => {
  const provider = await serializedProvider();
  const { plan: _plan, ...never } = base;
  await expect(
    provider.delete!("id", { ...never, connection: { ...base.connection, port: 1, dialAttempts: 1 } } as HostSettingsOutputs),
  ).resolves.toBeUndefined();
});

test("create without a probe fails with the probe's failure, before any connection", async () => {
  const provider = await serializedProvider();
  await expect(provider.create!({ ...base, probeFailure: "cannot connect to root@127.0.0.1:22: boom" })).rejects.toThrow(
    /^web1: cannot connect to root@127\.0\.0\.1:22: boom$/,
  );
});

describe("failureMessage", () => {
  const r = (over: Partial<HostReport>): HostReport => probeReport({ sysctls: {}, steps: ["lock", "journal", "test"], complete: false, ...over });
  const result = { code: 10, stdout: "", stderr: "" };

  test("names the host, what, the failed step, that everything was put back, and the step's output", () => {
    expect(failureMessage("web1", "apply", r({ failure: { step: "test php8.2-fpm", output: "ERROR: bad pool" }, rolledBack: true }), result)).toBe(
      "web1: apply failed at test php8.2-fpm (everything was put back):\nERROR: bad pool",
    );
  });

  test("an incomplete rollback says so and where to look", () => {
    expect(failureMessage("web1", "apply", r({ failure: { step: "service nginx", output: "x" }, rolledBack: false }), { ...result, code: 12 })).toMatch(
      /^web1: apply failed at service nginx \(the rollback was INCOMPLETE: see the host's \/var\/lib\/pulumi-backlog\/txn\):\nx$/,
    );
  });

  test("a script that died half-way: the last step it entered, and its stderr", () => {
    expect(failureMessage("web1", "apply", r({}), { code: 137, stdout: "", stderr: "Killed\n" })).toBe("web1: apply failed at test:\nKilled");
  });

  test("no report at all (rejected, or nothing printed)", () => {
    expect(failureMessage("web1", "restore", undefined, { code: 121, stdout: "", stderr: "" })).toBe("web1: restore failed at start:\n(no output)");
  });

  test("a run over its time limit names the step it was in", () => {
    expect(failureMessage("web1", "apply", r({}), { code: -1, stdout: "", stderr: "", timedOut: true })).toBe(
      "web1: apply timed out in step test: the connection was closed and the host rolls the run back (see connection.scriptTimeoutSeconds)",
    );
  });
});

test("plannedActions: the action per unit, empty without a plan", () => {
  expect(plannedActions(undefined)).toEqual({});
  expect(
    plannedActions({
      services: [
        { unit: "php8.2-fpm", test: ["php-fpm8.2", "-t"], action: "relisten", relisten: [{ inode: 1, backlog: 2, oldBacklog: 1, label: "/run/php/x.sock" }] },
        { unit: "nginx", test: ["nginx", "-t"], action: "none" },
      ],
    }),
  ).toEqual({ "php8.2-fpm": "relisten", nginx: "none" });
});

test("decisionInputs: the plan without the run's own parts, and the changes as fields of their own; applyPlanOf puts the plan back together", () => {
  const plan = {
    stateDir: "/var/lib/pulumi-backlog",
    owner: "web1",
    sysctlKeys: ["net.core.somaxconn"],
    sockets: { unixPaths: ["/run/php/a.sock"], tcpPorts: [] },
    files: [{ path: "/etc/php/8.2/fpm/pool.d/www.conf", content: "listen.backlog = 8192\n", mode: "0644", owner: "root", group: "root" }],
    services: [
      {
        unit: "php8.2-fpm",
        test: ["php-fpm8.2", "-t"],
        action: "relisten" as const,
        reason: "only the backlog changes",
        relisten: [{ inode: 7, backlog: 8192, oldBacklog: 1000, label: "/run/php/a.sock" }],
        ports: [],
      },
      { unit: "nginx", test: ["nginx", "-t"], action: "none" as const, ports: [8080] },
    ],
    retired: ["/etc/php/8.2/fpm/pool.d/old.conf"],
    generation: 4,
  };
  const changes = {
    settings: [
      { setting: "net.core.somaxconn", current: 1000, wanted: 8192, comparison: "equal" as const },
      { setting: "sock", current: null, wanted: 8192, comparison: "atLeast" as const },
    ],
    files: [
      {
        path: "/etc/php/8.2/fpm/pool.d/www.conf",
        change: "update" as const,
        diff: "--- host\n+++ profile\n@@ -1 +1 @@\n-listen.backlog = 511\n+listen.backlog = 8192\n",
      },
    ],
    retired: plan.retired,
    services: [],
    recovers: false,
  };
  const inputs = decisionInputs({ plan, changes }, true);
  expect(inputs.settings).toEqual({ "net.core.somaxconn": "1000 → 8192", sock: "missing → >=8192" });
  expect(inputs.files).toEqual({ "/etc/php/8.2/fpm/pool.d/www.conf": ["@@ -1 +1 @@", "-listen.backlog = 511", "+listen.backlog = 8192"] });
  expect(inputs.services).toEqual({ "php8.2-fpm": { action: "relisten", reason: "only the backlog changes" } });
  expect(inputs.retired).toEqual(plan.retired);
  expect(inputs.recovers).toBeUndefined();
  expect(inputs.run).toEqual({
    generation: 4,
    retired: plan.retired,
    changes,
    steps: { "php8.2-fpm": { action: "relisten", reason: "only the backlog changes", relisten: plan.services[0].relisten } },
  });
  // What stays in `plan` does not depend on the host's drift: the same for an in-sync host.
  const inSync = decisionInputs(
    {
      plan: { ...plan, services: plan.services.map((s) => ({ unit: s.unit, test: s.test, action: "none" as const, ports: s.ports })), retired: [] },
      changes: { settings: [], files: [], retired: [], services: [], recovers: false },
    },
    true,
  );
  expect(inSync.plan).toEqual(inputs.plan);
  expect(inSync).toEqual(
    expect.objectContaining({
      settings: {},
      files: {},
      services: {},
      retired: [],
      run: { generation: 4, steps: {}, retired: [], changes: { settings: [], files: [], retired: [], services: [], recovers: false } },
    }),
  );
  // `up` records the change fields empty (nothing is pending once its apply verified), the run's own part as it is.
  const up = decisionInputs({ plan, changes }, false);
  expect(up).toEqual({ ...inSync, run: inputs.run, plan: inputs.plan });
  expect(applyPlanOf(inputs)).toEqual(plan);
  expect(applyPlanOf(up)).toEqual(plan);
  // A state of the earlier shape (the whole plan in `plan`) gives its plan as it was.
  expect(applyPlanOf({ plan })).toEqual(plan);
});

test("read (pulumi refresh) of a host recorded as stopped or gone returns the recorded state without SSH; a present one is probed", async () => {
  const provider = await serializedProvider();
  const props = await unreachable();
  for (const presence of ["stopped", "gone"] as const) {
    const recorded = {
      ...props,
      presence,
      inSync: true,
      verification: [{ setting: "net.core.somaxconn", expected: 8192, effective: 8192, ok: true, comparison: "equal" as const }],
    };
    await expect(provider.read!("id", recorded)).resolves.toEqual({ id: "id", props: recorded });
  }
  // The same host recorded as present is probed: the connection is tried (and refused here).
  await expect(provider.read!("id", { ...props, presence: "present" })).rejects.toThrow(/^web1: cannot connect to root@127\.0\.0\.1:\d+: .*ECONNREFUSED/);
});

test("a machine stopped or gone keeps the inputs of its last deploy; a change of presence alone is an update that records it without SSH; present again, it is checked", async () => {
  const provider = await serializedProvider();
  const last = await unreachable(); // any SSH attempt fails: a test that passes made none
  const { verification: _v, inSync: _s, applied: _a, ...lastInputs } = { ...last, verification: [], inSync: true };
  for (const presence of ["stopped", "gone"] as const) {
    // The program has no decision for a machine it did not probe: check keeps the last deploy's.
    const news = { connection: last.connection, hostName: "web1", target: last.target, onGone: "forget" as const, presence };
    const checked = (await provider.check!(lastInputs, news)).inputs;
    expect(checked).toEqual({ ...lastInputs, ...news });
    // Never deployed (no earlier inputs): nothing to keep.
    await expect(provider.check!({}, news)).resolves.toEqual({ inputs: news });
    // Present → stopped: an update; stopped → stopped: no change.
    await expect(provider.diff!("id", { ...last, presence: "present" }, checked)).resolves.toEqual({ changes: true });
    await expect(provider.diff!("id", { ...last, presence }, checked)).resolves.toEqual({ changes: false });
    const { outs } = await provider.update!("id", { ...last, inSync: true }, checked);
    expect(outs).toEqual({ ...last, inSync: true, presence, onGone: "forget" });
  }
  // A present machine's inputs are the program's.
  const present = { ...lastInputs, desiredHash: "b", presence: "present" as const };
  await expect(provider.check!(lastInputs, present)).resolves.toEqual({ inputs: present });
  // Back from stopped with nothing else changed: not "no change" (the update applies and verifies).
  await expect(provider.diff!("id", { ...last, presence: "stopped", inSync: true }, { ...lastInputs, presence: "present" })).resolves.not.toEqual({
    changes: false,
  });
});

describe("providerSpecifier: what the engine's copy of the provider requires", () => {
  test("an installed package: its name and the internal export, from the last node_modules (pnpm's store too)", () => {
    expect(providerSpecifier("/p/node_modules/pulumi-backlog/dist/pulumi/hostSettingsProvider.js", "/p")).toBe(
      "pulumi-backlog/internal/pulumi/hostSettingsProvider.js",
    );
    expect(providerSpecifier("/p/node_modules/.pnpm/pulumi-backlog@0.1.0/node_modules/pulumi-backlog/dist/pulumi/hostSettingsProvider.js", "/elsewhere")).toBe(
      "pulumi-backlog/internal/pulumi/hostSettingsProvider.js",
    );
    expect(providerSpecifier("/p/node_modules/@acme/backlog/dist/pulumi/hostSettingsProvider.js", "/p")).toBe(
      "@acme/backlog/internal/pulumi/hostSettingsProvider.js",
    );
    // Installed, but not the package's dist/: nothing to name, the engine keeps the code.
    expect(providerSpecifier("/p/node_modules/pulumi-backlog/src/pulumi/hostSettingsProvider.js", "/p")).toBeUndefined();
  });

  test("this repository's compiled program: the path relative to the project folder", () => {
    expect(providerSpecifier("/repo/.build/src/pulumi/hostSettingsProvider.js", "/repo")).toBe("./.build/src/pulumi/hostSettingsProvider.js");
    expect(providerSpecifier("/repo/.build/src/pulumi/hostSettingsProvider.js", "/repo/examples/x")).toBe("../../.build/src/pulumi/hostSettingsProvider.js");
  });

  test("TypeScript sources: none (the engine keeps the provider's code by value)", () => {
    expect(providerSpecifier("/repo/src/pulumi/hostSettingsProvider.ts", "/repo")).toBeUndefined();
  });
});

describe("providerShim", () => {
  /** The shim as the engine's process gets it: serialized by Pulumi, compiled in a module of its own. */
  async function serializedShim(spec: string): Promise<pulumi.dynamic.ResourceProvider & { text: string }> {
    const shim = providerShim(spec);
    const { text, exportName } = await pulumi.runtime.serializeFunction(() => shim);
    const mod = new Module("serialized-shim") as Module & { _compile(code: string, file: string): void };
    mod._compile(text, "");
    return Object.assign((mod.exports as Record<string, () => pulumi.dynamic.ResourceProvider>)[exportName](), { text });
  }

  test("carries nothing but where the provider is, and hands every call to what it loads from there", async () => {
    const dir = mkdtempSync(join(tmpdir(), "backlog-shim-"));
    const impl = join(dir, "impl.js");
    writeFileSync(
      impl,
      `exports.hostSettingsProvider = Object.fromEntries(["check", "diff", "create", "update", "delete", "read"].map((m) => [m, async (...a) => ({ m, a })]));\n`,
    );
    const shim = await serializedShim(impl);
    // The provider's code is not in it (compare the ~110 KB of the provider by value).
    expect(shim.text.length).toBeLessThan(4000);
    expect(shim.text).not.toMatch(/applyScript|runScript|ssh2/);
    await expect(shim.check!({ a: 1 }, { b: 2 })).resolves.toEqual({ m: "check", a: [{ a: 1 }, { b: 2 }] });
    await expect(shim.diff!("id", { a: 1 }, { b: 2 })).resolves.toEqual({ m: "diff", a: ["id", { a: 1 }, { b: 2 }] });
    await expect(shim.create!({ c: 3 })).resolves.toEqual({ m: "create", a: [{ c: 3 }] });
    await expect(shim.update!("id", { a: 1 }, { b: 2 })).resolves.toEqual({ m: "update", a: ["id", { a: 1 }, { b: 2 }] });
    await expect(shim.delete!("id", { a: 1 })).resolves.toEqual({ m: "delete", a: ["id", { a: 1 }] });
    await expect(shim.read!("id", { a: 1 })).resolves.toEqual({ m: "read", a: ["id", { a: 1 }] });
    // A relative specifier is the project folder's (the process's working folder).
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      await expect((await serializedShim("./impl.js")).create!({ c: 4 })).resolves.toEqual({ m: "create", a: [{ c: 4 }] });
    } finally {
      process.chdir(cwd);
    }
  });

  test("a provider that is not there: the path, the project folder and what to do, before anything else happens", async () => {
    const shim = await serializedShim("./.build/src/pulumi/no-such-provider.js");
    await expect(shim.create!({})).rejects.toThrow(
      /^pulumi-backlog: the HostSettings provider cannot be loaded from \/.*\/\.build\/src\/pulumi\/no-such-provider\.js \(project folder \/.*\): Cannot find module[\s\S]*npm run build:program/,
    );
  });
});
