/**
 * The dynamic provider runs from serialized code in its own process. These tests serialize it the
 * way Pulumi does and exercise the copy, so that code the serializer cannot carry (Sets, classes
 * extending Error, names it mistakes for globals) fails here rather than in a deployment.
 */
import * as pulumi from "@pulumi/pulumi";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import Module = require("node:module");
import { type HostSettingsOutputs, runWithPlace } from "../../../src/pulumi/hostSettings";
import { failureMessage, hostSettingsProvider } from "../../../src/pulumi/hostSettingsProvider";
import type { HostReport } from "../../../src/core/report";
import { EMPTY_RUN, ROLLOUT_PLACE, probeReport, tempDir } from "../fixtures";

jest.setTimeout(30_000);

const place = ROLLOUT_PLACE;
const emptyRun = EMPTY_RUN;

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
  const dir = tempDir("key");
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
