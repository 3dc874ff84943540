/**
 * The policy pack (policy/) with the real Pulumi engine: `pulumi preview --policy-pack policy` on the
 * deployment program (index.ts) against a lab host of its own, with a violating and a sound stack
 * configuration, in advisory mode and with thresholds from a pack config file; then a small program
 * of its own (in a temporary directory, no package.json) that aims several BacklogHost components
 * at one host and adds a profile-carrying component of another type, to run the stack policies and
 * the connection and drop-in policies through the engine.
 *
 * The pack's dependencies are installed here (`npm ci` in policy/) when they are missing, since CI
 * runs only `npm ci && npm test` at the root.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalWorkspace, type PreviewOptions, type Stack } from "@pulumi/pulumi/automation";
import { Lab, repo, requireLabMachine, testStack } from "./harness";

jest.setTimeout(900_000);

const policyDir = join(repo, "policy");
const packVersion = (JSON.parse(readFileSync(join(policyDir, "package.json"), "utf8")) as { version: string }).version;
const scratch = mkdtempSync(join(tmpdir(), "backlog-policy-"));

const lab = new Lab("pol");
const cleanups: (() => Promise<void>)[] = [];
let stack: Stack;

const site = (name: string, backlog: number) => ({
  name,
  backlog,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
});

/** Installs the pack's dependencies from its lock file when they are not there yet. */
function installPack(): void {
  if (existsSync(join(policyDir, "node_modules", "@pulumi", "policy", "package.json"))) return;
  const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: policyDir, encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) throw new Error(`npm ci in policy/ failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
}

/** A pack config file (what `--policy-pack-config` takes). */
function packConfig(name: string, config: Record<string, unknown>): string {
  const file = join(scratch, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** Runs a preview with the pack; resolves to whether it succeeded and everything it printed. */
async function previewWithPack(s: Stack, opts: PreviewOptions = {}): Promise<{ ok: boolean; output: string }> {
  let printed = "";
  try {
    const r = await s.preview({
      policyPacks: [policyDir],
      onOutput: (o) => {
        printed += o;
      },
      ...opts,
    });
    return { ok: true, output: `${printed}\n${r.stdout}\n${r.stderr}` };
  } catch (err) {
    return { ok: false, output: `${printed}\n${(err as Error).message}` };
  }
}

beforeAll(async () => {
  requireLabMachine();
  installPack();
  lab.up(1);
  const t = await testStack("policy", { "backlog:inventory": lab.inventory, "backlog:profile": site("it-web", 8192) });
  stack = t.stack;
  cleanups.push(t.remove);
});

afterAll(async () => {
  try {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  } finally {
    lab.down();
    rmSync(scratch, { recursive: true, force: true });
  }
});

test("the pack's TypeScript type-checks against @pulumi/policy's types", () => {
  const r = spawnSync(join(policyDir, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", join(policyDir, "tsconfig.json")], { encoding: "utf8" });
  expect(`${r.stdout}${r.stderr}`).toBe("");
  expect(r.status).toBe(0);
});

test("a sound profile passes every policy", async () => {
  const { ok, output } = await previewWithPack(stack);
  expect(ok).toBe(true);
  expect(output).toContain(`pulumi-backlog@v${packVersion}`);
  expect(output).not.toMatch(/\[(mandatory|advisory)\]/);
});

test("a profile below the minimums fails the preview with the policy's message", async () => {
  await stack.setConfig("backlog:profile", { value: JSON.stringify(site("it-tiny", 64)) });
  const { ok, output } = await previewWithPack(stack);
  expect(ok).toBe(false);
  expect(output).toContain("[mandatory]");
  expect(output).toContain("backlog-minimums");
  // The fleet records the profile for its hosts: reported once, on the fleet.
  expect(output).toContain('BacklogFleet "backlog" (profile "it-tiny"): the profile backlog 64 is below the minimum 511 (config minBacklog)');
  expect(output).not.toContain('BacklogHost "backlog-pol1" (profile "it-tiny"): the profile backlog');
  expect(output).toContain("net.core.somaxconn 64 (derived from the largest backlog) is below the minimum 1024 (config minSomaxconn)");
});

test("in advisory mode the same profile is reported without failing", async () => {
  const config = packConfig("advisory", { "backlog-minimums": { enforcementLevel: "advisory" } });
  const { ok, output } = await previewWithPack(stack, { policyPackConfigs: [config] });
  expect(ok).toBe(true);
  expect(output).toContain("[advisory]");
  expect(output).toContain("the profile backlog 64 is below the minimum 511 (config minBacklog)");
  expect(output).not.toContain("[mandatory]");
});

test("thresholds come from the pack config", async () => {
  const config = packConfig("thresholds", { "backlog-minimums": { minBacklog: 64, minSomaxconn: 64 } });
  const { ok, output } = await previewWithPack(stack, { policyPackConfigs: [config] });
  expect(ok).toBe(true);
  expect(output).not.toMatch(/\[(mandatory|advisory)\]/);
});

test("stack policies group components by host; every backlog:index:* component with a profile is checked", async () => {
  // A program of its own, outside the repo and without a package.json: the pack must still run in
  // its own directory (its version, its tsconfig), which is the language host's job.
  const dir = mkdtempSync(join(scratch, "program-"));
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
  const rootTsconfig = JSON.parse(readFileSync(join(repo, "tsconfig.json"), "utf8")) as { compilerOptions: Record<string, unknown> };
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { ...rootTsconfig.compilerOptions, types: ["node"] }, include: ["index.ts"] }));
  writeFileSync(
    join(dir, "Pulumi.yaml"),
    [
      "name: backlog-policy-conflicts",
      "runtime:",
      "  name: nodejs",
      "  options:",
      "    typescript: true",
      '    nodeargs: "--disable-warning=ExperimentalWarning"',
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(dir, "index.ts"),
    `
import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "fs";
import { BacklogHost, SshConnectionArgs, defineProfile } from ${JSON.stringify(join(repo, "src"))};

const host = JSON.parse(readFileSync(new pulumi.Config("it").require("inventory"), "utf8"))[0];
const connection = (extra: Partial<SshConnectionArgs>): SshConnectionArgs => ({
  host: host.host, port: host.port, user: "root", hostKey: host.hostKey, insecureIgnoreHostKey: false, sudo: undefined,
  passphrase: undefined, dialTimeoutSeconds: undefined, dialAttempts: undefined,
  privateKey: pulumi.secret(readFileSync(host.privateKeyPath, "utf8")), ...extra,
});
const site = (name: string, backlog: number) => ({
  name, backlog, pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }], listeners: [{ listen: 8080, pool: "www" }],
});
new BacklogHost("small", { connection: connection({}), profile: site("small", 1024) });
new BacklogHost("big", { connection: connection({}), profile: site("big", 4096), paths: { sysctlDropIn: "/etc/sysctl.d/50-backlog.conf" } });
new BacklogHost("open", { connection: connection({ hostKey: undefined, insecureIgnoreHostKey: true }), profile: site("small", 1024) });

// Stands for a component that carries a profile elsewhere (AWS user data, SSM): known to the pack only by its token and props.
class CarriesProfile extends pulumi.ComponentResource {
  constructor(name: string, props: Record<string, unknown>) {
    super("backlog:index:ItUserData", name, props);
    this.registerOutputs({});
  }
}
const handMade = JSON.parse(JSON.stringify(defineProfile({ ...site("hand-made", 1024), somaxconn: 2048 })));
Object.assign(handMade.pools[0], { backlog: 0, backlogSource: "pool" });
Object.assign(handMade.listeners[0], { backlog: 4096, backlogSource: "listener" });
new CarriesProfile("user-data", { profile: handMade });
`,
  );
  const state = mkdtempSync(join(scratch, "state-"));
  const stackName = `it-conflicts-${process.pid}`;
  const conflicts = await LocalWorkspace.createOrSelectStack(
    { stackName, workDir: dir },
    {
      envVars: { PULUMI_BACKEND_URL: `file://${state}`, PULUMI_CONFIG_PASSPHRASE: "integration-tests-only" },
    },
  );
  cleanups.push(() => conflicts.workspace.removeStack(stackName, { force: true }));
  await conflicts.setConfig("it:inventory", { value: lab.inventory });

  const { ok, output } = await previewWithPack(conflicts);
  expect(ok).toBe(false);
  expect(output).toContain(`pulumi-backlog@v${packVersion}`);
  const target = `127.0.0.1:${lab.hosts[0]?.port}`;
  // The stack policy: "big" against "small" (and "open", which shares small's profile), on one host.
  expect(output).toContain(`BacklogHost "big" (profile "big") and BacklogHost "small" (profile "small") both manage the host ${target}`);
  expect(output).toContain('BacklogHost "big" (profile "big") has backlog = 4096: exceeds somaxconn 1024 (derived)');
  expect(output).toContain(`BacklogHost "open": connection to root@${target} sets insecureIgnoreHostKey`);
  expect(output).toContain(
    'BacklogHost "big": paths.sysctlDropIn = "/etc/sysctl.d/50-backlog.conf": its file name "50-backlog.conf" does not sort after "99-sysctl.conf"',
  );
  // Any backlog:index:* component with a profile (here one without a connection: its own host).
  expect(output).toContain('ItUserData "user-data" (profile "hand-made"): pools[0].backlog = 0: listen.backlog must be between 1 and 65535');
  expect(output).toContain('ItUserData "user-data" (profile "hand-made"): listeners[0].backlog = 4096: exceeds somaxconn 2048 (override)');
  // Components with the same profile on one host do not conflict.
  expect(output).not.toContain('BacklogHost "small" (profile "small") and BacklogHost "open"');
});
