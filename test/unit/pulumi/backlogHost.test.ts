/**
 * Structure of the components under Pulumi mocks: type tokens, child names and parents, and bad
 * input refused before any resource is registered. (Deployments are tested for real against lab
 * hosts in test/integration/.)
 */
import * as pulumi from "@pulumi/pulumi";
import { BacklogFleet } from "../../../src/pulumi/backlogFleet";
import { BacklogHost } from "../../../src/pulumi/backlogHost";
import { ProfileError } from "../../../src/core/profile";

/** Resources the mocks saw, in registration order. */
const registered: { type: string; name: string }[] = [];
/** The inputs each resource was registered with, by name. */
const inputs: Record<string, Record<string, unknown>> = {};

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        registered.push({ type: args.type, name: args.name });
        inputs[args.name] = args.inputs;
        return { id: `${args.name}-id`, state: args.inputs };
      },
      call: () => ({}),
    },
    "project",
    "stack",
    true,
  ); // preview: no probe runs
});

beforeEach(() => registered.splice(0));

const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4Gg4rD+B/RoFavrJXOmlAiMKiC5EyU7hiPf8omSLLJ";
// Port 1 on loopback: the probe fails at once, so the settings resource is registered with the failure.
const connection = { host: "127.0.0.1", port: 1, dialAttempts: 1, hostKey: key, privateKey: pulumi.secret("not-a-key") };
const profile = { name: "web", backlog: 2048, pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }] };
const settle = () => new Promise((r) => setTimeout(r, 500));

test("BacklogHost is a backlog:index component whose one child is <name>-settings", async () => {
  const host = new BacklogHost("web1", { connection, profile });
  await settle();
  expect(registered).toEqual([
    { type: "backlog:index:BacklogHost", name: "web1" },
    { type: "pulumi-nodejs:dynamic/backlog:HostSettings", name: "web1-settings" },
  ]);
  expect(await new Promise<string>((r) => host.urn.apply(r))).toMatch(/::backlog:index:BacklogHost::web1$/);
});

test("BacklogFleet names its hosts <fleet>-<host> and parents them", async () => {
  const fleet = new BacklogFleet("edge", {
    profile,
    hosts: [
      { name: "a", connection },
      { name: "b", connection },
    ],
  });
  await settle();
  expect(registered.map((r) => r.name).sort()).toEqual(["edge", "edge-a", "edge-a-settings", "edge-b", "edge-b-settings"]);
  expect(await new Promise<string>((r) => fleet.hosts.a.urn.apply(r))).toMatch(/::backlog:index:BacklogFleet\$backlog:index:BacklogHost::edge-a$/);
});

test("a fleet records the profile once: its hosts record their connection, paths and services, a host on its own its profile too", async () => {
  new BacklogFleet("edge", { profile, hosts: [{ name: "a", connection }] });
  new BacklogHost("solo", { connection, profile });
  await settle();
  expect(inputs.edge.profile).toEqual(expect.objectContaining({ name: "web", backlog: 2048, sysctls: expect.any(Object) }));
  expect(Object.keys(inputs["edge-a"]).sort()).toEqual(["connection", "paths", "services"]);
  expect(Object.keys(inputs.solo).sort()).toEqual(["connection", "paths", "profile", "services"]);
  expect(inputs.solo.profile).toEqual(inputs.edge.profile);
});

test.each<[string, () => unknown, RegExp | typeof ProfileError]>([
  ["a profile that breaks a rule", () => new BacklogHost("h", { connection, profile: { ...profile, somaxconn: 1024 } }), ProfileError],
  [
    "a connection without a pinned host key",
    () => new BacklogHost("h", { connection: { ...connection, hostKey: undefined }, profile }),
    /connection\.hostKey is required/,
  ],
  ["a host key that is no key", () => new BacklogHost("h", { connection: { ...connection, hostKey: "AAAA" }, profile }), /not an OpenSSH public key line/],
  [
    "a service name with shell syntax",
    () => new BacklogHost("h", { connection, profile, services: { nginxUnit: "nginx; reboot" } }),
    /services\.nginxUnit "nginx; reboot"/,
  ],
  ["a path option that is not absolute", () => new BacklogHost("h", { connection, profile, paths: { nginxConf: "conf.d/x.conf" } }), ProfileError],
  [
    "two fleet hosts with one name",
    () =>
      new BacklogFleet("f", {
        profile,
        hosts: [
          { name: "a", connection },
          { name: "a", connection },
        ],
      }),
    /hosts\[1\]\.name "a": duplicate host name/,
  ],
])("refuses %s before registering anything", async (_name, make, error) => {
  expect(make).toThrow(error);
  await settle();
  expect(registered).toEqual([]);
});
