/**
 * Hosts that join a fleet in the middle of a rolling rollout (issue #19), under Pulumi mocks: an
 * autoscaling group launches instances while a rollout is under way. A Pulumi program reads the
 * fleet once per run (`ec2Hosts` is awaited before the fleet is built), so an instance launched
 * during a run joins the next run; these tests check that in that run it is planned into the
 * rollout's batches like any other host (by its place in the host list, sorted by instance id),
 * waits for the batch before it, and makes the hosts after it wait for its own batch, and that
 * stopped or gone instances are in no batch and wait for nothing.
 *
 * BacklogHost is replaced by a stand-in of the same shape (as in test/unit/backlogFleet.test.ts):
 * a component with one custom child `<name>-settings`, whose planned `actions` are chosen here.
 */
import * as pulumi from "@pulumi/pulumi";

/** Planned actions per host component name, as the stand-in's `actions` output reports them. */
const mockActions: Record<string, Record<string, string>> = {};

jest.mock("../../../src/pulumi/backlogHost", () =>
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require("../pulumi/hostStandIn") as typeof import("../pulumi/hostStandIn")).backlogHostStandIn(() => mockActions),
);

interface Instance {
  id: string;
  state: string;
}
let instances: Instance[] = [];
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICan5M/wnTTGsRF17UI09YCdJg/4N6XN/wKpk3/8YNBq";

interface Registration {
  name: string;
  deps: string[];
  sent: number;
  done?: number;
}
const registered: Registration[] = [];
/** Per settings resource name: how long its "apply" takes (ms). */
const slow: Record<string, number> = {};

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: async (args) => {
        if (slow[args.name]) await new Promise((r) => setTimeout(r, slow[args.name]));
        return { id: `${args.name}-id`, state: { ...args.inputs, verification: [] } };
      },
      call: (args) => {
        if (args.token === "aws:ec2/getInstances:getInstances") {
          const states = args.inputs.instanceStateNames as string[];
          return { ids: instances.filter((i) => states.includes(i.state)).map((i) => i.id), privateIps: [], publicIps: [], id: "r" };
        }
        if (args.token === "aws:ec2/getInstance:getInstance") {
          const n = instances.findIndex((x) => x.id === args.inputs.instanceId);
          return {
            id: args.inputs.instanceId,
            privateIp: `10.0.1.${n + 1}`,
            publicIp: "",
            subnetId: "s",
            tags: { Role: "web" },
            instanceState: instances[n]!.state,
          };
        }
        throw new Error(`unexpected invoke ${args.token}`);
      },
    },
    "project",
    "stack",
    false,
  );
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(req: { getName(): string; getDependenciesList(): string[] }, cb: (err: unknown, resp: unknown) => void): void;
  };
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    const r: Registration = { name: req.getName(), deps: req.getDependenciesList(), sent: performance.now() };
    registered.push(r);
    original(req, (err, resp) => {
      r.done = performance.now();
      cb(err, resp);
    });
  };
});

import { ec2Hosts } from "../../../src/aws";
import { BacklogFleet } from "../../../src/pulumi/backlogFleet";

const settle = <T>(o: pulumi.Output<T>): Promise<T> =>
  new Promise((resolve) =>
    o.apply((v) => {
      resolve(v);
      return v;
    }),
  );
const profile = { name: "web", backlog: 2048, pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }] };
const byName = (name: string) => registered.find((r) => r.name === name);
/** Host names whose settings resources the host component `web-<host>` depends on. */
const depHosts = (host: string) => (byName(`web-${host}`)?.deps ?? []).map((urn) => urn.replace(/^.*::web-(.*)-settings$/, "$1")).sort();
const fleetHosts = () =>
  ec2Hosts({
    tags: { Role: "web" },
    addressKind: "private",
    user: "admin",
    privateKey: "k",
    hostKeys: () => KEY,
  });

beforeEach(() => {
  registered.length = 0;
  for (const k of Object.keys(mockActions)) delete mockActions[k];
  for (const k of Object.keys(slow)) delete slow[k];
  jest.spyOn(pulumi.log, "warn").mockImplementation(async () => undefined);
  jest.spyOn(pulumi.log, "info").mockImplementation(async () => undefined);
});
afterEach(() => jest.restoreAllMocks());

test("instances launched during a stopped rollout join the next run's batches by instance id, and wait for the batch before them", async () => {
  // Run 1 had 6 hosts and a restart everywhere: batches of 2; it stopped after batch 1 (i-10, i-20 done).
  // Before run 2, the group launched i-25 and i-65 (first deploy: a restart each).
  instances = ["i-10", "i-20", "i-25", "i-30", "i-40", "i-50", "i-60", "i-65"].map((id) => ({ id, state: "running" }));
  for (const id of ["i-30", "i-40", "i-50", "i-60", "i-25", "i-65"]) mockActions[`web-${id}`] = { "php8.2-fpm": "restart" };
  const fleet = new BacklogFleet("web", { profile, hosts: await fleetHosts() });
  // 25 % of 8 hosts: batches of 2 in instance-id order; the hosts already done are in their batch, with nothing to do.
  expect(await settle(fleet.rollout)).toEqual([
    ["i-10", "i-20"],
    ["i-25", "i-30"],
    ["i-40", "i-50"],
    ["i-60", "i-65"],
  ]);
  await settle(fleet.verification);
  expect(depHosts("i-25")).toEqual(["i-10", "i-20"]);
  expect(depHosts("i-30")).toEqual(["i-10", "i-20"]);
  expect(depHosts("i-40")).toEqual(["i-25", "i-30"]); // the hosts after the new one wait for its batch
  expect(depHosts("i-65")).toEqual(["i-40", "i-50"]);
});

test("a new instance is not touched before the batch before it has returned", async () => {
  instances = ["i-10", "i-20", "i-30"].map((id) => ({ id, state: "running" }));
  slow["web-i-10-settings"] = 150;
  const fleet = new BacklogFleet("web", { profile, hosts: await fleetHosts(), rollout: { maxParallel: 2 } });
  await settle(fleet.verification);
  const firstBatchDone = byName("web-i-10-settings")!.done!;
  expect(byName("web-i-30-settings")!.sent).toBeGreaterThanOrEqual(firstBatchDone);
});

test("one new host that must restart turns an all-at-once relisten into batches: it rolls out like the rest", async () => {
  instances = ["i-10", "i-20", "i-30", "i-40", "i-50"].map((id) => ({ id, state: "running" }));
  for (const id of ["i-10", "i-20", "i-40", "i-50"]) mockActions[`web-${id}`] = mockActions[`web2-${id}`] = { "php8.2-fpm": "relisten" };
  const before = new BacklogFleet("web", { profile, hosts: (await fleetHosts()).filter((h) => h.name !== "i-30") });
  expect(await settle(before.rollout)).toEqual([["i-10", "i-20", "i-40", "i-50"]]);
  await settle(before.verification);
  registered.length = 0;
  mockActions["web2-i-30"] = { "php8.2-fpm": "restart" }; // the new instance's first deploy (next run: same hosts, fleet "web2" here)
  const after = new BacklogFleet("web2", { profile, hosts: await fleetHosts() });
  expect(await settle(after.rollout)).toEqual([["i-10", "i-20"], ["i-30", "i-40"], ["i-50"]]);
});

test("stopped and terminated instances are in no batch and wait for nothing; the percentage counts the running hosts", async () => {
  instances = [
    { id: "i-10", state: "running" },
    { id: "i-15", state: "terminated" },
    { id: "i-20", state: "running" },
    { id: "i-25", state: "stopped" },
    { id: "i-30", state: "running" },
    { id: "i-40", state: "running" },
  ];
  const fleet = new BacklogFleet("web", { profile, hosts: await fleetHosts(), rollout: { maxParallel: "50%" } });
  expect(await settle(fleet.rollout)).toEqual([
    ["i-10", "i-20"],
    ["i-30", "i-40"],
  ]);
  await settle(fleet.verification);
  expect(depHosts("i-15")).toEqual([]);
  expect(depHosts("i-25")).toEqual([]);
  expect(depHosts("i-30")).toEqual(["i-10", "i-20"]);
});
