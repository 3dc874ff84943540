/**
 * Drives the pack's policies the way the engine and @pulumi/policy do, without either: each
 * resource policy gets every resource with its inputs (resource phase), then each stack policy
 * gets every resource with its outputs (stack phase), all in one pack instance. `notApplicable`
 * throws, like the SDK's. Config is what `--policy-pack-config` would give (per policy).
 */
import { defineProfile, type BacklogProfile, type ProfileInput } from "../../../src/core/profile";
import { DEBIAN_12_PATHS, type HostPaths } from "../../../src/core/render";
import { DEBIAN_12_SERVICES } from "../../../src/core/converge";
import { type InputLog, createPolicies } from "../../../policy/policies";
import type { BacklogPolicy, ResourceArgs, ResourcePolicy, StackPolicy, StackResource } from "../../../policy/types";

/** A syntactically valid ed25519 host key line (type, then a blob that starts with its own type). */
export function hostKey(seed = 1): string {
  const type = Buffer.from("ssh-ed25519");
  const len = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const blob = Buffer.concat([len(type.length), type, len(32), Buffer.alloc(32, seed)]);
  return `ssh-ed25519 ${blob.toString("base64")}`;
}

/** The connection view BacklogHost records (no key material). */
export interface ConnectionView {
  host: string;
  port: number;
  user: string;
  hostKey: string | null;
  insecureIgnoreHostKey: boolean;
  sudo?: boolean;
  proxy: Omit<ConnectionView, "proxy" | "sudo"> | null;
}

export function connection(over: Partial<ConnectionView> = {}): ConnectionView {
  return { host: "127.0.0.1", port: 2201, user: "root", hostKey: hostKey(), insecureIgnoreHostKey: false, sudo: false, proxy: null, ...over };
}

/** A profile as a component records it (defineProfile's result, as plain data). */
export function profile(input: ProfileInput): BacklogProfile {
  return JSON.parse(JSON.stringify(defineProfile(input))) as BacklogProfile;
}

/** Web profile: one unix-socket pool behind one nginx listener, all at `backlog`. */
export function web(name: string, backlog: number, extra: Partial<ProfileInput> = {}): ProfileInput {
  return {
    name,
    backlog,
    pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
    listeners: [{ listen: 8080, pool: "www" }],
    ...extra,
  };
}

/** A profile's kernel values, writable (to build profiles defineProfile would refuse). */
export function sysctls(p: BacklogProfile): Record<string, number> {
  return p.sysctls as unknown as Record<string, number>;
}

/** Inputs of a BacklogHost, as recorded in state. */
export function hostInputs(p: BacklogProfile, conn: ConnectionView = connection(), paths: Partial<HostPaths> = {}) {
  return { profile: p, paths: { ...DEBIAN_12_PATHS, ...paths }, services: DEBIAN_12_SERVICES, connection: conn };
}

/** One resource of a simulated stack. */
export interface FakeResource {
  type: string;
  name: string;
  /** Name of the parent resource in the same stack, if any. */
  parent?: string;
  /** What the resource phase sees. */
  inputs: Record<string, unknown>;
  /** What the stack phase sees. Default: a component's registered outputs, which hold no inputs. */
  outputs?: Record<string, unknown>;
}

export const HOST = "backlog:index:BacklogHost";
export const FLEET = "backlog:index:BacklogFleet";

const urnOf = (r: FakeResource) => `urn:pulumi:test::pulumi-backlog::${r.type}::${r.name}`;

export class NotApplicable extends Error {}

/** Fake ResourceValidationArgs. */
export function resourceArgs(r: FakeResource, config: object = {}): ResourceArgs {
  return {
    type: r.type,
    name: r.name,
    urn: urnOf(r),
    props: r.inputs,
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  };
}

/** One reported violation. */
export interface Violation {
  policy: string;
  message: string;
  urn?: string;
}

function isResourcePolicy(p: BacklogPolicy): p is ResourcePolicy {
  return "validateResource" in p;
}

/** Runs one resource policy on one resource: its violations, or "n/a: reason". */
export function checkResource(policy: BacklogPolicy, r: FakeResource, config: object = {}): string[] | { notApplicable: string } {
  if (!isResourcePolicy(policy)) throw new Error(`${policy.name} is not a resource policy`);
  const out: string[] = [];
  try {
    policy.validateResource(resourceArgs(r, config), (message) => out.push(message));
  } catch (err) {
    if (err instanceof NotApplicable) return { notApplicable: err.message };
    throw err;
  }
  return out;
}

/**
 * A whole preview: resource phase (every resource policy on every resource), then the stack
 * phase, with one pack instance. `config` is keyed by policy name. `skipResourcePhase` simulates a
 * pack whose resource policies are all disabled.
 */
export function preview(
  resources: FakeResource[],
  options: { config?: Record<string, object>; skipResourcePhase?: boolean; log?: InputLog } = {},
): Violation[] {
  const policies = createPolicies(options.log);
  const config = (name: string) => options.config?.[name] ?? {};
  const violations: Violation[] = [];
  if (!options.skipResourcePhase) {
    for (const r of resources) {
      for (const p of policies.filter(isResourcePolicy)) {
        try {
          p.validateResource(resourceArgs(r, config(p.name)), (message, urn) => violations.push({ policy: p.name, message, urn: urn ?? urnOf(r) }));
        } catch (err) {
          if (!(err instanceof NotApplicable)) throw err;
        }
      }
    }
  }
  const byName = new Map<string, StackResource>();
  const stackResources: StackResource[] = resources.map((r) => {
    const s: StackResource = { type: r.type, name: r.name, urn: urnOf(r), props: r.outputs ?? { verification: [], inSync: true } };
    byName.set(r.name, s);
    return s;
  });
  resources.forEach((r, i) => {
    if (r.parent !== undefined) (stackResources[i] as StackResource).parent = byName.get(r.parent);
  });
  for (const p of policies.filter((x): x is StackPolicy => !isResourcePolicy(x))) {
    p.validateStack(
      {
        resources: stackResources,
        getConfig: <T extends object>() => config(p.name) as T,
        notApplicable: (reason?: string): never => {
          throw new NotApplicable(reason);
        },
      },
      (message, urn) => violations.push({ policy: p.name, message, urn }),
    );
  }
  return violations;
}

/** The URN the harness gives a resource. */
export function urn(type: string, name: string): string {
  return urnOf({ type, name, inputs: {} });
}

/** The violations of one policy. */
export function of(violations: Violation[], policy: string): Violation[] {
  return violations.filter((v) => v.policy === policy);
}

/** A policy of the pack by name. */
export function policyNamed(name: string): BacklogPolicy {
  const p = createPolicies().find((x) => x.name === name);
  if (!p) throw new Error(`no policy ${name}`);
  return p;
}
