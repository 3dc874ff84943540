/**
 * The library as its users get it: `npm pack`, then each example copied to a temp directory and
 * the PACKED tarball installed there with `npm install <tgz>` (no path import of the sources), then
 * the real engine against lab hosts:
 * - examples/consumer-ts: a TypeScript program of its own; `tsc --noEmit` resolves the package's
 *   types (and rejects wrong arguments), `pulumi up` deploys a BacklogHost, verification is read back,
 *   a second run has no changes, `pulumi destroy` restores the host. The dynamic provider's
 *   serialized code, written while the library lives in node_modules, must load the library through
 *   the package's `exports` (`pulumi-backlog/internal/*.js`): see the state check below.
 * - examples/yaml: a Pulumi YAML program that uses BacklogHost and BacklogFleet through the
 *   TypeScript component provider in provider/ (PulumiPlugin.yaml, runtime nodejs; the program
 *   names it `../../provider`, so the copies keep the repository's layout), run by our Node.js
 *   language host (RunPlugin) and the YAML language host built by the toolchain.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { Lab, type LabHost, repo, requireLabMachine, tearDownAfterAll } from "./harness";

jest.setTimeout(900_000);

const lab = new Lab("pkg");
const work = mkdtempSync(join(tmpdir(), "backlog-pkg-"));
const state = join(work, "state");
let tarball: string;
const stacks: { stack: Stack; remove: () => Promise<void> }[] = [];
const timings: Record<string, number> = {};

/** Runs a command; throws with its output unless it exits 0 (or `allowFailure`). */
function run(cmd: string, args: string[], cwd: string, allowFailure = false): { code: number; stdout: string; out: string } {
  const started = Date.now();
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 600_000, env: process.env });
  timings[`${basename(cwd)}: ${basename(cmd)} ${args.filter((a) => !a.startsWith("/")).join(" ")}`] = Date.now() - started;
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (!allowFailure && r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) failed (${r.status}):\n${out}`);
  return { code: r.status ?? -1, stdout: r.stdout ?? "", out };
}

/** A copy of a folder of the repository (an example, the provider) with the packed library installed into it, as a user would have it. */
function install(folder: string, dest: string): string {
  cpSync(join(repo, folder), dest, {
    recursive: true,
    filter: (src) => !/\/(node_modules|Pulumi\.[^/]+\.yaml)$/.test(src), // no installed modules, no stack files
  });
  run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball], dest);
  return dest;
}

/** A stack of a program in `dir`, state and secrets of this test only. */
async function newStack(dir: string, name: string, config: Record<string, string | number>, secrets: Record<string, string>): Promise<Stack> {
  const stackName = `it-${name}-${process.pid}`;
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName, workDir: dir },
    {
      envVars: { PULUMI_BACKEND_URL: `file://${state}`, PULUMI_CONFIG_PASSPHRASE: "integration-tests-only" },
    },
  );
  for (const [key, value] of Object.entries(config)) await stack.setConfig(key, { value: String(value) });
  for (const [key, value] of Object.entries(secrets)) await stack.setConfig(key, { value, secret: true });
  stacks.push({ stack, remove: () => stack.workspace.removeStack(stackName, { force: true }) });
  return stack;
}

type Row = { setting: string; expected: number; effective: number | null; ok: boolean };

function expectAllEffective(rows: Row[], value: number): void {
  expect(rows.map((r) => r.setting)).toEqual([
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "php-fpm pool www listen.backlog (/run/php/php8.2-fpm.sock)",
    "nginx listen 0.0.0.0:8080 backlog",
    // Each kernel key again as boot and a later `sysctl --system` would set it (docs/sysctl.md).
    "net.core.somaxconn after boot (systemd-sysctl)",
    "net.ipv4.tcp_max_syn_backlog after boot (systemd-sysctl)",
    "net.core.somaxconn after sysctl --system",
    "net.ipv4.tcp_max_syn_backlog after sysctl --system",
  ]);
  for (const row of rows) expect(row).toEqual(expect.objectContaining({ expected: value, effective: value, ok: true }));
}

/** What the host itself says, independently of the library: somaxconn and the sockets' Send-Q. */
function hostValues(host: LabHost): { somaxconn: number; php: number; nginx: number; dropIn: boolean } {
  const out = lab
    .sh(
      host.name,
      [
        "cat /proc/sys/net/core/somaxconn",
        "ss -H -l -n -x src /run/php/php8.2-fpm.sock | awk '{print $4}' | head -n1",
        "ss -H -l -n -t sport = :8080 | awk '{print $3}' | head -n1",
        "test -e /etc/sysctl.d/zz-pulumi-backlog.conf && echo present || echo absent",
      ].join("; "),
    )
    .trim()
    .split("\n");
  return { somaxconn: Number(out[0]), php: Number(out[1]), nginx: Number(out[2]), dropIn: out[3] === "present" };
}

let original: Record<string, ReturnType<typeof hostValues>> = {};

beforeAll(() => {
  requireLabMachine();
  mkdirSync(state);
  // `npm pack` runs prepack (a fresh build of dist/) and writes the tarball users would install.
  // With --json the lifecycle output goes to stderr and the report to stdout.
  const stdout = run("npm", ["pack", "--json", "--pack-destination", work], repo).stdout;
  const packed = JSON.parse(stdout.slice(stdout.indexOf("[")));
  tarball = join(work, packed[0].filename);
  expect(existsSync(tarball)).toBe(true);
  lab.up(3);
  original = Object.fromEntries(lab.hosts.map((h) => [h.name, hostValues(h)]));
});

tearDownAfterAll(lab, () => stacks);
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  // Seconds per step, for the record (jest prints console output of the suite).
  console.log(
    Object.entries(timings)
      .map(([k, ms]) => `${(ms / 1000).toFixed(1).padStart(6)} s  ${k}`)
      .join("\n"),
  );
});

describe("TypeScript consumer (examples/consumer-ts) with the packed tarball", () => {
  let dir: string;
  let stack: Stack;
  const key = () => readFileSync(lab.hosts[0].privateKeyPath, "utf8");

  beforeAll(() => {
    dir = install("examples/consumer-ts", join(work, "consumer-ts"));
  });

  test("it installed the tarball, not the sources: node_modules/pulumi-backlog holds dist/ and no .ts sources", () => {
    const installed = JSON.parse(readFileSync(join(dir, "node_modules/pulumi-backlog/package.json"), "utf8"));
    expect(installed.version).toBe(JSON.parse(readFileSync(join(repo, "package.json"), "utf8")).version);
    expect(existsSync(join(dir, "node_modules/pulumi-backlog/dist/index.js"))).toBe(true);
    expect(existsSync(join(dir, "node_modules/pulumi-backlog/src"))).toBe(false);
    expect(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).dependencies["pulumi-backlog"]).toMatch(/^file:.*\.tgz$/);
  });

  test("tsc --noEmit: the package's types resolve (node16, node10 and bundler resolution)", () => {
    const tsc = join(dir, "node_modules/.bin/tsc");
    run(tsc, ["--noEmit", "-p", "."], dir);
    run(tsc, ["--noEmit", "-p", ".", "--module", "commonjs", "--moduleResolution", "node10", "--skipLibCheck"], dir);
    run(tsc, ["--noEmit", "-p", ".", "--module", "preserve", "--moduleResolution", "bundler", "--skipLibCheck"], dir);
  });

  test("tsc --noEmit rejects wrong arguments and deep imports: the types are real, not any", () => {
    const bad = join(dir, "bad.ts");
    writeFileSync(
      bad,
      [
        'import { BacklogHost } from "pulumi-backlog";',
        'import { runScript } from "pulumi-backlog/dist/ssh";',
        'new BacklogHost("x", { profile: { name: "x", backlog: "many" } });',
        "void runScript;",
        "",
      ].join("\n"),
    );
    try {
      const { code, out } = run(
        join(dir, "node_modules/.bin/tsc"),
        ["--noEmit", "--strict", "--skipLibCheck", "--module", "node16", "--moduleResolution", "node16", "--types", "node", bad],
        dir,
        true,
      );
      expect(code).not.toBe(0);
      expect(out).toMatch(/bad\.ts\(2,\d+\): error TS2307: Cannot find module 'pulumi-backlog\/dist\/ssh'/);
      expect(out).toMatch(/bad\.ts\(3,\d+\): error TS2\d+:[^\n]*(connection|string)/);
    } finally {
      rmSync(bad);
    }
  });

  test("pulumi up deploys a BacklogHost and every effective value is the expected one", async () => {
    const host = lab.hosts[0];
    stack = await newStack(dir, "consumer", { host: host.host, port: host.port, hostKey: host.hostKey, backlog: 8192 }, { privateKey: key() });
    const result = await stack.up({ onOutput: () => undefined });
    expect(result.summary.result).toBe("succeeded");
    const outputs = await stack.outputs();
    expectAllEffective(outputs.verification.value as Row[], 8192);
    expect(outputs.bootOverrides.value).toEqual([]);
    expect(hostValues(host)).toEqual({ somaxconn: 8192, php: 8192, nginx: 8192, dropIn: true });
  });

  test("the state holds a module that loads the provider from node_modules through the package exports, not its code", async () => {
    const deployment = (await stack.exportStack()).deployment as { resources: { type: string; inputs?: Record<string, unknown> }[] };
    const settings = deployment.resources.filter((r) => r.type === "pulumi-nodejs:dynamic/backlog:HostSettings");
    expect(settings).toHaveLength(1);
    const code = String(settings[0].inputs?.__provider);
    // One specifier, the package's own internal export of an existing module of the installed package.
    const specs = [...code.matchAll(/var spec = "([^"]*)"/g)].map((m) => m[1]);
    expect(specs).toEqual(["pulumi-backlog/internal/pulumi/hostSettingsProvider.js"]);
    expect(existsSync(join(dir, "node_modules/pulumi-backlog/dist/pulumi/hostSettingsProvider.js"))).toBe(true);
    // None of the provider's code (it was 17.5 KB of references and code before the shim, 2.7 KB the serialized shim).
    expect(code.length).toBeLessThan(1200);
    expect(code).not.toMatch(/applyScript|restoreScript|ssh2/);
    // Nothing by path: no relative or absolute module, no trace of where the package was installed.
    const required = [...new Set([...code.matchAll(/require\("([^"]*)"\)/g)].map((m) => m[1]))];
    expect(required.filter((m) => m.startsWith(".") || m.startsWith("/"))).toEqual([]);
    expect(code).not.toContain(work);
  });

  test("a second run finds the host in sync and changes nothing", async () => {
    const result = await stack.preview({ expectNoChanges: true, onOutput: () => undefined });
    expect(result.changeSummary).toEqual({ same: 3 });
  });

  test("pulumi destroy restores the host", async () => {
    await stack.destroy({ onOutput: () => undefined });
    expect(hostValues(lab.hosts[0])).toEqual(original[lab.hosts[0].name]);
  });
});

describe("Pulumi YAML (examples/yaml) through the TypeScript component provider", () => {
  let dir: string;
  let provider: string;
  let stack: Stack;
  const BACKLOG = 6144;

  beforeAll(() => {
    // The provider with its own node_modules, at ../../provider from the program as in the repository;
    // node_modules next to Pulumi.yaml serve the dynamic-provider shim, which the engine starts in
    // the program's directory (pulumi/pulumi#5455).
    provider = install("provider", join(work, "provider"));
    dir = install("examples/yaml", join(work, "examples", "yaml"));
  });

  test("the component provider type-checks against the packed library", () => {
    run(join(provider, "node_modules/.bin/tsc"), ["--noEmit", "-p", "."], provider);
  });

  test("pulumi up deploys a BacklogHost and a BacklogFleet from YAML and verification is read back", async () => {
    const [, web, app] = lab.hosts;
    stack = await newStack(
      dir,
      "yaml",
      {
        backlog: BACKLOG,
        webHost: web.host,
        webPort: web.port,
        webHostKey: web.hostKey,
        appHost: app.host,
        appPort: app.port,
        appHostKey: app.hostKey,
      },
      { privateKey: readFileSync(web.privateKeyPath, "utf8") },
    );
    const result = await stack.up({ onOutput: () => undefined });
    expect(result.summary.result).toBe("succeeded");
    const outputs = await stack.outputs();
    expectAllEffective(outputs.webVerification.value as Row[], BACKLOG);
    expect(Object.keys(outputs.appVerification.value)).toEqual(["app1"]);
    expectAllEffective((outputs.appVerification.value as Record<string, Row[]>).app1, BACKLOG);
    // inSync says whether the host matches the profile after this run (CHANGELOG: inSyncBefore holds the old meaning).
    expect(outputs.webInSync.value).toBe(true);
    for (const h of [web, app]) expect(hostValues(h)).toEqual({ somaxconn: BACKLOG, php: BACKLOG, nginx: BACKLOG, dropIn: true });
  });

  test("each YAML component wraps the library's own component, which records the derived profile", async () => {
    const deployment = (await stack.exportStack()).deployment as { resources: { urn: string; type: string; inputs?: Record<string, unknown> }[] };
    const byType = (t: string) => deployment.resources.filter((r) => r.type === t);
    const hosts = byType("backlog:index:BacklogHost");
    // The facade the YAML program declared, the library's BacklogHost under it, and the fleet's host.
    expect(hosts.map((r) => r.urn.split("::")[2]).sort()).toEqual([
      "backlog:index:BacklogFleet$backlog:index:BacklogFleet$backlog:index:BacklogHost",
      "backlog:index:BacklogHost",
      "backlog:index:BacklogHost$backlog:index:BacklogHost",
    ]);
    const facade = hosts.find((r) => r.urn.split("::")[2] === "backlog:index:BacklogHost")!;
    expect(facade.inputs ?? {}).toEqual({});
    const inner = hosts.find((r) => r.urn.split("::")[2] === "backlog:index:BacklogHost$backlog:index:BacklogHost")!;
    expect(inner.inputs?.profile).toEqual(expect.objectContaining({ name: "yaml-web", backlog: BACKLOG, sysctls: expect.any(Object) }));
    expect(byType("pulumi-nodejs:dynamic/backlog:HostSettings")).toHaveLength(2);
  });

  test("without node_modules in the program's directory the dynamic provider cannot start (pulumi/pulumi#5455)", async () => {
    // Same program, but the modules only under provider/: the plugin still loads, the engine's
    // dynamic-provider shim (started in the program directory) does not find @pulumi/pulumi.
    // A sibling of the program, so that ../../provider is the same provider.
    const bare = join(work, "examples", "yaml-bare");
    cpSync(dir, bare, { recursive: true, filter: (src) => !/\/(node_modules|Pulumi\.[^/]+\.yaml)$/.test(src) });
    const web = lab.hosts[1];
    const bareStack = await newStack(
      bare,
      "yaml-bare",
      {
        backlog: BACKLOG,
        webHost: web.host,
        webPort: web.port,
        webHostKey: web.hostKey,
        appHost: lab.hosts[2].host,
        appPort: lab.hosts[2].port,
        appHostKey: lab.hosts[2].hostKey,
      },
      { privateKey: readFileSync(web.privateKeyPath, "utf8") },
    );
    let output = "";
    await expect(
      bareStack.preview({
        onOutput: (s) => {
          output += s;
        },
      }),
    ).rejects.toThrow();
    expect(output).toContain("Cannot find module '@pulumi/pulumi/cmd/dynamic-provider'");
  });

  test("pulumi destroy restores both hosts", async () => {
    await stack.destroy({ onOutput: () => undefined });
    for (const h of lab.hosts.slice(1)) expect(hostValues(h)).toEqual(original[h.name]);
  });
});
