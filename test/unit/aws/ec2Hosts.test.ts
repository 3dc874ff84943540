/**
 * ec2Hosts with Pulumi mocks (no AWS): the lookups it makes, the hosts it returns for BacklogFleet,
 * and its refusals, which name the instance.
 */
import * as pulumi from "@pulumi/pulumi";

interface Instance {
  id: string;
  privateIp: string;
  publicIp: string;
  subnetId: string;
  tags: Record<string, string>;
  state?: string;
}
let instances: Instance[] = [];
let parameters: Record<string, string> = {};
const calls: { token: string; inputs: Record<string, any> }[] = [];

const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICan5M/wnTTGsRF17UI09YCdJg/4N6XN/wKpk3/8YNBq";
const KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4Gg4rD+B/RoFavrJXOmlAiMKiC5EyU7hiPf8omSLLJ";

pulumi.runtime.setMocks(
  {
    newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
    call: (args) => {
      calls.push({ token: args.token, inputs: args.inputs });
      if (args.token === "aws:ec2/getInstances:getInstances") {
        const want = args.inputs.instanceTags as Record<string, string>;
        const states = args.inputs.instanceStateNames as string[];
        const ids = instances.filter((i) => states.includes(i.state ?? "running") && Object.entries(want).every(([k, v]) => i.tags[k] === v)).map((i) => i.id);
        // Like the real data source: address lists skip instances without an address.
        return { ids, privateIps: instances.map((i) => i.privateIp), publicIps: instances.map((i) => i.publicIp).filter(Boolean), id: "us-east-1" };
      }
      if (args.token === "aws:ec2/getInstance:getInstance") {
        const i = instances.find((x) => x.id === args.inputs.instanceId)!;
        // Like the provider's data source, which leaves terminated instances out.
        if (i.state === "terminated") throw Object.assign(new Error("invoke failed"), { details: "reading EC2 Instance: no matching EC2 Instance found" });
        return { id: i.id, privateIp: i.privateIp, publicIp: i.publicIp, subnetId: i.subnetId, tags: i.tags, instanceState: i.state ?? "running" };
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
  },
  "backlog",
  "unit",
  false,
);

import { ec2Hosts, ec2Presence, hostKeysFromConsoleOutput, preferredHostKey } from "../../../src/aws/ec2Hosts";
import type { BacklogFleet } from "../../../src/pulumi/backlogFleet";

function value<T>(o: pulumi.Input<T>): Promise<T> {
  return new Promise((resolve) =>
    pulumi.output(o).apply((v) => {
      resolve(v as T);
      return v;
    }),
  );
}

const base = {
  addressKind: "private" as const,
  user: "admin",
  privateKey: pulumi.secret("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n"),
};

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
  const hosts = await ec2Hosts({
    ...base,
    tags: { Role: "web" },
    vpcId: "vpc-1",
    subnetIds: ["subnet-1", "subnet-2"],
    hostKeys: { "i-0aaa": KEY_A, "i-0bbb": KEY_B },
  });
  const lists = calls.filter((c) => c.token === "aws:ec2/getInstances:getInstances");
  // One listing per instance state: the data source does not say which state an id is in.
  expect(lists.map((c) => c.inputs.instanceStateNames)).toEqual([["running"], ["pending"], ["stopping"], ["stopped"], ["shutting-down"], ["terminated"]]);
  const list = lists[0]!;
  expect(list.inputs.instanceTags).toEqual({ Role: "web" });
  expect(list.inputs.filters).toEqual([
    { name: "vpc-id", values: ["vpc-1"] },
    { name: "subnet-id", values: ["subnet-1", "subnet-2"] },
  ]);
  expect(
    calls
      .filter((c) => c.token === "aws:ec2/getInstance:getInstance")
      .map((c) => c.inputs.instanceId)
      .sort(),
  ).toEqual(["i-0aaa", "i-0bbb"]);
  expect(hosts.map((h) => [h.name, h.instanceId, h.address, h.state, h.presence])).toEqual([
    ["i-0aaa", "i-0aaa", "10.0.1.11", "running", "present"],
    ["i-0bbb", "i-0bbb", "10.0.1.12", "running", "present"],
  ]);
  const conn = (await value(hosts[0]!.connection)) as Record<string, unknown>;
  expect(conn).toMatchObject({ host: "10.0.1.11", port: 22, user: "admin", hostKey: KEY_A });
  expect(pulumi.Output.isInstance(hosts[0]!.connection) || pulumi.Output.isInstance((hosts[0]!.connection as { privateKey: unknown }).privateKey)).toBe(true);
  expect(await pulumi.isSecret(pulumi.output((hosts[0]!.connection as { privateKey: pulumi.Input<string> }).privateKey))).toBe(true);
});

test("public addresses: the instance without one is named in the error", async () => {
  await expect(ec2Hosts({ ...base, addressKind: "public", tags: { Role: "web" }, hostKeys: { "i-0aaa": KEY_A, "i-0bbb": KEY_B } })).rejects.toThrow(
    /i-0bbb \(10\.0\.1\.12, Name=web-2\): has no public IPv4 address/,
  );
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
  await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { "i-0aaa": KEY_A, "i-0bbb": "ssh-ed25519 not-base64!" } })).rejects.toThrow(
    /i-0bbb .*is not an OpenSSH public key line/,
  );
});

test("host keys from SSM parameters /pulumi-backlog/host-keys/<instance-id>", async () => {
  parameters = { "/pulumi-backlog/host-keys/i-0aaa": KEY_A, "/pulumi-backlog/host-keys/i-0bbb": KEY_B };
  const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { ssmParameterPrefix: "/pulumi-backlog/host-keys/" } });
  expect(
    calls
      .filter((c) => c.token === "aws:ssm/getParameter:getParameter")
      .map((c) => c.inputs.name)
      .sort(),
  ).toEqual(["/pulumi-backlog/host-keys/i-0aaa", "/pulumi-backlog/host-keys/i-0bbb"]);
  expect(await Promise.all(hosts.map(async (h) => ((await value(h.connection)) as { hostKey: string }).hostKey))).toEqual([KEY_A, KEY_B]);
  delete parameters["/pulumi-backlog/host-keys/i-0bbb"];
  await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { ssmParameterPrefix: "/pulumi-backlog/host-keys/" } })).rejects.toThrow(
    /i-0bbb .*SSM parameter \/pulumi-backlog\/host-keys\/i-0bbb does not exist/,
  );
  // Any other failure is not taken for a missing key.
  parameters["/pulumi-backlog/host-keys/i-0bbb"] = "denied";
  await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { ssmParameterPrefix: "/pulumi-backlog/host-keys/" } })).rejects.toThrow(
    /reading SSM parameter \/pulumi-backlog\/host-keys\/i-0bbb for instance i-0bbb .*AccessDenied/,
  );
});

test("host keys from a function; names from a tag; a bastion passes through", async () => {
  const proxy = { host: "198.51.100.1", user: "jump", privateKey: "k", hostKey: KEY_B };
  const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, nameTag: "Name", proxy, hostKeys: (i) => (i.tags.Name === "web-1" ? KEY_A : KEY_B) });
  expect(hosts.map((h) => h.name)).toEqual(["web-1", "web-2"]);
  const conn = (await value(hosts[1]!.connection)) as Record<string, unknown>;
  expect(conn).toMatchObject({ host: "10.0.1.12", hostKey: KEY_B, proxy });
});

test("no match fails (or is empty with allowEmpty); bad arguments are refused", async () => {
  await expect(ec2Hosts({ ...base, tags: { Role: "cache" }, hostKeys: {} })).rejects.toThrow(/no instance has Role=cache \(in any state\)/);
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

describe("instances that are not running (issue #19)", () => {
  let warnings: string[];
  beforeEach(() => {
    warnings = [];
    jest.spyOn(pulumi.log, "warn").mockImplementation(async (m: string) => {
      warnings.push(m);
    });
    instances.push(
      { id: "i-0ddd", privateIp: "10.0.1.14", publicIp: "", subnetId: "subnet-1", tags: { Role: "web", Name: "web-4" }, state: "stopped" },
      { id: "i-0eee", privateIp: "", publicIp: "", subnetId: "", tags: { Role: "web", Name: "web-5" }, state: "terminated" },
      { id: "i-0fff", privateIp: "10.0.1.16", publicIp: "", subnetId: "subnet-1", tags: { Role: "web", Name: "web-6" }, state: "shutting-down" },
      { id: "i-0ggg", privateIp: "10.0.1.17", publicIp: "", subnetId: "subnet-1", tags: { Role: "web", Name: "web-7" }, state: "stopping" },
    );
  });
  afterEach(() => jest.restoreAllMocks());

  test("terminated and shutting-down: hosts with presence gone, no key, no instance lookup for them, a warning naming instance and host", async () => {
    const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: { "i-0aaa": KEY_A, "i-0bbb": KEY_B } });
    expect(hosts.map((h) => [h.name, h.state, h.presence])).toEqual([
      ["i-0aaa", "running", "present"],
      ["i-0bbb", "running", "present"],
      ["i-0ddd", "stopped", "stopped"],
      ["i-0eee", "terminated", "gone"],
      ["i-0fff", "shutting-down", "gone"],
      ["i-0ggg", "stopping", "stopped"],
    ]);
    const looked = calls
      .filter((c) => c.token === "aws:ec2/getInstance:getInstance")
      .map((c) => c.inputs.instanceId)
      .sort();
    expect(looked).toEqual(["i-0aaa", "i-0bbb", "i-0ddd", "i-0ggg"]);
    expect(warnings).toContain(
      "ec2Hosts: instance i-0eee (no private ip) is terminated: host i-0eee is forgotten without SSH (what the deployment changed stays on its disk)",
    );
    expect(warnings.find((w) => w.startsWith("ec2Hosts: instance i-0fff"))).toMatch(/is shutting-down: host i-0fff is forgotten without SSH/);
    const gone = (await value(hosts[3]!.connection)) as Record<string, unknown>;
    expect(gone).toMatchObject({ host: "i-0eee", user: "admin" });
    expect(gone.hostKey).toBeUndefined();
  });

  test("stopped and stopping: hosts with presence stopped, reported by instance id and host, not forgotten; no host key needed", async () => {
    // No key for i-0ddd or i-0ggg: a stopped instance is not connected to, so that is no error.
    const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, nameTag: "Name", hostKeys: { "i-0aaa": KEY_A, "i-0bbb": KEY_B } });
    const stopped = hosts.filter((h) => h.presence === "stopped");
    expect(stopped.map((h) => [h.name, h.instanceId, h.state, h.address])).toEqual([
      ["web-4", "i-0ddd", "stopped", "10.0.1.14"],
      ["web-7", "i-0ggg", "stopping", "10.0.1.17"],
    ]);
    expect(warnings).toContain(
      "ec2Hosts: instance i-0ddd (10.0.1.14, Name=web-4) is stopped: host web-4 is not probed and not changed (no SSH); the stack keeps its last deploy until it runs again",
    );
    // With nameTag, a terminated instance is looked up for its name; the API may no longer return it:
    // then it cannot be named, is left out with a warning, and its host follows the onGone rule.
    expect(hosts.map((h) => h.name)).not.toContain("web-5");
    expect(warnings.find((w) => w.startsWith("ec2Hosts: instance i-0eee"))).toMatch(
      /is terminated: left out, its tag Name "" is missing, invalid or taken by a running instance; .*onGone rule/,
    );
    expect(hosts.find((h) => h.name === "web-6")?.presence).toBe("gone");
  });

  test("a replacement under the same Name tag: the running instance takes the name, the terminated one is left out", async () => {
    instances = [
      { id: "i-0new", privateIp: "10.0.1.21", publicIp: "", subnetId: "subnet-1", tags: { Role: "web", Name: "web-1" } },
      { id: "i-0old", privateIp: "10.0.1.11", publicIp: "", subnetId: "subnet-1", tags: { Role: "web", Name: "web-1" }, state: "shutting-down" },
    ];
    const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, nameTag: "Name", hostKeys: { "i-0new": KEY_A } });
    expect(hosts.map((h) => [h.name, h.instanceId, h.presence])).toEqual([["web-1", "i-0new", "present"]]);
    expect(warnings.find((w) => w.startsWith("ec2Hosts: instance i-0old"))).toMatch(
      /is shutting-down: left out, its tag Name "web-1" is missing, invalid or taken by a running instance/,
    );
  });

  test("only stopped or terminated instances: no error (they are hosts); none in any state: the error", async () => {
    instances = instances.filter((i) => i.state !== undefined);
    const hosts = await ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: {} });
    expect(hosts.map((h) => h.presence)).toEqual(["stopped", "gone", "gone", "stopped"]);
    instances = [];
    await expect(ec2Hosts({ ...base, tags: { Role: "web" }, hostKeys: {} })).rejects.toThrow(/no instance has Role=web \(in any state\)/);
  });

  test("every EC2 state maps to a presence; an unknown one is refused by name", () => {
    expect(["running", "pending", "stopping", "stopped", "shutting-down", "terminated"].map(ec2Presence)).toEqual([
      "present",
      "stopped",
      "stopped",
      "stopped",
      "gone",
      "gone",
    ]);
    expect(() => ec2Presence("hibernated")).toThrow(/unknown EC2 instance state "hibernated": expected one of running, pending/);
  });
});
