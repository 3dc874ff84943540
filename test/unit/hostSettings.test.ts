/**
 * The dynamic provider runs from serialized code in its own process. These tests serialize it the
 * way Pulumi does and exercise the copy, so that code the serializer cannot carry (Sets, classes
 * extending Error, names it mistakes for globals) fails here rather than in a deployment.
 */
import * as pulumi from "@pulumi/pulumi";
import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync } from "fs";
import { createServer } from "net";
import { tmpdir } from "os";
import { join, resolve } from "path";
import Module = require("module");
import { HostSettingsOutputs, failureMessage, hostSettingsProvider, plannedActions } from "../../components/hostSettings";
import type { HostReport } from "../../components/report";

jest.setTimeout(30_000);

async function serializedProvider(): Promise<pulumi.dynamic.ResourceProvider> {
  const { text, exportName } = await pulumi.runtime.serializeFunction(() => hostSettingsProvider);
  const mod = new Module("serialized-provider") as Module & { _compile(code: string, file: string): void; paths: string[] };
  const repo = resolve(__dirname, "..", "..");
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
    stateDir: "/var/lib/pulumi-backlog", owner: "web1", files: [], sysctlKeys: ["net.core.somaxconn"], services: [],
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
  await expect(provider.diff!("id", base, { ...base })).resolves.toEqual({ changes: false, replaces: [], deleteBeforeReplace: true });
});

test("diff: a changed profile or drift is an update, another target a replacement", async () => {
  const provider = await serializedProvider();
  expect((await provider.diff!("id", base, { ...base, desiredHash: "b" })).changes).toBe(true);
  expect((await provider.diff!("id", base, { ...base, inSync: false })).changes).toBe(true);
  const moved = await provider.diff!("id", base, { ...base, target: "root@127.0.0.2:22" });
  expect(moved).toEqual({ changes: true, replaces: ["target"], deleteBeforeReplace: true });
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
  realm._compile("module.exports = console;", join(resolve(__dirname, "..", ".."), "console-of-the-provider.js"));
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
  expect(said.join("\n")).toMatch(new RegExp(`web1: forgotten without restoring: the host cannot be reached \\(cannot connect to root@127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*/var/lib/pulumi-backlog`));
});

test("delete on an unreachable host with onGone: fail fails with a message that names the host and the cause", async () => {
  const provider = await serializedProvider();
  const props = { ...(await unreachable()), onGone: "fail" as const };
  const error = await provider.delete!("id", props).then(() => undefined, (e: unknown) => e);
  expect(error).toBeDefined();
  expect((error as Error).message).toMatch(new RegExp(`^web1: cannot connect to root@127\\.0\\.0\\.1:${props.connection.port}: .*ECONNREFUSED`));
});

test("delete of a resource that was never applied touches no host", async () => {
  const provider = await serializedProvider();
  const { plan: _plan, ...never } = base;
  await expect(provider.delete!("id", { ...never, connection: { ...base.connection, port: 1, dialAttempts: 1 } } as HostSettingsOutputs)).resolves.toBeUndefined();
});

test("create without a probe fails with the probe's failure, before any connection", async () => {
  const provider = await serializedProvider();
  await expect(provider.create!({ ...base, probeFailure: "cannot connect to root@127.0.0.1:22: boom" }))
    .rejects.toThrow(/^web1: cannot connect to root@127\.0\.0\.1:22: boom$/);
});

describe("failureMessage", () => {
  const r = (over: Partial<HostReport>): HostReport => ({
    sysctls: {}, files: {}, contents: {}, sysctlSources: [], sockets: [], units: {}, before: {}, managed: [], owners: {}, applied: {}, own: {},
    container: "none", journalOpen: false, generation: 0, recovered: false, steps: ["lock", "journal", "test"], did: [], fallbacks: {}, warnings: [], retired: [],
    complete: false, ...over,
  });
  const result = { code: 10, stdout: "", stderr: "" };

  test("names the host, what, the failed step, that everything was put back, and the step's output", () => {
    expect(failureMessage("web1", "apply", r({ failure: { step: "test php8.2-fpm", output: "ERROR: bad pool" }, rolledBack: true }), result))
      .toBe("web1: apply failed at test php8.2-fpm (everything was put back):\nERROR: bad pool");
  });

  test("an incomplete rollback says so and where to look", () => {
    expect(failureMessage("web1", "apply", r({ failure: { step: "service nginx", output: "x" }, rolledBack: false }), { ...result, code: 12 }))
      .toMatch(/^web1: apply failed at service nginx \(the rollback was INCOMPLETE: see the host's \/var\/lib\/pulumi-backlog\/txn\):\nx$/);
  });

  test("a script that died half-way: the last step it entered, and its stderr", () => {
    expect(failureMessage("web1", "apply", r({}), { code: 137, stdout: "", stderr: "Killed\n" })).toBe("web1: apply failed at test:\nKilled");
  });

  test("no report at all (rejected, or nothing printed)", () => {
    expect(failureMessage("web1", "restore", undefined, { code: 121, stdout: "", stderr: "" })).toBe("web1: restore failed at start:\n(no output)");
  });

  test("a run over its time limit names the step it was in", () => {
    expect(failureMessage("web1", "apply", r({}), { code: -1, stdout: "", stderr: "", timedOut: true }))
      .toBe("web1: apply timed out in step test: the connection was closed and the host rolls the run back (see connection.scriptTimeoutSeconds)");
  });
});

test("plannedActions: the action per unit, empty without a plan", () => {
  expect(plannedActions(undefined)).toEqual({});
  expect(plannedActions({ services: [
    { unit: "php8.2-fpm", test: ["php-fpm8.2", "-t"], action: "relisten", relisten: [{ inode: 1, backlog: 2, oldBacklog: 1, label: "/run/php/x.sock" }] },
    { unit: "nginx", test: ["nginx", "-t"], action: "none" },
  ] })).toEqual({ "php8.2-fpm": "relisten", nginx: "none" });
});
