/**
 * ec2Hosts with Pulumi mocks (no AWS): the lookups it makes, the hosts it returns for BacklogFleet,
 * and its refusals, which name the instance.
 */
import * as pulumi from "@pulumi/pulumi";

interface Instance { id: string; privateIp: string; publicIp: string; subnetId: string; tags: Record<string, string> }
let instances: Instance[] = [];
let parameters: Record<string, string> = {};
const calls: { token: string; inputs: Record<string, any> }[] = [];

const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICan5M/wnTTGsRF17UI09YCdJg/4N6XN/wKpk3/8YNBq";
const KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4Gg4rD+B/RoFavrJXOmlAiMKiC5EyU7hiPf8omSLLJ";

pulumi.runtime.setMocks({
  newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
  call: (args) => {
    calls.push({ token: args.token, inputs: args.inputs });
    if (args.token === "aws:ec2/getInstances:getInstances") {
      const want = args.inputs.instanceTags as Record<string, string>;
      const ids = instances.filter((i) => Object.entries(want).every(([k, v]) => i.tags[k] === v)).map((i) => i.id);
      // Like the real data source: address lists skip instances without an address.
      return { ids, privateIps: instances.map((i) => i.privateIp), publicIps: instances.map((i) => i.publicIp).filter(Boolean), id: "us-east-1" };
    }
    if (args.token === "aws:ec2/getInstance:getInstance") {
      const i = instances.find((x) => x.id === args.inputs.instanceId)!;
      return { id: i.id, privateIp: i.privateIp, publicIp: i.publicIp, subnetId: i.subnetId, tags: i.tags };
    }
    if (args.token === "aws:ssm/getParameter:getParameter") {
      const v = parameters[args.inputs.name];
      // The SDK turns a failed invoke into new Error(grpcError.details).
      if (v === undefined) throw Object.assign(new Error("invoke failed"), { details: `reading SSM Parameter (${args.inputs.name}): ParameterNotFound: ` });
      if (v === "denied") throw Object.assign(new Error("invoke failed"), { details: "AccessDeniedException: not authorized to perform ssm:GetParameter" });
      return { name: args.inputs.name, value: v, insecureValue: v, type: "String" };
    }
    throw new Error(`unexpected invoke ${args.token}`);
  },
}, "backlog", "unit", false);

import { ec2Hosts, hostKeysFromConsoleOutput, preferredHostKey } from "../../../components/aws";
import { BacklogFleet } from "../../../components/backlogFleet";

function value<T>(o: pulumi.Input<T>): Promise<T> {
  return new Promise((resolve) => pulumi.output(o).apply((v) => { resolve(v as T); return v; }));
}

const base = { addressKind: "private" as const, user: "admin", privateKey: pulumi.secret("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n") };

beforeEach(() => {
  calls.length = 0;
  instances = [
    { id: "i-0bbb", privateIp: "10.0.1.12", publicIp: "", subnetId: "subnet-2", tags: { Role: "web", Name: "web-2" } },
    { id: "i-0aaa", privateIp: "10.0.1.11", publicIp: "203.0.113.11", subnetId: "subnet-1", tags: { Role: "web", Name: "web-1" } },
    { id: "i-0ccc", privateIp: "10.0.1.13", publicIp: "203.0.113.13", subnetId: "subnet-1", tags: { Role: "db", Name: "db-1" } },
  ];
  parameters = {};
});

test("finds running instances by tag (and VPC, subnets) and returns pinned-key hosts sorted by instance id", async () => {
  const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, vpcId: "vpc-1", subnetIds: ["subnet-1", "subnet-2"], hostKeys: { "i-0aaa": KEY_A, "i-0bbb": KEY_B } });
  const list = calls.find((c) => c.token === "aws:ec2/getInstances:getInstances")!;
  expect(list.inputs.instanceTags).toEqual({ Role: "web" });
  expect(list.inputs.instanceStateNames).toEqual(["running"]);
  expect(list.inputs.filters).toEqual([{ name: "vpc-id", values: ["vpc-1"] }, { name: "subnet-id", values: ["subnet-1", "subnet-2"] }]);
  expect(calls.filter((c) => c.token === "aws:ec2/getInstance:getInstance").map((c) => c.inputs.instanceId).sort()).toEqual(["i-0aaa", "i-0bbb"]);
  expect(hosts.map((h) => [h.name, h.instanceId, h.address])).toEqual([["i-0aaa", "i-0aaa", "10.0.1.11"], ["i-0bbb", "i-0bbb", "10.0.1.12"]]);
  const conn = (await value(hosts[0]!.connection)) as Record<string, unknown>;
  expect(conn).toMatchObject({ host: "10.0.1.11", port: 22, user: "admin", hostKey: KEY_A });
  expect(pulumi.Output.isInstance(hosts[0]!.connection) || pulumi.Output.isInstance((hosts[0]!.connection as { privateKey: unknown }).privateKey)).toBe(true);
  expect(await pulumi.isSecret(pulumi.output((hosts[0]!.connection as { privateKey: pulumi.Input<string> }).privateKey))).toBe(true);
});

test("public addresses: the instance without one is named in the error", async () => {
  await expect(ec2Hosts({ ...base, addressKind: "public", tags: { Role: "web" }, hostKeys: { "i-0aaa": KEY_A, "i-0bbb": KEY_B } }))
    .rejects.toThrow(/i-0bbb \(10\.0\.1\.12, Name=web-2\): has no public IPv4 address/);
});

test("a missing host key fails clearly, naming the instance and where to find its key", async () => {
  const error = await ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { "i-0aaa": KEY_A } }).catch((e: Error) => e);
  expect(error).toBeInstanceOf(Error);
  const message = (error as Error).message;
  expect(message).toMatch(/1 of 2 instance\(s\) with Role=web cannot be used; nothing was touched/);
  expect(message).toContain("i-0bbb (10.0.1.12, Name=web-2): no pinned SSH host key (it is not in the hostKeys map)");
  expect(message).toContain("aws ec2 get-console-output --instance-id i-0bbb --latest --output text");
  expect(message).not.toContain("i-0aaa (");
});

test("a malformed host key is refused, naming the instance", async () => {
  await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { "i-0aaa": KEY_A, "i-0bbb": "ssh-ed25519 not-base64!" } }))
    .rejects.toThrow(/i-0bbb .*is not an OpenSSH public key line/);
});

test("host keys from SSM parameters /pulumi-backlog/host-keys/<instance-id>", async () => {
  parameters = { "/pulumi-backlog/host-keys/i-0aaa": KEY_A, "/pulumi-backlog/host-keys/i-0bbb": KEY_B };
  const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { ssmParameterPrefix: "/pulumi-backlog/host-keys/" } });
  expect(calls.filter((c) => c.token === "aws:ssm/getParameter:getParameter").map((c) => c.inputs.name).sort())
    .toEqual(["/pulumi-backlog/host-keys/i-0aaa", "/pulumi-backlog/host-keys/i-0bbb"]);
  expect(await Promise.all(hosts.map(async (h) => ((await value(h.connection)) as { hostKey: string }).hostKey))).toEqual([KEY_A, KEY_B]);
  delete parameters["/pulumi-backlog/host-keys/i-0bbb"];
  await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { ssmParameterPrefix: "/pulumi-backlog/host-keys/" } }))
    .rejects.toThrow(/i-0bbb .*SSM parameter \/pulumi-backlog\/host-keys\/i-0bbb does not exist/);
  // Any other failure is not taken for a missing key.
  parameters["/pulumi-backlog/host-keys/i-0bbb"] = "denied";
  await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { ssmParameterPrefix: "/pulumi-backlog/host-keys/" } }))
    .rejects.toThrow(/reading SSM parameter \/pulumi-backlog\/host-keys\/i-0bbb for instance i-0bbb .*AccessDenied/);
});

test("host keys from a function; names from a tag; a bastion passes through", async () => {
  const proxy = { host: "198.51.100.1", user: "jump", privateKey: "k", hostKey: KEY_B };
  const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, nameTag: "Name", proxy, hostKeys: (i) => (i.tags["Name"] === "web-1" ? KEY_A : KEY_B) });
  expect(hosts.map((h) => h.name)).toEqual(["web-1", "web-2"]);
  const conn = (await value(hosts[1]!.connection)) as Record<string, unknown>;
  expect(conn).toMatchObject({ host: "10.0.1.12", hostKey: KEY_B, proxy });
});

test("no match fails (or is empty with allowEmpty); bad arguments are refused", async () => {
  await expect(ec2Hosts({ ...base, tags: { Role: "cache" }, hostKeys: {} })).rejects.toThrow(/no running instance has Role=cache/);
  await expect(ec2Hosts({ ...base, tags: { Role: "cache" }, hostKeys: {}, allowEmpty: true })).resolves.toEqual([]);
  await expect(ec2Hosts({ ...base, tags: {}, hostKeys: {} })).rejects.toThrow(/at least one tag/);
  await expect(ec2Hosts({ ...base, addressKind: "ipv6" as never, tags: { Role: "web" }, hostKeys: {} })).rejects.toThrow(/addressKind/);
  await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: undefined as never })).rejects.toThrow(/hostKeys is required/);
});

test("the hosts are what BacklogFleet takes", async () => {
  const hosts = await ec2Hosts({ ...base, tags: { Role: "db" }, hostKeys: { "i-0ccc": KEY_A } });
  // Type-level and shape check only: constructing the fleet would probe the host over SSH.
  const fleetHosts: ConstructorParameters<typeof BacklogFleet>[1]["hosts"] = hosts;
  expect(fleetHosts.map((h) => h.name)).toEqual(["i-0ccc"]);
});

describe("host keys from the console output", () => {
  const console = [
    "[   10.1] cloud-init[600]: Cloud-init v. 22.4.2 running 'modules:final'",
    "ec2: ",
    "ec2: #############################################################",
    "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
    "ec2: 256 SHA256:abc root@ip-10-0-1-11 (ECDSA)",
    "ec2: -----END SSH HOST KEY FINGERPRINTS-----",
    "-----BEGIN SSH HOST KEY KEYS-----",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEx= root@ip-10-0-1-11",
    `${KEY_A} root@ip-10-0-1-11`,
    "-----END SSH HOST KEY KEYS-----",
  ].join("\r\n");

  test("reads the keys between the markers, without comments; prefers ed25519", () => {
    const keys = hostKeysFromConsoleOutput(console);
    expect(keys).toEqual(["ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEx=", KEY_A]);
    expect(preferredHostKey(keys)).toBe(KEY_A);
    expect(hostKeysFromConsoleOutput("no keys yet")).toEqual([]);
    expect(preferredHostKey([])).toBeUndefined();
  });
});
