/**
 * EC2 instances as SSH targets of `BacklogFleet`: found by tag, each with its own pinned host key.
 *
 * The host key cannot be learned from AWS's API by this library: an EC2 instance's SSH host key is
 * generated on the instance at first boot. Three ways to supply it (see README, section AWS):
 * - a map instance id → key line, e.g. from the instance's console output, where cloud-init prints
 *   its keys between `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----`
 *   (`aws ec2 get-console-output --instance-id i-… --latest --output text`; parse it with
 *   {@link hostKeysFromConsoleOutput});
 * - an SSM parameter per instance, `<prefix><instance-id>` (default prefix
 *   `/pulumi-backlog/host-keys/`), written by you, or by the instance at boot if its IAM role may
 *   `ssm:PutParameter` on that path (user data alone cannot: it needs credentials);
 * - a function of your own.
 * A running instance without a key fails the program before any host is touched, naming the instance.
 *
 * Instances that are not running are hosts too, so that the stack follows the fleet without SSH to
 * machines that cannot answer (see docs/fleets.md, "Fleets that change"): a stopped, stopping or
 * pending instance is a host with `presence: "stopped"` (kept as last deployed, not touched, a
 * warning naming it); a terminated or shutting-down one is a host with `presence: "gone"`
 * (forgotten without SSH). AWS lists a terminated instance for about an hour; one that vanished
 * from the list before any run saw it terminated falls back to the fleet's `onGone` rule.
 *
 * @packageDocumentation
 */

import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { FleetHost } from "../pulumi/backlogFleet";
import type { SshConnectionArgs } from "../pulumi/backlogHost";
import type { HostPresence } from "../pulumi/hostSettings";
import { type SshConnection, parseHostKey } from "../transport/ssh";

/** Default prefix of the SSM parameters holding host keys: `/pulumi-backlog/host-keys/<instance-id>`. */
export const HOST_KEY_PARAMETER_PREFIX = "/pulumi-backlog/host-keys/";

/** Where each instance's pinned SSH host key comes from. */
export type HostKeySource =
  /** Instance id → public key line (`ssh-ed25519 AAAA…`). */
  | Readonly<Record<string, string>>
  /** One SSM parameter per instance, `<prefix><instance-id>`, holding the key line. */
  | { readonly ssmParameterPrefix: string }
  /** Your own lookup; `undefined` when there is no key. */
  | ((instance: Ec2Instance) => string | undefined | Promise<string | undefined>);

/** An instance as found, before it becomes a host. */
export interface Ec2Instance {
  /** Instance id, `i-…`. */
  readonly instanceId: string;
  /** Private IPv4 address. */
  readonly privateIp: string;
  /** Public IPv4 address, `""` when it has none. */
  readonly publicIp: string;
  /** Subnet id. */
  readonly subnetId: string;
  /** The instance's tags. */
  readonly tags: Readonly<Record<string, string>>;
}

/** Arguments of {@link ec2Hosts}. */
export interface Ec2HostsArgs {
  /** Tags every instance must have (key → exact value). Required, at least one. */
  tags: Record<string, string>;
  /** Only instances in this VPC (filter `vpc-id`). Default: any VPC. */
  vpcId?: string;
  /** Only instances in these subnets (filter `subnet-id`). Default: any subnet. */
  subnetIds?: string[];
  /**
   * Which address to connect to: `"private"` (from inside the VPC, or through {@link proxy}) or
   * `"public"` (an instance without a public IPv4 address then fails, named).
   */
  addressKind: "private" | "public";
  /** Login user: `admin` on Debian AMIs, `ec2-user` on Amazon Linux, `ubuntu` on Ubuntu. Scripts run through `sudo -n`. */
  user: string;
  /** Private key of that user (the key pair's). Pass a Pulumi secret. */
  privateKey: pulumi.Input<string>;
  /** Passphrase of the private key, if any. Pass a Pulumi secret. */
  passphrase?: pulumi.Input<string>;
  /** Where each instance's host key comes from; see {@link HostKeySource}. Required: keys stay pinned. */
  hostKeys: HostKeySource;
  /** A bastion to hop through (its own pinned host key), typically with private addresses. */
  proxy?: pulumi.Input<SshConnectionArgs["proxy"]>;
  /** SSH port. Default 22. */
  port?: number;
  /** Host names are the instance ids (unique, stable); set this to use a tag instead, e.g. `"Name"` (must then be unique and valid). */
  nameTag?: string;
  /** Region to search. Default: the provider's. */
  region?: string;
  /** Options of the lookups (provider, …). */
  invokeOptions?: pulumi.InvokeOptions;
  /** Return an empty list when no instance (in any state) has the tags, instead of failing. Default false. */
  allowEmpty?: boolean;
}

/** A host found on EC2: a `FleetHost` with where it came from. */
export interface Ec2Host extends FleetHost {
  /** Instance id. */
  instanceId: string;
  /** The address connected to; for a stopped or gone instance the one it had, `""` when none is known (none is needed). */
  address: string;
  /** The instance's EC2 state when it was listed: `running`, `pending`, `stopping`, `stopped`, `shutting-down` or `terminated`. */
  state: string;
  /** `"present"` for a running instance, `"stopped"` for pending/stopping/stopped, `"gone"` for shutting-down/terminated. */
  presence: HostPresence;
}

/** EC2 instance states by what they mean for a host (see {@link ec2Presence}). */
export const EC2_STATES: Readonly<Record<HostPresence, readonly string[]>> = Object.freeze({
  present: ["running"],
  stopped: ["pending", "stopping", "stopped"],
  gone: ["shutting-down", "terminated"],
});

/**
 * What an EC2 instance state means for its host: `running` → `"present"` (deployed);
 * `pending`, `stopping`, `stopped` → `"stopped"` (cannot answer now, may run again: kept, not
 * touched); `shutting-down`, `terminated` → `"gone"` (will never answer again: forgotten without SSH).
 * @throws Error for any other state, naming it.
 */
export function ec2Presence(state: string): HostPresence {
  for (const [presence, states] of Object.entries(EC2_STATES) as [HostPresence, readonly string[]][]) {
    if (states.includes(state)) return presence;
  }
  throw new Error(`ec2Hosts: unknown EC2 instance state ${JSON.stringify(state)}: expected one of ${Object.values(EC2_STATES).flat().join(", ")}`);
}

/**
 * The SSH host keys in an EC2 console output: the lines between `-----BEGIN SSH HOST KEY KEYS-----`
 * and `-----END SSH HOST KEY KEYS-----` that cloud-init prints at first boot (module
 * `keys_to_console`), each `type base64 [comment]`, without their comments. Empty when the block is
 * missing (the output is not there yet, or the image's cloud-init prints no keys).
 */
export function hostKeysFromConsoleOutput(consoleOutput: string): string[] {
  const text = consoleOutput.replace(/\r/g, "");
  const begin = text.lastIndexOf("-----BEGIN SSH HOST KEY KEYS-----");
  if (begin < 0) return [];
  const end = text.indexOf("-----END SSH HOST KEY KEYS-----", begin);
  if (end < 0) return [];
  return (
    text
      .slice(begin, end)
      .split("\n")
      .slice(1)
      // Console lines may carry a prefix such as "[   12.3] cloud-init[612]: " or "ec2: ".
      .map((line) => /((?:ssh-|ecdsa-|sk-)[a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?:\s|$)/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => `${m[1]} ${m[2]}`)
  );
}

/** The preferred key of several (ed25519, then ECDSA, then RSA), or `undefined`. */
export function preferredHostKey(keys: readonly string[]): string | undefined {
  for (const type of ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]) {
    const found = keys.find((k) => k.startsWith(type + " "));
    if (found) return found;
  }
  return keys[0];
}

function describe(i: Ec2Instance): string {
  const name = i.tags.Name;
  return `${i.instanceId} (${i.privateIp || "no private ip"}${name ? `, Name=${name}` : ""})`;
}

async function lookupKey(source: HostKeySource, instance: Ec2Instance, args: Ec2HostsArgs): Promise<string | undefined> {
  if (typeof source === "function") return source(instance);
  if ("ssmParameterPrefix" in source && typeof source.ssmParameterPrefix === "string") {
    const parameter = `${source.ssmParameterPrefix}${instance.instanceId}`;
    try {
      const p = await aws.ssm.getParameter({ name: parameter, withDecryption: true, region: args.region }, args.invokeOptions);
      return p.insecureValue || p.value;
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      if (/ParameterNotFound|not found/i.test(message)) return undefined;
      throw new Error(`ec2Hosts: reading SSM parameter ${parameter} for instance ${describe(instance)} failed: ${message}`);
    }
  }
  return (source as Readonly<Record<string, string>>)[instance.instanceId];
}

/**
 * Finds the EC2 instances that have every tag in `args.tags` (and are in `vpcId` / `subnetIds`
 * when given) and returns them as `BacklogFleet` hosts, sorted by instance id, each named by its
 * instance id. A running one connects to its private or public address with its own pinned host
 * key. One that is not running is returned with its {@link Ec2Host.presence} (`"stopped"` or
 * `"gone"`, see {@link ec2Presence}) and a warning naming the instance and the host; it needs no
 * key and no address, and no SSH connection is made to it. Await it before building the fleet:
 *
 * ```ts
 * export = async () => {
 *   const hosts = await ec2Hosts({ tags: { Role: "web" }, addressKind: "private", user: "admin",
 *     privateKey: cfg.requireSecret("sshKey"), hostKeys: { ssmParameterPrefix: "/pulumi-backlog/host-keys/" } });
 *   return { verification: new BacklogFleet("web", { profile, hosts }).verification };
 * };
 * ```
 *
 * Instances are read once per `pulumi up`/`preview`: one started later joins on the next run.
 * The lookup uses `aws.ec2.getInstances` six times, once per state of {@link EC2_STATES} (ids
 * only: its address lists skip instances without an address, so they do not line up with the
 * ids), then `aws.ec2.getInstance` per running or stopped id (and per gone id
 * only with `nameTag`, to read its name).
 *
 * @throws Error naming every instance without a host key, with an invalid one, or without the
 *   address asked for; or when no instance matches in any state (unless `allowEmpty`).
 */
export async function ec2Hosts(args: Ec2HostsArgs): Promise<Ec2Host[]> {
  const tagEntries = Object.entries(args.tags ?? {});
  if (tagEntries.length === 0) throw new Error("ec2Hosts: tags must name at least one tag: the fleet is the instances that have them");
  if (args.addressKind !== "private" && args.addressKind !== "public") {
    throw new Error(`ec2Hosts: addressKind must be "private" or "public", not ${JSON.stringify(args.addressKind)}`);
  }
  if (typeof args.user !== "string" || args.user === "")
    throw new Error("ec2Hosts: user is required (admin on Debian, ec2-user on Amazon Linux, ubuntu on Ubuntu)");
  if (args.hostKeys === undefined || args.hostKeys === null) {
    throw new Error("ec2Hosts: hostKeys is required: host keys stay pinned (a map of instance id to key line, { ssmParameterPrefix }, or a function)");
  }
  const filters = [
    ...(args.vpcId ? [{ name: "vpc-id", values: [args.vpcId] }] : []),
    ...(args.subnetIds && args.subnetIds.length > 0 ? [{ name: "subnet-id", values: [...args.subnetIds] }] : []),
  ];
  // One listing per state: the data source says which ids match, not in which state.
  const stateOf = new Map<string, { state: string; presence: HostPresence }>();
  const listings = (Object.entries(EC2_STATES) as [HostPresence, readonly string[]][]).flatMap(([presence, states]) =>
    states.map((state) => ({ presence, state })),
  );
  const found = await Promise.all(
    listings.map(({ state }) =>
      aws.ec2.getInstances(
        {
          instanceTags: Object.fromEntries(tagEntries),
          instanceStateNames: [state],
          ...(filters.length > 0 ? { filters } : {}),
          ...(args.region ? { region: args.region } : {}),
        },
        args.invokeOptions,
      ),
    ),
  );
  // An instance that changed state between two listings is taken in its first (most present) one.
  listings.forEach(({ presence, state }, k) => {
    for (const id of found[k]!.ids) if (!stateOf.has(id)) stateOf.set(id, { state, presence });
  });
  const ids = [...stateOf.keys()].sort();
  const where =
    tagEntries.map(([k, v]) => `${k}=${v}`).join(", ") +
    (args.vpcId ? ` in ${args.vpcId}` : "") +
    (args.subnetIds?.length ? ` in subnets ${args.subnetIds.join(", ")}` : "");
  if (ids.length === 0) {
    if (args.allowEmpty) return [];
    throw new Error(`ec2Hosts: no instance has ${where} (in any state); check the tags and the region, or set allowEmpty`);
  }
  const unnamed = (id: string): Ec2Instance => ({ instanceId: id, privateIp: "", publicIp: "", subnetId: "", tags: {} });
  const instances: (Ec2Instance & { state: string; presence: HostPresence })[] = await Promise.all(
    ids.map(async (id) => {
      const { presence } = stateOf.get(id)!;
      const base = { ...unnamed(id), ...stateOf.get(id)! };
      // A gone instance needs nothing more, but its name when names come from a tag.
      if (presence === "gone" && args.nameTag === undefined) return base;
      try {
        const i = await aws.ec2.getInstance({ instanceId: id, ...(args.region ? { region: args.region } : {}) }, args.invokeOptions);
        return { ...base, privateIp: i.privateIp ?? "", publicIp: i.publicIp ?? "", subnetId: i.subnetId ?? "", tags: i.tags ?? {} };
      } catch (err) {
        if (presence === "present") throw err;
        // Not running: the instance may be gone from the API by now; what is known is enough.
        return base;
      }
    }),
  );

  const problems: string[] = [];
  const hosts: Ec2Host[] = [];
  const names = new Set<string>();
  // Running instances first: they take their names before a stopped or gone one with the same name.
  for (const instance of [...instances.filter((i) => i.presence === "present"), ...instances.filter((i) => i.presence !== "present")]) {
    if (instance.presence !== "present") {
      const name = args.nameTag === undefined ? instance.instanceId : (instance.tags[args.nameTag] ?? "");
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name) || names.has(name)) {
        pulumi.log.warn(
          `ec2Hosts: instance ${describe(instance)} is ${instance.state}: left out, its tag ${args.nameTag} ${JSON.stringify(name)} ` +
            `is missing, invalid or taken by a running instance; a host of that name in the stack follows the fleet's onGone rule`,
        );
        continue;
      }
      names.add(name);
      pulumi.log.warn(
        instance.presence === "stopped"
          ? `ec2Hosts: instance ${describe(instance)} is ${instance.state}: host ${name} is not probed and not changed (no SSH); the stack keeps its last deploy until it runs again`
          : `ec2Hosts: instance ${describe(instance)} is ${instance.state}: host ${name} is forgotten without SSH (what the deployment changed stays on its disk)`,
      );
      const address = (args.addressKind === "public" ? instance.publicIp : instance.privateIp) || "";
      // No SSH goes to it: no host key is looked up; the connection only names where it was.
      const connection: pulumi.Input<SshConnectionArgs> = {
        host: address || instance.instanceId,
        port: args.port ?? 22,
        user: args.user,
        privateKey: pulumi.secret(args.privateKey),
      } as pulumi.Input<SshConnectionArgs>;
      hosts.push({ name, connection, instanceId: instance.instanceId, address, state: instance.state, presence: instance.presence });
      continue;
    }
    const address = args.addressKind === "public" ? instance.publicIp : instance.privateIp;
    if (!address) {
      problems.push(
        `${describe(instance)}: has no ${args.addressKind} IPv4 address${args.addressKind === "public" ? ' (use addressKind "private" with a proxy)' : ""}`,
      );
      continue;
    }
    let name = instance.instanceId;
    if (args.nameTag !== undefined) {
      name = instance.tags[args.nameTag] ?? "";
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name) || names.has(name)) {
        problems.push(`${describe(instance)}: tag ${args.nameTag} ${JSON.stringify(name)} is missing, not a valid host name or not unique`);
        continue;
      }
    }
    const key = await lookupKey(args.hostKeys, instance, args);
    if (key === undefined || key.trim() === "") {
      const how =
        typeof args.hostKeys === "function"
          ? "your hostKeys function returned none"
          : "ssmParameterPrefix" in args.hostKeys
            ? `SSM parameter ${(args.hostKeys as { ssmParameterPrefix: string }).ssmParameterPrefix}${instance.instanceId} does not exist`
            : "it is not in the hostKeys map";
      problems.push(
        `${describe(instance)}: no pinned SSH host key (${how}); read it from the instance's console output ` +
          `(aws ec2 get-console-output --instance-id ${instance.instanceId} --latest --output text: the "BEGIN SSH HOST KEY KEYS" block)`,
      );
      continue;
    }
    try {
      parseHostKey(key);
    } catch (err) {
      problems.push(`${describe(instance)}: ${(err as Error).message}`);
      continue;
    }
    names.add(name);
    const connection: pulumi.Input<SshConnectionArgs> = {
      host: address,
      port: args.port ?? 22,
      user: args.user,
      privateKey: pulumi.secret(args.privateKey),
      ...(args.passphrase !== undefined ? { passphrase: pulumi.secret(args.passphrase) } : {}),
      hostKey: key.trim(),
      ...(args.proxy !== undefined ? { proxy: args.proxy as pulumi.Input<SshConnection["proxy"]> } : {}),
    } as pulumi.Input<SshConnectionArgs>;
    hosts.push({ name, connection, instanceId: instance.instanceId, address, state: instance.state, presence: "present" });
  }
  if (problems.length > 0) {
    throw new Error(
      `ec2Hosts: ${problems.length} of ${instances.length} instance(s) with ${where} cannot be used; nothing was touched:\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
  }
  return hosts.sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0));
}
