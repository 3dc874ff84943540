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
import { HostSettingsOutputs, hostSettingsProvider } from "../../components/hostSettings";

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
  plan: { stateDir: "/var/lib/pulumi-backlog/web1", files: [], sysctlKeys: ["net.core.somaxconn"], services: [] },
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

test("delete on an unreachable host fails with a message that names the host and the cause", async () => {
  const provider = await serializedProvider();
  const dir = mkdtempSync(join(tmpdir(), "backlog-key-"));
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "k")]);
  const port = await closedPort();
  const props = { ...base, connection: { ...base.connection, port, dialAttempts: 1, privateKey: readFileSync(join(dir, "k"), "utf8") } };
  const error = await provider.delete!("id", props).then(() => undefined, (e: unknown) => e);
  expect(error).toBeDefined();
  expect((error as Error).message).toMatch(new RegExp(`^web1: cannot connect to root@127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
});
