/**
 * The policies of the `pulumi-backlog` policy pack. They apply the library's own rule functions
 * (`rules` of `src/core/profile/rules.ts`, the same objects `defineProfile` runs), so the pack and the
 * library can never disagree about a profile; what the pack adds is what one component cannot see:
 * several components aimed at the same host, thresholds chosen by the organisation, SSH host-key
 * pinning and the load order of the sysctl drop-in.
 *
 * Which resources they look at: every component whose type token starts with `backlog:index:` and
 * whose recorded inputs carry the field a policy needs (`profile`, `connection`, `paths`). That
 * covers `BacklogHost` and `BacklogFleet` today and any later component of the library (the AWS
 * ones: launch template user data, SSM documents) without a change here.
 *
 * One engine fact shapes the stack policies: a stack policy sees each resource's **outputs**, and a
 * component's outputs are what it registers with `registerOutputs`, not its inputs. So the
 * resource policies of this pack record the inputs of every backlog component as the engine hands
 * them over (it analyzes every resource of the program, each with its inputs, before it analyzes
 * the stack, in the same pack process), and the stack policies read them from there. A component
 * that registers `profile`/`connection` as outputs (BacklogHost, BacklogFleet) is read from its
 * outputs directly; a fleet's hosts record no profile: they are checked with their fleet's.
 *
 * This module needs no `@pulumi/policy` at run time (see `types.ts`); `index.ts` serves the
 * policies with it.
 *
 * @packageDocumentation
 */

import { type AppBacklog, type BacklogProfile, type Problem, type Rule, SOMAXCONN, TCP_MAX_SYN_BACKLOG, appBacklogs, rules } from "../src/core/profile";
import { SYSCTL_DROPIN_PATH } from "../src/core/render";
import { parseHostKey } from "../src/transport/ssh";
import type { BacklogPolicy, ReportViolation, ResourceArgs, ResourcePolicy, StackArgs, StackPolicy, StackResource } from "./types";

/** Name of the pack (as `pulumi preview` prints it: `pulumi-backlog@v<version>`). */
export const PACK_NAME = "pulumi-backlog";

/** Policy names, as they appear in reports and in `--policy-pack-config` files. */
export const POLICY = Object.freeze({
  valuesAccepted: "backlog-values-accepted",
  minimums: "backlog-minimums",
  withinSomaxconn: "host-backlogs-within-somaxconn",
  synQueue: "host-syn-queue-covers-tcp",
  hostKey: "ssh-host-key-pinned",
  dropInOrder: "sysctl-dropin-load-order",
});

/**
 * The library rules the two stack policies apply per host (a component's own profile, and every
 * other component aimed at the same host). `backlog-values-accepted` applies all the others.
 */
export const HOST_RULES = Object.freeze({
  withinSomaxconn: "backlog-within-somaxconn",
  synQueue: "syn-backlog-covers-tcp",
});

/** Defaults of the policies' configuration (see the README, "Policy pack"). */
export const CONFIG_DEFAULTS = Object.freeze({
  /**
   * Smallest application backlog (profile `backlog`, php-fpm `listen.backlog`, nginx `backlog=`):
   * 511, the value nginx and php-fpm up to 8.1 use by themselves, so a profile never leaves a
   * program with a shorter accept queue than no profile at all would.
   */
  minBacklog: 511,
  /**
   * Smallest `net.core.somaxconn` a profile may ask for: 1024. It caps every listening socket on
   * the host, not only the profile's (kernel default 4096 since Linux 5.4, 128 before).
   */
  minSomaxconn: 1024,
  /** File name the sysctl drop-in must sort after: Debian's link to /etc/sysctl.conf. */
  sortAfter: "99-sysctl.conf",
});

/** Configuration of {@link POLICY.minimums}. */
export interface MinimumsConfig {
  minBacklog: number;
  minSomaxconn: number;
}

/** Configuration of {@link POLICY.dropInOrder}. */
export interface DropInConfig {
  sortAfter: string;
}

/** The directory the sysctl drop-in must be in: the only one an administrator's files go to. */
export const SYSCTL_DROPIN_DIR = "/etc/sysctl.d";

const COMPONENT_PREFIX = "backlog:index:";

/** `true` for a component of this library (type token `backlog:index:<Name>`). */
export function isBacklogComponent(type: string): boolean {
  return type.startsWith(COMPONENT_PREFIX);
}

// ---------------------------------------------------------------------------------------
// Reading what the engine hands over

type Props = Record<string, any>;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A plain copy of a value the engine handed over. Props arrive wrapped in @pulumi/policy's
 * unknown-checking proxy: reading a value that is unknown during preview throws, and the SDK then
 * reports the policy as "can't run during preview" (advisory) instead of guessing.
 */
function plain(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** Why `value` is not a derived profile the library's rules can read, or `undefined` when it is. */
function profileShapeProblem(value: unknown): string | undefined {
  if (!isRecord(value)) return "it is not an object";
  const missing: string[] = [];
  if (!isRecord(value.sysctls)) missing.push("sysctls");
  if (!isRecord(value.sources)) missing.push("sources");
  if (!Array.isArray(value.pools)) missing.push("pools[]");
  if (!Array.isArray(value.listeners)) missing.push("listeners[]");
  return missing.length > 0 ? `it has no ${missing.join(", ")}: it is not what defineProfile returns` : undefined;
}

/** `BacklogHost "web-1" (profile "web")`. */
function label(type: string, name: string, profile?: unknown): string {
  const kind = isBacklogComponent(type) ? type.slice(COMPONENT_PREFIX.length) : type;
  const profileName = isRecord(profile) && typeof profile.name === "string" ? ` (profile "${profile.name}")` : "";
  return `${kind} "${name}"${profileName}`;
}

function show(value: unknown): string {
  return typeof value === "number" ? String(value) : (JSON.stringify(value) ?? String(value));
}

/** One problem of the library, as a line of a violation. */
function describe(p: Problem): string {
  return `${p.path || "(profile)"} = ${show(p.value)}: ${p.message}. Fix: ${p.fix}. [rule ${p.rule}]`;
}

/** Runs library rules over a profile; a rule that throws on a malformed profile is reported, not fatal. */
function runRules(profile: BacklogProfile, selected: readonly Rule[]): { problems: Problem[]; broken: string[] } {
  const problems: Problem[] = [];
  const broken: string[] = [];
  for (const rule of selected) {
    try {
      problems.push(...rule.check(profile));
    } catch (err) {
      broken.push(`${rule.id} (${(err as Error).message})`);
    }
  }
  return { problems, broken };
}

function rule(id: string): Rule {
  const found = rules.find((r) => r.id === id);
  if (!found) throw new Error(`the library has no rule ${id}: update policy/policies.ts (HOST_RULES)`);
  return found;
}

/** `host:port`, with brackets around an IPv6 literal. */
function endpoint(c: Record<string, unknown>): string {
  const host = String(c.host).toLowerCase();
  const port = c.port ?? 22;
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The machine a connection reaches: `host:port`, and the bastion for a host behind one (the same
 * private address behind two bastions is two machines). The user does not matter: two users on
 * one machine share its kernel.
 */
export function connectionTarget(connection: unknown): string | undefined {
  if (!isRecord(connection) || connection.host === undefined || connection.host === null) return undefined;
  const proxy = isRecord(connection.proxy) && connection.proxy.host ? ` via ${endpoint(connection.proxy)}` : "";
  return `${endpoint(connection)}${proxy}`;
}

/**
 * Inputs of the backlog components, recorded by the resource policies for the stack policies
 * (which see only outputs; see the module doc). One log per pack process.
 */
export class InputLog {
  private readonly byUrn = new Map<string, Props>();

  /** Records the inputs of a backlog component (the proxied props, read later and lazily). */
  record(args: ResourceArgs): void {
    if (isBacklogComponent(args.type)) this.byUrn.set(args.urn, args.props);
  }

  /** The recorded inputs of a resource, if a resource policy saw it. */
  get(urn: string): Props | undefined {
    return this.byUrn.get(urn);
  }
}

/** A backlog component with a profile, as the stack policies use it. */
interface HostComponent {
  readonly urn: string;
  readonly label: string;
  readonly profile: BacklogProfile;
  /** Connection target, or undefined for a component that reaches no single SSH host (a fleet, AWS). */
  readonly target: string | undefined;
}

/**
 * The backlog components of the stack that carry a profile, and those whose inputs are unknown to
 * the pack. A component with a connection but no profile of its own (a fleet's host: the fleet
 * records the profile once for all of them, see BacklogHost) takes the profile of its nearest
 * ancestor that has one.
 */
function hostComponents(resources: readonly StackResource[], log: InputLog): { components: HostComponent[]; unseen: StackResource[] } {
  const found: { r: StackResource; component: HostComponent }[] = [];
  const unseen: StackResource[] = [];
  const reader = (r: StackResource) => {
    const recorded = log.get(r.urn);
    return {
      known: recorded !== undefined || "profile" in r.props || "connection" in r.props,
      read: (key: string): unknown => (key in r.props ? r.props[key] : recorded?.[key]),
    };
  };
  const profileFrom = (r: StackResource): unknown => {
    for (let a: StackResource | undefined = r; a !== undefined; a = a.parent) {
      if (!isBacklogComponent(a.type)) continue;
      const own = reader(a).read("profile");
      if (own !== undefined) return own;
    }
    return undefined;
  };
  for (const r of resources) {
    if (!isBacklogComponent(r.type)) continue;
    const { known, read } = reader(r);
    if (!known) {
      unseen.push(r);
      continue;
    }
    const profile = plain(profileFrom(r));
    // No profile, or not a derived one: nothing to check here (backlog-values-accepted reports a malformed one).
    if (profile === undefined || profileShapeProblem(profile) !== undefined) continue;
    found.push({
      r,
      component: {
        urn: r.urn,
        label: label(r.type, r.name, profile),
        profile: profile as BacklogProfile,
        target: connectionTarget(plain(read("connection"))),
      },
    });
  }
  // A component without a target whose descendants are checked (a fleet and its hosts) would only
  // repeat its hosts' reports.
  const ancestors = new Set<string>();
  for (const { r } of found) {
    for (let p = r.parent; p !== undefined; p = p.parent) ancestors.add(p.urn);
  }
  const components = found.filter(({ component }) => component.target !== undefined || !ancestors.has(component.urn)).map(({ component }) => component);
  return { components, unseen };
}

/** Components grouped by the host they reach; one without a target is its own group. */
function byHost(components: readonly HostComponent[]): HostComponent[][] {
  const groups = new Map<string, HostComponent[]>();
  for (const c of components) {
    const key = c.target ?? `\u0000${c.urn}`;
    const g = groups.get(key);
    if (g) g.push(c);
    else groups.set(key, [c]);
  }
  return [...groups.values()];
}

// ---------------------------------------------------------------------------------------
// Policies

const HOST_RULE_IDS: readonly string[] = Object.values(HOST_RULES);

/** Every library rule but the two the stack policies apply per host: what backlog-values-accepted runs. */
export const PROFILE_RULES: readonly Rule[] = Object.freeze(rules.filter((r) => !HOST_RULE_IDS.includes(r.id)));

function profileOf(args: ResourceArgs, report: ReportViolation): BacklogProfile | undefined {
  const profile = plain(args.props.profile);
  const shape = profileShapeProblem(profile);
  if (shape !== undefined) {
    report(
      `${label(args.type, args.name, profile)}: its profile cannot be checked: ${shape}. Fix: record the result of defineProfile(...) as the component's profile.`,
    );
    return undefined;
  }
  return profile as BacklogProfile;
}

function valuesAccepted(log: InputLog): ResourcePolicy {
  return {
    name: POLICY.valuesAccepted,
    description:
      "Every value of a backlog component's profile is one the kernel, php-fpm and nginx accept: application backlogs " +
      "are whole numbers 1..65535 (no -1, no 0), somaxconn 1..65535, tcp_max_syn_backlog >= 1, and the profile passes " +
      "every other rule of the library's own check (all but the two per-host ones).",
    enforcementLevel: "mandatory",
    severity: "high",
    remediationSteps:
      "Fix the profile field named in the message, as its 'Fix:' says. Build profiles with defineProfile (the components do), " +
      "which applies the same rules before anything is deployed; give every backlog as an explicit positive number.",
    validateResource: (args, report) => {
      log.record(args);
      if (!isBacklogComponent(args.type) || !("profile" in args.props)) {
        return args.notApplicable("not a backlog component with a profile");
      }
      const profile = profileOf(args, report);
      if (profile === undefined) return;
      const who = label(args.type, args.name, profile);
      const { problems, broken } = runRules(profile, PROFILE_RULES);
      for (const p of problems) report(`${who}: ${describe(p)}`);
      for (const b of broken) report(`${who}: the profile is malformed: rule ${b} could not run. Fix: record the result of defineProfile(...) as the profile.`);
    },
  };
}

function readMinimums(args: { getConfig<T extends object>(): T }): MinimumsConfig {
  const c = args.getConfig<Partial<MinimumsConfig>>();
  return {
    minBacklog: typeof c.minBacklog === "number" ? c.minBacklog : CONFIG_DEFAULTS.minBacklog,
    minSomaxconn: typeof c.minSomaxconn === "number" ? c.minSomaxconn : CONFIG_DEFAULTS.minSomaxconn,
  };
}

const isPositiveInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 1;

function minimums(log: InputLog): ResourcePolicy {
  return {
    name: POLICY.minimums,
    description:
      "A backlog profile asks for queues no shorter than the organisation's minimums: every application backlog >= minBacklog " +
      `(default ${CONFIG_DEFAULTS.minBacklog}) and net.core.somaxconn >= minSomaxconn (default ${CONFIG_DEFAULTS.minSomaxconn}).`,
    enforcementLevel: "mandatory",
    severity: "medium",
    remediationSteps:
      "Raise the profile's backlog (or the pool's/listener's own backlog) to at least minBacklog; when somaxconn is below " +
      "minSomaxconn, raise the backlog or give somaxconn explicitly. If a smaller queue is intended, lower the minimums in " +
      "the pack's config (--policy-pack-config).",
    configSchema: {
      properties: {
        minBacklog: {
          type: "integer",
          minimum: 1,
          maximum: 65535,
          default: CONFIG_DEFAULTS.minBacklog,
          description: "Smallest application backlog (profile backlog, php-fpm listen.backlog, nginx backlog=).",
        },
        minSomaxconn: {
          type: "integer",
          minimum: 1,
          maximum: 65535,
          default: CONFIG_DEFAULTS.minSomaxconn,
          description: "Smallest net.core.somaxconn a profile may ask for (it caps every listening socket on the host).",
        },
      },
    },
    validateResource: (args, report) => {
      log.record(args);
      if (!isBacklogComponent(args.type) || !("profile" in args.props)) {
        return args.notApplicable("not a backlog component with a profile");
      }
      const profile = plain(args.props.profile);
      // A malformed profile is backlog-values-accepted's to report.
      if (profileShapeProblem(profile) !== undefined) return;
      const p = profile as BacklogProfile;
      const { minBacklog, minSomaxconn } = readMinimums(args);
      const who = label(args.type, args.name, p);
      const low = (v: unknown): boolean => isPositiveInt(v) && v < minBacklog;
      // Values below 1 are backlog-values-accepted's. Inherited backlogs are reported at their source.
      let apps: AppBacklog[] = [];
      try {
        apps = appBacklogs(p);
      } catch {
        // malformed items: backlog-values-accepted reports them
      }
      if (low(p.backlog)) {
        const heirs = apps.filter((a) => !a.explicit && a.backlog === p.backlog).map((a) => a.path);
        report(
          `${who}: the profile backlog ${p.backlog} is below the minimum ${minBacklog} (config minBacklog)` +
            `${heirs.length ? `; ${heirs.join(", ")} inherit it` : ""}: a burst of more than ${p.backlog} connections waiting to be accepted is refused ` +
            `(EAGAIN on a unix socket, nginx 502) or its SYNs dropped. Fix: raise backlog to at least ${minBacklog}.`,
        );
      }
      for (const a of apps) {
        if (!low(a.backlog) || (!a.explicit && a.backlog === p.backlog)) continue;
        if (a.program === "nginx" && !a.explicit) continue; // shares the explicit backlog of another listener on its address
        report(
          `${who}: ${a.path} (${a.program === "php-fpm" ? "php-fpm listen.backlog" : "nginx backlog="}) ${a.backlog} is below the minimum ` +
            `${minBacklog} (config minBacklog). Fix: raise it to at least ${minBacklog}, or leave it out so it inherits the profile backlog.`,
        );
      }
      const somaxconn = isRecord(p.sysctls) ? p.sysctls[SOMAXCONN] : undefined;
      if (isPositiveInt(somaxconn) && somaxconn < minSomaxconn) {
        const source = p.sources?.somaxconn === "override" ? "given in the profile" : "derived from the largest backlog";
        report(
          `${who}: net.core.somaxconn ${somaxconn} (${source}) is below the minimum ${minSomaxconn} (config minSomaxconn): ` +
            `it caps the accept queue of every listening socket on the host, not only the profile's. ` +
            `Fix: give somaxconn: ${minSomaxconn} (or more) in the profile, or raise its backlog.`,
        );
      }
    },
  };
}

/** The two per-host stack policies: one library rule, per component and across components on one host. */
function perHost(
  log: InputLog,
  name: string,
  ruleId: string,
  sysctl: typeof SOMAXCONN | typeof TCP_MAX_SYN_BACKLOG,
  text: Pick<StackPolicy, "description" | "remediationSteps" | "severity">,
): StackPolicy {
  const check = rule(ruleId);
  return {
    name,
    ...text,
    enforcementLevel: "mandatory",
    validateStack: (args: StackArgs, report: ReportViolation) => {
      const { components, unseen } = hostComponents(args.resources, log);
      if (unseen.length > 0) {
        report(
          `cannot check ${unseen.map((r) => label(r.type, r.name)).join(", ")}: a stack policy sees only a component's ` +
            `outputs, and the inputs of these components (profile, connection) were not recorded because no resource policy ` +
            `of this pack ran on them. Fix: enable at least one resource policy of the pack (e.g. ${POLICY.valuesAccepted}).`,
        );
      }
      for (const group of byHost(components)) {
        for (const a of group) {
          const at = a.target !== undefined ? ` at ${a.target}` : "";
          const own = runRules(a.profile, [check]);
          for (const p of own.problems) report(`${a.label}${at}: ${describe(p)}`, a.urn);
          for (const b of own.broken) report(`${a.label}${at}: the profile is malformed: rule ${b} could not run.`, a.urn);
          if (own.broken.length > 0) continue;
          // Every other component aimed at the same host writes the same kernel keys; whichever deploys
          // last sets them. Only a smaller value can break what the component's own check allowed.
          for (const k of group) {
            const theirs = k.profile.sysctls[sysctl];
            if (k === a || !(typeof theirs === "number" && theirs < (a.profile.sysctls[sysctl] as number))) continue;
            const mixed: BacklogProfile = { ...a.profile, sysctls: k.profile.sysctls, sources: k.profile.sources };
            const cross = runRules(mixed, [check]);
            for (const p of cross.problems) {
              report(
                `${a.label} and ${k.label} both manage the host ${a.target}: each writes ${sysctl} there and the one ` +
                  `deployed last wins. With ${sysctl} ${theirs} from ${k.label}, ${a.label} has ${p.path} = ${show(p.value)}: ` +
                  `${p.message}. Fix: manage each host with one profile (one component), or make the two agree: ${p.fix}. ` +
                  `[rule ${p.rule}]`,
                a.urn,
              );
            }
          }
        }
      }
    },
  };
}

function withinSomaxconn(log: InputLog): StackPolicy {
  return perHost(log, POLICY.withinSomaxconn, HOST_RULES.withinSomaxconn, SOMAXCONN, {
    description:
      "On each host, every php-fpm listen.backlog and nginx backlog= is at most net.core.somaxconn (listen() silently " +
      "truncates it), also when several backlog components with different profiles manage the host (grouped by SSH " +
      "target host:port).",
    severity: "high",
    remediationSteps:
      "Lower the backlog to the host's somaxconn or raise somaxconn (remove an explicit somaxconn so it is derived from the " +
      "largest backlog). When two components manage the same host, give the host one profile (one component), or make " +
      "their values agree.",
  });
}

function synQueue(log: InputLog): StackPolicy {
  return perHost(log, POLICY.synQueue, HOST_RULES.synQueue, TCP_MAX_SYN_BACKLOG, {
    description:
      "On each host, net.ipv4.tcp_max_syn_backlog (the SYN queue) is not smaller than the largest TCP listener backlog, " +
      "also across backlog components that manage the same host (grouped by SSH target host:port).",
    severity: "medium",
    remediationSteps:
      "Raise tcpMaxSynBacklog to at least the largest TCP backlog, or remove the override so it follows somaxconn. When two " +
      "components manage the same host, give the host one profile.",
  });
}

function hostKeyPinned(log: InputLog): ResourcePolicy {
  return {
    name: POLICY.hostKey,
    description:
      "Every SSH connection of a backlog component pins the host key: connection.hostKey is an OpenSSH public key line " +
      "and insecureIgnoreHostKey is false, for the host and for its bastion (connection.proxy).",
    enforcementLevel: "mandatory",
    severity: "critical",
    remediationSteps:
      "Set connection.hostKey (and connection.proxy.hostKey) to the host's public key line, e.g. from " +
      "`ssh-keyscan -t ed25519 HOST` checked out of band or /etc/ssh/ssh_host_ed25519_key.pub on the host, and remove " +
      "insecureIgnoreHostKey. Without it anyone on the path can impersonate the host and receive the deployment's (sudo) scripts.",
    validateResource: (args, report) => {
      log.record(args);
      if (!isBacklogComponent(args.type) || !("connection" in args.props)) {
        return args.notApplicable("not a backlog component with an SSH connection");
      }
      const connection = plain(args.props.connection);
      const who = label(args.type, args.name, undefined);
      if (!isRecord(connection)) {
        report(`${who}: connection is not an object, so its host key cannot be checked. Fix: give connection.host and connection.hostKey.`);
        return;
      }
      const hops: [string, Record<string, unknown>][] = [["connection", connection]];
      if (isRecord(connection.proxy)) hops.push(["connection.proxy (bastion)", connection.proxy]);
      for (const [where, c] of hops) {
        const to = `${c.user ?? "root"}@${endpoint(c)}`;
        if (c.insecureIgnoreHostKey === true) {
          report(
            `${who}: ${where} to ${to} sets insecureIgnoreHostKey: the SSH host key is not checked, so anyone on the path ` +
              `can impersonate the host and receive the deployment's scripts. Fix: set ${where.split(" ")[0]}.hostKey to the host's ` +
              `public key line and remove insecureIgnoreHostKey.`,
          );
        } else if (typeof c.hostKey !== "string" || c.hostKey.trim() === "") {
          report(
            `${who}: ${where} to ${to} has no hostKey: the host's identity is not pinned. Fix: set ` +
              `${where.split(" ")[0]}.hostKey to the host's public key line ("ssh-ed25519 AAAA…").`,
          );
        } else {
          try {
            parseHostKey(c.hostKey);
          } catch (err) {
            report(`${who}: ${where} to ${to}: ${(err as Error).message}. Fix: copy the host's public key line (type and base64 data) exactly.`);
          }
        }
      }
    },
  };
}

function readDropIn(args: { getConfig<T extends object>(): T }): DropInConfig {
  const c = args.getConfig<Partial<DropInConfig>>();
  return { sortAfter: typeof c.sortAfter === "string" && c.sortAfter !== "" ? c.sortAfter : CONFIG_DEFAULTS.sortAfter };
}

function dropInOrder(log: InputLog): ResourcePolicy {
  return {
    name: POLICY.dropInOrder,
    description:
      `The sysctl drop-in of a backlog component wins the boot-time load order: paths.sysctlDropIn is a *.conf file ` +
      `directly in ${SYSCTL_DROPIN_DIR} whose name sorts after sortAfter (default ${CONFIG_DEFAULTS.sortAfter}).`,
    enforcementLevel: "mandatory",
    severity: "medium",
    remediationSteps:
      `Leave paths.sysctlDropIn at the library's default (${SYSCTL_DROPIN_PATH}) or give a name in ${SYSCTL_DROPIN_DIR} ` +
      "that sorts after sortAfter, e.g. starting with 'zz-'.",
    configSchema: {
      properties: {
        sortAfter: {
          type: "string",
          pattern: "^[^/]+$",
          default: CONFIG_DEFAULTS.sortAfter,
          description: "File name the drop-in's name must sort after (byte order), e.g. the last file your images ship in sysctl.d.",
        },
      },
    },
    validateResource: (args, report) => {
      log.record(args);
      if (!isBacklogComponent(args.type) || !isRecord(args.props.paths) || !("sysctlDropIn" in args.props.paths)) {
        return args.notApplicable("not a backlog component with a sysctl drop-in path");
      }
      const path = plain(args.props.paths.sysctlDropIn);
      const { sortAfter } = readDropIn(args);
      const who = label(args.type, args.name, undefined);
      const fix = `Fix: use ${SYSCTL_DROPIN_PATH} (the default) or another name in ${SYSCTL_DROPIN_DIR} that sorts after ${sortAfter}.`;
      if (typeof path !== "string") {
        report(`${who}: paths.sysctlDropIn = ${show(path)} is not a path. ${fix}`);
        return;
      }
      const slash = path.lastIndexOf("/");
      const dir = path.slice(0, Math.max(slash, 0));
      const file = path.slice(slash + 1);
      if (dir !== SYSCTL_DROPIN_DIR) {
        report(
          `${who}: paths.sysctlDropIn = ${show(path)} is not directly in ${SYSCTL_DROPIN_DIR}: files there are the ` +
            `administrator's and win over /run and /usr/lib files of the same name; other directories are not read at boot ` +
            `or are the distribution's. ${fix}`,
        );
      }
      if (!file.endsWith(".conf")) {
        report(`${who}: paths.sysctlDropIn = ${show(path)} does not end in .conf: systemd-sysctl ignores it at boot. ${fix}`);
      }
      if (Buffer.compare(Buffer.from(file), Buffer.from(sortAfter)) <= 0) {
        report(
          `${who}: paths.sysctlDropIn = ${show(path)}: its file name ${show(file)} does not sort after ${show(sortAfter)}, ` +
            `so at boot a file read after it (${sortAfter} is /etc/sysctl.conf on Debian) can set the same key and win over the ` +
            `profile's values. ${fix}`,
        );
      }
    },
  };
}

/**
 * The pack's policies, with one shared {@link InputLog} (resource policies record, stack policies
 * read). Call once per pack process; tests call it once per case.
 */
export function createPolicies(log: InputLog = new InputLog()): BacklogPolicy[] {
  return [valuesAccepted(log), minimums(log), withinSomaxconn(log), synQueue(log), hostKeyPinned(log), dropInOrder(log)];
}
