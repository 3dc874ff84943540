/**
 * EC2 instances that are not running, from ec2Hosts through BacklogFleet to the settings resource,
 * under Pulumi mocks (no AWS, no host; issue #19): a terminated instance's host is registered with
 * presence "gone" and retainOnDelete, a stopped one's with presence "stopped"; neither gets an SSH
 * connection; and the dynamic provider keeps their last deploy (diff: no change; create: nothing).
 * What the real engine does with those registrations is tested on lab hosts in
 * test/integration/presence.test.ts.
 */
import * as pulumi from "@pulumi/pulumi";

/** Every SSH connection the code under test opens, by target address (none reaches a network). */
const dialed: string[] = [];
jest.mock("../../../src/transport/ssh", () => {
  const actual = jest.requireActual("../../../src/transport/ssh");
  return {
    ...actual,
    runScript: jest.fn(async (conn: { host: string }) => {
      dialed.push(conn.host);
      throw new Error(`cannot connect to root@${conn.host}:22 (test: no network)`);
    }),
  };
});

interface Instance {
  id: string;
  privateIp: string;
  tags: Record<string, string>;
  state: string;
}
let instances: Instance[] = [];
const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICan5M/wnTTGsRF17UI09YCdJg/4N6XN/wKpk3/8YNBq";

/** What the SDK registered: name, type, the inputs the mocks saw, and the retainOnDelete option sent to the engine. */
const registered: { name: string; type: string; retainOnDelete: boolean; inputs?: Record<string, any> }[] = [];

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        const r = registered.find((x) => x.name === args.name && x.inputs === undefined);
        if (r) r.inputs = args.inputs;
        return { id: `${args.name}-id`, state: { ...args.inputs, verification: [] } };
      },
      call: (args) => {
        if (args.token === "aws:ec2/getInstances:getInstances") {
          const states = args.inputs.instanceStateNames as string[];
          return { ids: instances.filter((i) => states.includes(i.state)).map((i) => i.id), privateIps: [], publicIps: [], id: "r" };
        }
        if (args.token === "aws:ec2/getInstance:getInstance") {
          const i = instances.find((x) => x.id === args.inputs.instanceId)!;
          return { id: i.id, privateIp: i.privateIp, publicIp: "", subnetId: "subnet-1", tags: i.tags, instanceState: i.state };
        }
        throw new Error(`unexpected invoke ${args.token}`);
      },
    },
    "backlog",
    "unit",
    false,
  );
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(req: { getType(): string; getName(): string; getRetainondelete(): boolean }, cb: (err: unknown, resp: unknown) => void): void;
  };
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    registered.push({ name: req.getName(), type: req.getType(), retainOnDelete: req.getRetainondelete() });
    original(req, cb);
  };
});

import { ec2Hosts } from "../../../src/aws";
import { BacklogFleet } from "../../../src/pulumi/backlogFleet";
import type { HostSettingsInputs, HostSettingsOutputs } from "../../../src/pulumi/hostSettings";
import { hostSettingsProvider } from "../../../src/pulumi/hostSettingsProvider";

const settle = <T>(o: pulumi.Output<T>): Promise<T> =>
  new Promise((resolve) =>
    o.apply((v) => {
      resolve(v);
      return v;
    }),
  );
const profile = { name: "web", backlog: 2048, pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }], listeners: [{ listen: 80, pool: "www" }] };
let warnings: string[];

beforeEach(() => {
  dialed.length = 0;
  registered.length = 0;
  warnings = [];
  jest.spyOn(pulumi.log, "warn").mockImplementation(async (m: string) => {
    warnings.push(m);
  });
  instances = [
    { id: "i-01", privateIp: "10.0.1.1", tags: { Role: "web" }, state: "running" },
    { id: "i-02", privateIp: "10.0.1.2", tags: { Role: "web" }, state: "stopped" },
    { id: "i-03", privateIp: "", tags: { Role: "web" }, state: "terminated" },
    { id: "i-04", privateIp: "10.0.1.4", tags: { Role: "web" }, state: "shutting-down" },
    { id: "i-05", privateIp: "10.0.1.5", tags: { Role: "web" }, state: "stopping" },
  ];
});
afterEach(() => jest.restoreAllMocks());

test("from EC2 states to the fleet: gone hosts retainOnDelete, stopped ones kept; SSH only to the running one; reported", async () => {
  const hosts = await ec2Hosts({ tags: { Role: "web" }, addressKind: "private", user: "admin", privateKey: pulumi.secret("k"), hostKeys: { "i-01": KEY_A } });
  const fleet = new BacklogFleet("web", { profile, hosts, rollout: { maxParallel: 1 } });
  expect(await settle(fleet.absent)).toEqual({ "i-02": "stopped", "i-03": "gone", "i-04": "gone", "i-05": "stopped" });
  // The batches hold the running host only: a stopped or gone host changes nothing and waits for nothing.
  expect(await settle(fleet.rollout)).toEqual([["i-01"]]);
  await settle(fleet.inSync);
  await new Promise((r) => setTimeout(r, 200));

  expect(dialed).toEqual(["10.0.1.1"]); // the running host's probe; nothing to 10.0.1.2, .4, .5
  const settings = (host: string) => registered.find((r) => r.name === `web-${host}-settings`)!;
  expect(["i-01", "i-02", "i-03", "i-04", "i-05"].map((h) => [h, settings(h).inputs?.presence, settings(h).retainOnDelete])).toEqual([
    ["i-01", "present", false],
    ["i-02", "stopped", false],
    ["i-03", "gone", true],
    ["i-04", "gone", true],
    ["i-05", "stopped", false],
  ]);
  // A stopped or gone host carries no plan: nothing could be applied even if the engine asked.
  expect(settings("i-02").inputs?.plan).toBeUndefined();
  expect(settings("i-03").inputs?.plan).toBeUndefined();
  // Reported: by ec2Hosts with the instance id and state, and by the host itself.
  expect(warnings).toEqual(
    expect.arrayContaining([
      "ec2Hosts: instance i-02 (10.0.1.2) is stopped: host i-02 is not probed and not changed (no SSH); the stack keeps its last deploy until it runs again",
      "ec2Hosts: instance i-03 (no private ip) is terminated: host i-03 is forgotten without SSH (what the deployment changed stays on its disk)",
      expect.stringMatching(/^web-i-02: the machine is stopped: not probed and not changed \(no SSH\)/),
      expect.stringMatching(
        /^web-i-03: the machine is gone for good: not probed and not changed \(no SSH\); once it leaves the inventory it is dropped from the stack without a restore/,
      ),
    ]),
  );
  expect(await settle(fleet.hosts["i-02"]!.reasons)).toEqual([expect.stringMatching(/the machine is stopped/)]);
  expect(await settle(fleet.actions)).toMatchObject({ "i-02": {}, "i-03": {} });
});

test("a stopped or gone host with no pinned key is accepted (no connection is made); a present one without is refused", async () => {
  const { BacklogHost } = await import("../../../src/pulumi/backlogHost");
  const connection = { host: "10.0.1.2", user: "admin", privateKey: "k" };
  expect(() => new BacklogHost("s", { connection, profile, presence: "stopped" })).not.toThrow();
  expect(() => new BacklogHost("p", { connection, profile })).toThrow(/p: connection.hostKey is required/);
  expect(() => new BacklogHost("x", { connection, profile, presence: "hibernated" as never })).toThrow(
    /^x: presence "hibernated": must be one of "present", "stopped", "gone"$/,
  );
  await new Promise((r) => setTimeout(r, 100));
  expect(dialed).toEqual([]);
});

describe("the dynamic provider with a stopped or gone host", () => {
  const conn = { host: "10.0.1.2", user: "admin", privateKey: "k" } as HostSettingsInputs["connection"];
  const deployed = {
    connection: conn,
    hostName: "web-i-02",
    target: "admin@10.0.1.2:22",
    inSync: true,
    desiredHash: "abc",
    plan: { stateDir: "/var/lib/pulumi-backlog", owner: "o", files: [], sysctlKeys: [], services: [] },
    verification: [{ setting: "net.core.somaxconn", expected: 2048, effective: 2048, ok: true }],
  } as unknown as HostSettingsOutputs;
  const news = (presence: "stopped" | "gone"): HostSettingsInputs => ({
    connection: conn,
    hostName: "web-i-02",
    target: "admin@i-02:22",
    inSync: false,
    presence,
  });

  test.each(["stopped", "gone"] as const)(
    "%s: the first run that sees it is an update that records the presence (not a replacement, even for a new target); later runs are no change",
    async (presence) => {
      expect(await hostSettingsProvider.diff!("id", deployed, news(presence))).toEqual({ changes: true });
      expect(await hostSettingsProvider.diff!("id", { ...deployed, presence }, news(presence))).toEqual({ changes: false });
      // The same olds with a present host and another target: a replacement, as before.
      expect(await hostSettingsProvider.diff!("id", deployed, { ...news("stopped"), presence: "present" })).toMatchObject({
        changes: true,
        replaces: ["target"],
      });
      expect(dialed).toEqual([]);
    },
  );

  test("update records the presence over the last deploy's outputs without SSH; create records the host without a plan and without SSH", async () => {
    expect(await hostSettingsProvider.update!("id", deployed, news("stopped"))).toEqual({ outs: { ...deployed, presence: "stopped", onGone: undefined } });
    expect(dialed).toEqual([]);
    const created = await hostSettingsProvider.create(news("gone"));
    expect(created.id).toBe("web-i-02:not-deployed");
    expect(created.outs.plan).toBeUndefined();
    // Its later delete has nothing to give back and connects to nothing.
    await hostSettingsProvider.delete!(created.id, created.outs);
    expect(dialed).toEqual([]);
  });
});
