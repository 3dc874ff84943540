/**
 * The fleet's rolling rollout under Pulumi mocks: the batches, the dependsOn edges the SDK sends
 * to the engine (batch k+1's hosts wait for batch k's settings resources), what happens after a
 * failed host (maxFailedHosts), and invalid rollouts refused before anything is registered.
 *
 * BacklogHost is replaced by a stand-in of the same shape (a component with one custom child,
 * `<name>-settings`, whose outputs feed `verification`), so that each host's planned `actions`
 * can be chosen here and a host's settings can be made slow or failing through the mocks. The
 * real BacklogHost under a fleet is covered by backlogHost.test.ts.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { BacklogFleet } from "../../../src/pulumi/backlogFleet";
import { RolloutError } from "../../../src/core/rollout";

/** Planned actions per host component name, as the stand-in's `actions` output reports them. */
const mockActions: Record<string, Record<string, string>> = {};
/** Probe failures per host component name, as the stand-in's `probeFailure` output reports them. */
const mockProbeFailures: Record<string, string> = {};

jest.mock("../../../src/pulumi/backlogHost", () =>
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require("./hostStandIn") as typeof import("./hostStandIn")).backlogHostStandIn(
    () => mockActions,
    () => mockProbeFailures,
  ),
);

interface Registration {
  type: string;
  name: string;
  /** URNs the SDK sent as the resource's dependencies. */
  deps: string[];
  /** When the RPC was sent and when it returned (ms, performance.now()). */
  sent: number;
  done?: number;
  failed?: boolean;
}

const registered: Registration[] = [];
/** The inputs each resource was registered with, by name (as the mocks saw them). */
const inputsOf: Record<string, Record<string, unknown>> = {};
/** Per settings resource name: how long its "apply" takes (ms) and whether it fails. */
const behaviour: Record<string, { ms?: number; fail?: boolean }> = {};

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: async (args) => {
        inputsOf[args.name] = args.inputs as Record<string, unknown>;
        const b = behaviour[args.name] ?? {};
        if (b.ms) await new Promise((r) => setTimeout(r, b.ms));
        if (b.fail) throw new Error(`${args.name}: verification failed (test)`);
        return { id: `${args.name}-id`, state: { ...args.inputs, verification: [] } };
      },
      call: () => ({}),
    },
    "project",
    "stack",
    false,
  );
  // Record what the SDK sends the engine: that is where dependsOn ends up.
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(req: { getType(): string; getName(): string; getDependenciesList(): string[] }, cb: (err: unknown, resp: unknown) => void): void;
  };
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    const r: Registration = { type: req.getType(), name: req.getName(), deps: req.getDependenciesList(), sent: performance.now() };
    registered.push(r);
    original(req, (err, resp) => {
      r.done = performance.now();
      r.failed = !!err;
      cb(err, resp);
    });
  };
});

beforeEach(() => {
  registered.splice(0);
  for (const k of Object.keys(behaviour)) delete behaviour[k];
  for (const k of Object.keys(mockActions)) delete mockActions[k];
  for (const k of Object.keys(mockProbeFailures)) delete mockProbeFailures[k];
  for (const k of Object.keys(inputsOf)) delete inputsOf[k];
});

const connection = { host: "127.0.0.1", hostKey: "ssh-ed25519 AAAA", privateKey: "k" };
const profile = { name: "web", backlog: 2048, pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }] };
const hosts = (...names: string[]) => names.map((name) => ({ name, connection }));

/** The value of an output, or the message it failed with. */
const settle = <T>(o: pulumi.Output<T>): Promise<T | { error: string }> =>
  new Promise((resolve) => pulumi.recover(o as pulumi.Output<T | { error: string }>, (e: Error) => ({ error: e.message })).apply(resolve));
const quiet = () => new Promise((r) => setTimeout(r, 300));

const byName = (name: string) => registered.find((r) => r.name === name);
/** Host names (of the fleet `f`) whose settings resources a registration depends on. */
const depHosts = (name: string) => (byName(name)?.deps ?? []).map((urn) => urn.replace(/^.*::f-(.*)-settings$/, "$1")).sort();

test("maxParallel 2: batches of two in host order, each batch depends on the one before", async () => {
  const fleet = new BacklogFleet("f", { profile, hosts: hosts("a", "b", "c", "d", "e"), rollout: { maxParallel: 2 } });
  expect(await settle(fleet.rollout)).toEqual([["a", "b"], ["c", "d"], ["e"]]);
  await settle(fleet.verification);
  expect(depHosts("f-a")).toEqual([]);
  expect(depHosts("f-b")).toEqual([]);
  expect(depHosts("f-c")).toEqual(["a", "b"]);
  expect(depHosts("f-d")).toEqual(["a", "b"]);
  expect(depHosts("f-e")).toEqual(["c", "d"]);
  // dependsOn on a component reaches its custom children: the URNs are the settings resources'.
  expect(byName("f-c")!.deps.every((u) => u.endsWith("-settings") && u.includes("test:index:HostSettings"))).toBe(true);
});

test("a batch is sent to the engine only after every settings resource of the previous batch returned", async () => {
  behaviour["f-a-settings"] = { ms: 150 };
  behaviour["f-b-settings"] = { ms: 50 };
  const fleet = new BacklogFleet("f", { profile, hosts: hosts("a", "b", "c"), rollout: { maxParallel: 2 } });
  await settle(fleet.verification);
  const aDone = byName("f-a-settings")!.done!;
  expect(byName("f-c")!.sent).toBeGreaterThanOrEqual(aDone);
  expect(byName("f-c-settings")!.sent).toBeGreaterThanOrEqual(aDone);
  // while the two hosts of the first batch ran side by side
  expect(byName("f-b-settings")!.sent).toBeLessThan(aDone);
});

test("default policy: all hosts at once when no host needs more than relisten, no dependsOn edge", async () => {
  Object.assign(mockActions, {
    "f-a": { "php8.2-fpm": "relisten", nginx: "none" },
    "f-b": { "php8.2-fpm": "none", nginx: "relisten" },
    "f-c": {},
  });
  const fleet = new BacklogFleet("f", { profile, hosts: hosts("a", "b", "c") });
  expect(await settle(fleet.rollout)).toEqual([["a", "b", "c"]]);
  expect(await settle(fleet.actions)).toEqual({ a: mockActions["f-a"], b: mockActions["f-b"], c: {} });
  await settle(fleet.verification);
  for (const h of ["a", "b", "c"]) expect(depHosts(`f-${h}`)).toEqual([]);
});

test("default policy: 25% of the hosts at a time as soon as one host reloads or restarts", async () => {
  const names = ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9", "h10"];
  for (const n of names) mockActions[`f-${n}`] = { "php8.2-fpm": "relisten" };
  mockActions["f-h9"] = { "php8.2-fpm": "restart" };
  const fleet = new BacklogFleet("f", { profile, hosts: hosts(...names) });
  expect(await settle(fleet.rollout)).toEqual([["h1", "h2", "h3"], ["h4", "h5", "h6"], ["h7", "h8", "h9"], ["h10"]]);
  await settle(fleet.verification);
  expect(depHosts("f-h2")).toEqual([]);
  expect(depHosts("f-h4")).toEqual(["h1", "h2", "h3"]);
  expect(depHosts("f-h10")).toEqual(["h7", "h8", "h9"]);
});

test("a host whose probe failed goes last, after every probed host, with maxParallel set too; each settings resource gets its place", async () => {
  mockProbeFailures["f-a"] = "cannot connect to root@127.0.0.1:2201: ECONNREFUSED";
  const fleet = new BacklogFleet("f", { profile, hosts: hosts("a", "b", "c"), rollout: { maxParallel: 2 } });
  expect(await settle(fleet.rollout)).toEqual([["b", "c"], ["a"]]);
  await settle(fleet.verification);
  expect(depHosts("f-b")).toEqual([]);
  expect(depHosts("f-c")).toEqual([]);
  expect(depHosts("f-a")).toEqual(["b", "c"]);
  expect(inputsOf["f-b-settings"].rolloutPlace).toEqual({ batch: 1, batches: 2, later: ["a"], laterCount: 1, maxFailedHosts: 0 });
  expect(inputsOf["f-a-settings"].rolloutPlace).toEqual({ batch: 2, batches: 2, later: [], laterCount: 0, maxFailedHosts: 0 });
});

test("adaptive: an unprobed host's settings are sent only after the probed host's returned (a failure cannot end the update before it)", async () => {
  mockProbeFailures["f-down"] = "cannot connect to root@127.0.0.1:2202: ECONNREFUSED";
  behaviour["f-up-settings"] = { ms: 200 };
  const fleet = new BacklogFleet("f", { profile, hosts: [...hosts("down"), ...hosts("up")] });
  expect(await settle(fleet.rollout)).toEqual([["up"], ["down"]]);
  await settle(fleet.verification);
  expect(byName("f-down-settings")!.sent).toBeGreaterThanOrEqual(byName("f-up-settings")!.done!);
  expect(depHosts("f-down")).toEqual(["up"]);
});

test("one batch: no host gets a place (nothing to say after a failure, nothing recorded)", async () => {
  const fleet = new BacklogFleet("f", { profile, hosts: hosts("a", "b") });
  expect(await settle(fleet.rollout)).toEqual([["a", "b"]]);
  await settle(fleet.verification);
  expect(inputsOf["f-a-settings"]).toBeDefined();
  expect(inputsOf["f-a-settings"].rolloutPlace).toBeUndefined();
});

/**
 * Failure scenarios run in a child Node.js process: the Pulumi SDK reports a resource that could
 * not be registered (here: the hosts after a stopped rollout) as an unhandled rejection, which
 * Pulumi's language host logs as the program's error, and which Jest would count as a failure of
 * the test itself. The child transpiles the TypeScript sources with `typescript`, puts the same
 * stand-in in place of BacklogHost, runs the fleet under mocks, and prints what happened as JSON:
 * the registrations with their dependencies, each host component's URN (or the error it failed
 * with), and the unhandled errors, once per error object (as the language host reports them).
 */
interface ChildResult {
  registered: { name: string; deps: string[]; failed: boolean }[];
  urns: Record<string, string | { error: string }>;
  errors: string[];
}

const CHILD = String.raw`
const [repo, scenarioJson] = process.argv.slice(1);
const scenario = JSON.parse(scenarioJson);
const fs = require("fs"), path = require("path"), Module = require("module");
const ts = require(path.join(repo, "node_modules/typescript"));
require.extensions[".ts"] = (m, file) => m._compile(ts.transpileModule(fs.readFileSync(file, "utf8"), { fileName: file,
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText, file);
const pulumi = require(path.join(repo, "node_modules/@pulumi/pulumi"));
const errors = [], seen = new Set();
const report = (e) => { if (!seen.has(e)) { seen.add(e); errors.push(String((e && e.message) || e)); } };
process.on("unhandledRejection", report);
process.on("uncaughtException", report);
class BacklogHost extends pulumi.ComponentResource {
  constructor(name, _args, opts) {
    super("backlog:index:BacklogHost", name, {}, opts);
    const settings = new pulumi.CustomResource("test:index:HostSettings", name + "-settings", { verification: undefined }, { parent: this });
    this.verification = settings.verification;
    this.inSync = pulumi.output(true);
    this.actions = pulumi.output((scenario.actions || {})[name] || {});
    this.probeFailure = pulumi.output((scenario.probeFailures || {})[name]);
    this.registerOutputs({});
  }
}
const hostFile = path.join(repo, "src/pulumi/backlogHost.ts");
const stub = new Module(hostFile);
Object.assign(stub, { filename: hostFile, loaded: true, exports: { BacklogHost, FLEET_HOST_ARGS: new WeakSet() } });
require.cache[hostFile] = stub;
(async () => {
  const registered = [];
  await pulumi.runtime.setMocks({
    newResource: async (args) => {
      const b = (scenario.behaviour || {})[args.name] || {};
      if (b.ms) await new Promise((r) => setTimeout(r, b.ms));
      if (b.fail) throw new Error(args.name + ": verification failed (test)");
      return { id: args.name + "-id", state: { ...args.inputs, verification: [] } };
    },
    call: () => ({}),
  }, "project", "stack", false);
  const monitor = pulumi.runtime.getMonitor();
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    const r = { name: req.getName(), deps: req.getDependenciesList(), failed: false };
    registered.push(r);
    original(req, (err, resp) => { r.failed = !!err; cb(err, resp); });
  };
  const { BacklogFleet } = require(path.join(repo, "src/pulumi/backlogFleet.ts"));
  const fleet = new BacklogFleet("f", scenario.args);
  const settle = (o) => new Promise((r) => pulumi.recover(o, (e) => ({ error: e.message })).apply(r));
  const urns = {};
  for (const [n, h] of Object.entries(fleet.hosts)) urns[n] = await settle(h.urn);
  await new Promise((r) => setTimeout(r, 300));
  process.stdout.write("\n@@result " + JSON.stringify({ registered, urns, errors }) + "\n");
  process.exit(0);
})();
`;

function runChild(scenario: {
  args: unknown;
  behaviour?: typeof behaviour;
  actions?: typeof mockActions;
  probeFailures?: Record<string, string>;
}): ChildResult {
  const repo = join(__dirname, "..", "..", "..");
  const r = spawnSync(process.execPath, ["-e", CHILD, repo, JSON.stringify(scenario)], { cwd: repo, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  const line = r.stdout.split("\n").find((l) => l.startsWith("@@result "));
  if (!line) throw new Error(`child printed no result:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(line.slice("@@result ".length)) as ChildResult;
}
const childDeps = (res: ChildResult, name: string) =>
  (res.registered.find((r) => r.name === name)?.deps ?? []).map((urn) => urn.replace(/^.*::f-(.*)-settings$/, "$1")).sort();
const touched = (res: ChildResult) => res.registered.map((r) => r.name);

test("a failed host stops the rollout after its batch: later hosts are never registered (maxFailedHosts 0)", () => {
  const res = runChild({
    args: { profile, hosts: hosts("a", "b", "c", "d", "e"), rollout: { maxParallel: 2 } },
    behaviour: { "f-b-settings": { fail: true }, "f-a-settings": { ms: 100 } }, // a, slower, still finishes
  });
  const stopped = "f: rollout stopped after batch 1 of 3: 1 host(s) failed (b), more than rollout.maxFailedHosts 0; not touched: c, d, e";
  expect(res.registered.find((r) => r.name === "f-a-settings")).toMatchObject({ failed: false });
  expect(res.registered.find((r) => r.name === "f-b-settings")).toMatchObject({ failed: true });
  expect(touched(res).filter((n) => /^f-[cde]/.test(n))).toEqual([]);
  expect(res.urns).toMatchObject({ c: { error: stopped }, d: { error: stopped }, e: { error: stopped } }); // e: the same reason, not "d failed"
  expect(typeof res.urns.a).toBe("string");
  // What the language host would log: the failed host, and the stop once (not once per host).
  expect(res.errors.filter((e) => e.includes("rollout stopped"))).toEqual([stopped]);
}, 60_000);

test("maxFailedHosts 1: the next batch goes on without the failed host, the second failure stops it", () => {
  const res = runChild({
    args: { profile, hosts: hosts("a", "b", "c", "d", "e", "g"), rollout: { maxParallel: 2, maxFailedHosts: 1 } },
    behaviour: { "f-b-settings": { fail: true }, "f-d-settings": { fail: true } },
  });
  expect(childDeps(res, "f-c")).toEqual(["a"]); // not on the failed b: the engine would skip c
  expect(childDeps(res, "f-d")).toEqual(["a"]);
  expect(res.registered.find((r) => r.name === "f-c-settings")).toMatchObject({ failed: false });
  expect(touched(res).filter((n) => /^f-[eg]/.test(n))).toEqual([]);
  expect(res.urns.e).toEqual({
    error: "f: rollout stopped after batch 2 of 3: 2 host(s) failed (b, d), more than rollout.maxFailedHosts 1; not touched: e, g",
  });
}, 60_000);

test("maxFailedHosts counts over all batches, and the batch after a failure depends on no failed host", () => {
  const res = runChild({
    args: { profile, hosts: hosts("a", "b", "c"), rollout: { maxParallel: 1, maxFailedHosts: 1 } },
    behaviour: { "f-a-settings": { fail: true } },
  });
  expect(childDeps(res, "f-b")).toEqual([]); // b waited for a, but depends on no failed resource
  expect(childDeps(res, "f-c")).toEqual(["b"]);
  expect(res.registered.find((r) => r.name === "f-c-settings")).toMatchObject({ failed: false });
  expect(res.errors.some((e) => e.includes("rollout stopped"))).toBe(false);
}, 60_000);

test("the fleet records its rollout policy as an input", async () => {
  let inputs: Record<string, unknown> | undefined;
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        if (args.type === "backlog:index:BacklogFleet") inputs = args.inputs;
        return { id: `${args.name}-id`, state: { ...args.inputs, verification: [] } };
      },
      call: () => ({}),
    },
    "project",
    "stack",
    false,
  );
  const fleet = new BacklogFleet("f", { profile, hosts: hosts("a"), rollout: { maxParallel: "50%", maxFailedHosts: 2 } });
  await settle(fleet.verification);
  expect(inputs).toMatchObject({ hosts: ["a"], rollout: { maxParallel: "50%", maxFailedHosts: 2 } });
});

test.each<[string, unknown, RegExp]>([
  ["maxParallel 0", { maxParallel: 0 }, /^rollout\.maxParallel 0: must be a whole number of hosts, at least 1/],
  ["maxParallel 150%", { maxParallel: "150%" }, /^rollout\.maxParallel "150%": a percentage of the hosts must be from 1% to 100%$/],
  ['maxParallel "3"', { maxParallel: "3" }, /^rollout\.maxParallel "3": must be a whole number of hosts/],
  ["maxFailedHosts -1", { maxFailedHosts: -1 }, /^rollout\.maxFailedHosts -1: must be a whole number of hosts, 0 or more/],
  ["an unknown field", { maxParalel: 2 }, /^rollout\.maxParalel 2: unknown field/],
])("refuses a rollout with %s before registering anything", async (_name, rollout, message) => {
  const make = () => new BacklogFleet("f", { profile, hosts: hosts("a", "b"), rollout: rollout as never });
  expect(make).toThrow(RolloutError);
  expect(make).toThrow(message);
  await quiet();
  expect(registered).toEqual([]);
});
