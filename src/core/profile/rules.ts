/**
 * The rules over a derived profile (`rules`, shared with the policy pack; ids, messages and fixes
 * are stable), `checkProfile`, the input-only rule ids (`INPUT_RULES`) and php-fpm's own
 * process-manager checks (`pmProblems`, which the walker also runs on the input). Which rules
 * relate several fields or items (`CROSS_FIELD_RULE_IDS`) decides what `defineProfile` runs after
 * the walker: every other rule checks one field, which the walker has already checked on the input.
 *
 * @packageDocumentation
 */

import type { BoundEndpoint, Problem, TcpEndpoint } from "../validation";
import {
  ACCOUNT_PATTERN,
  LIMITS,
  NAME_PATTERN,
  OWNED_POOL_KEYS,
  Problems,
  checkAbsolutePath,
  checkExtraDirective,
  checkInt,
  checkPattern,
  checkServerName,
  endpointsOverlap,
  formatEndpoint,
  inRange,
  parseTcpEndpoint,
  unixSocketPathProblem,
} from "../validation";
import ruleText from "./ruleTexts.json";
import { type AppBacklog, appBacklogs, fastcgiTarget, formatPoolListen } from "./derive";
import { type BacklogProfile, type Listener, NETDEV_MAX_BACKLOG, type Pm, SOMAXCONN, TCP_MAX_SYN_BACKLOG } from "./types";

// ---------------------------------------------------------------------------------------
// Rules

/** A named check over a derived profile, shared by the components and the policy pack. */
export interface Rule {
  /** Stable id, used in every {@link Problem} it reports (e.g. `backlog-within-somaxconn`). */
  readonly id: string;
  /** What the rule enforces. */
  readonly description: string;
  /** Why, with the source (see docs/profile.md and research/anchors-features.md). */
  readonly reason: string;
  /** Report every violation in `profile` (empty when it holds). */
  check(profile: BacklogProfile): Problem[];
}

function problem(path: string, value: unknown, rule: string, message: string, fix: string): Problem {
  return { path, value, rule, message, fix };
}

/** Reports one problem of the rule being checked: its id is filled in. */
type Report = (path: string, value: unknown, message: string, fix: string) => Problem;

/**
 * A rule as written below: its id and its check, which gets a {@link Report} bound to the id. What
 * each rule enforces and why (its `description` and `reason`) is prose, kept as data in
 * ruleTexts.json beside this file, keyed by id; test/unit/core/profile.test.ts checks that every rule
 * has its text and every text its rule.
 */
interface RuleSpec {
  readonly id: string;
  check(profile: BacklogProfile, problem: Report): Problem[];
}

/** The text of each rule: ruleTexts.json. */
const RULE_TEXT: Readonly<Record<string, { readonly description: string; readonly reason: string }>> = Object.freeze(ruleText);

function bound(spec: RuleSpec): Rule {
  const text = RULE_TEXT[spec.id];
  if (!text) throw new Error(`rule ${spec.id} has no description and reason in ruleTexts.json`);
  const report: Report = (path, value, message, fix) => problem(path, value, spec.id, message, fix);
  return { id: spec.id, description: text.description, reason: text.reason, check: (profile) => spec.check(profile, report) };
}

function somaxconnRef(p: BacklogProfile): string {
  return `somaxconn ${p.sysctls[SOMAXCONN]}${p.sources.somaxconn === "override" ? " (override)" : " (derived)"}`;
}

/** Run a field-level check collector and keep problems of one rule id. */
function collect(fn: (problems: Problems) => void, rule: string): Problem[] {
  const problems = new Problems();
  fn(problems);
  return problems.all.filter((p) => p.rule === rule);
}

function rangeRule(
  id: string,
  fields: (p: BacklogProfile) => { path: string; value: unknown; what: string }[],
  range: (path: string) => { min: number; max: number },
): RuleSpec {
  return {
    id,
    check: (profile) => fields(profile).flatMap(({ path, value, what }) => collect((ps) => checkInt(ps, path, value, range(path), id, what), id)),
  };
}

/** Group listeners by canonical address, keeping input order. */
function listenersByAddress(profile: BacklogProfile): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  profile.listeners.forEach((l, i) => {
    const g = groups.get(l.address);
    if (g) g.push(i);
    else groups.set(l.address, [i]);
  });
  return groups;
}

/** A rule over the listeners of each nginx address, in input order: `each` reports what it finds for one address. */
function perAddress(id: string, each: (address: string, listeners: { i: number; l: Listener }[], problem: Report) => Problem[]): RuleSpec {
  return {
    id,
    check: (profile, problem) =>
      [...listenersByAddress(profile)].flatMap(([address, idx]) =>
        each(
          address,
          idx.map((i) => ({ i, l: profile.listeners[i] as Listener })),
          problem,
        ),
      ),
  };
}

/** Sockets a profile binds, with the path that names each. */
function boundSockets(profile: BacklogProfile): { path: string; what: string; unix?: string; tcp?: BoundEndpoint }[] {
  const out: { path: string; what: string; unix?: string; tcp?: BoundEndpoint }[] = [];
  profile.pools.forEach((p, i) => {
    const path = `pools[${i}].listen`;
    const what = `pool ${p.name} (${path})`;
    if (p.listen.kind === "unix") out.push({ path, what, unix: p.listen.path });
    else out.push({ path, what, tcp: { program: "php-fpm", endpoint: p.listen.endpoint } });
  });
  for (const [, idx] of listenersByAddress(profile)) {
    const i = idx[0] as number;
    const l = profile.listeners[i] as Listener;
    out.push({ path: `listeners[${i}].listen`, what: `nginx ${l.address} (listeners[${i}].listen)`, tcp: { program: "nginx", endpoint: l.listen } });
  }
  return out;
}

const RULES: RuleSpec[] = [
  rangeRule(
    "somaxconn-range",
    (p) => [{ path: "somaxconn", value: p.sysctls[SOMAXCONN], what: "net.core.somaxconn" }],
    () => LIMITS.somaxconn,
  ),
  rangeRule(
    "syn-backlog-range",
    (p) => [{ path: "tcpMaxSynBacklog", value: p.sysctls[TCP_MAX_SYN_BACKLOG], what: "net.ipv4.tcp_max_syn_backlog" }],
    () => LIMITS.tcpMaxSynBacklog,
  ),
  rangeRule(
    "backlog-range",
    (p) => [
      { path: "backlog", value: p.backlog, what: "the profile backlog" },
      ...p.pools.map((x, i) => ({ path: `pools[${i}].backlog`, value: x.backlog, what: "listen.backlog" })),
      ...p.listeners.map((x, i) => ({ path: `listeners[${i}].backlog`, value: x.backlog, what: "nginx backlog=" })),
    ],
    () => LIMITS.backlog,
  ),
  rangeRule(
    "netdev-range",
    (p) =>
      p.sysctls[NETDEV_MAX_BACKLOG] === undefined
        ? []
        : [{ path: "netdevMaxBacklog.value", value: p.sysctls[NETDEV_MAX_BACKLOG], what: "net.core.netdev_max_backlog" }],
    () => LIMITS.netdevMaxBacklog,
  ),
  {
    id: "backlog-within-somaxconn",
    check: (profile, problem) => {
      const max = profile.sysctls[SOMAXCONN];
      const out: Problem[] = [];
      const fix = (b: number) =>
        profile.sources.somaxconn === "override"
          ? `raise somaxconn to at least ${b}, or remove the somaxconn override so it is derived`
          : `lower the backlog to at most ${max}`;
      if (profile.backlog > max) {
        out.push(problem("backlog", profile.backlog, `exceeds ${somaxconnRef(profile)}: listen() would silently truncate it to ${max}`, fix(profile.backlog)));
      }
      // Inherited backlogs repeat a value already reported at its source (the profile
      // backlog or an explicit listener backlog on the same address): report sources only.
      const apps = appBacklogs(profile);
      const reported = new Set<number>(profile.backlog > max ? [profile.backlog] : []);
      for (const a of [...apps.filter((x) => x.explicit), ...apps.filter((x) => !x.explicit)]) {
        if (a.backlog <= max || (!a.explicit && reported.has(a.backlog))) continue;
        reported.add(a.backlog);
        out.push(problem(a.path, a.backlog, `exceeds ${somaxconnRef(profile)}: listen() would silently truncate it to ${max}`, fix(a.backlog)));
      }
      return out;
    },
  },
  {
    id: "derived-consistency",
    check: (profile, problem) => {
      const out: Problem[] = [];
      if (profile.mode !== "atLeast" && profile.mode !== "exact") {
        out.push(problem("mode", profile.mode, 'must be "atLeast" or "exact"', "use one of the two modes"));
      }
      const stale = (path: string, value: number | undefined, message: string) =>
        out.push(problem(path, value, message, "derive the profile again with defineProfile"));
      const inherited = `is marked as inherited but differs from the profile backlog ${profile.backlog}`;
      const items = [
        ...profile.pools.map((x, i) => ({ x, path: `pools[${i}].backlog` })),
        ...profile.listeners.map((x, i) => ({ x, path: `listeners[${i}].backlog` })),
      ];
      for (const { x, path } of items) {
        if (x.backlogSource === "profile" && x.backlog !== profile.backlog) stale(path, x.backlog, inherited);
      }
      const largest = Math.max(profile.backlog, ...appBacklogs(profile).map((a) => a.backlog));
      if (profile.sources.somaxconn === "derived" && profile.sysctls[SOMAXCONN] !== largest) {
        stale("somaxconn", profile.sysctls[SOMAXCONN], `is marked as derived but is not the largest application backlog (${largest})`);
      }
      if (profile.sources.tcpMaxSynBacklog === "derived" && profile.sysctls[TCP_MAX_SYN_BACKLOG] !== profile.sysctls[SOMAXCONN]) {
        stale("tcpMaxSynBacklog", profile.sysctls[TCP_MAX_SYN_BACKLOG], `is marked as derived but differs from somaxconn (${profile.sysctls[SOMAXCONN]})`);
      }
      return out;
    },
  },
  {
    id: "syn-backlog-covers-tcp",
    check: (profile, problem) => {
      const syn = profile.sysctls[TCP_MAX_SYN_BACKLOG];
      const ref = `tcp_max_syn_backlog ${syn}${profile.sources.tcpMaxSynBacklog === "override" ? " (override)" : " (derived)"}`;
      // A derived SYN queue follows somaxconn: a TCP backlog above both is reported once,
      // by backlog-within-somaxconn.
      const derived = profile.sources.tcpMaxSynBacklog === "derived" && syn === profile.sysctls[SOMAXCONN];
      const tcp = appBacklogs(profile).filter((a) => a.transport === "tcp" && a.backlog > syn && !derived);
      if (tcp.length === 0) return [];
      const largest = Math.max(...tcp.map((a) => a.backlog));
      const worst = tcp.find((a) => a.backlog === largest) as AppBacklog;
      return [
        problem(
          "tcpMaxSynBacklog",
          syn,
          `${ref} is below the largest TCP listener backlog ${largest} (${worst.path})`,
          profile.sources.tcpMaxSynBacklog === "override"
            ? `raise tcpMaxSynBacklog to at least ${largest}, or remove the override so it follows somaxconn`
            : `raise tcpMaxSynBacklog to at least ${largest}`,
        ),
      ];
    },
  },
  {
    id: "unique-pool-names",
    check: (profile, problem) => {
      const seen = new Map<string, number>();
      const out: Problem[] = [];
      profile.pools.forEach((p, i) => {
        const k = p.name.toLowerCase();
        const first = seen.get(k);
        if (first !== undefined) {
          out.push(problem(`pools[${i}].name`, p.name, `repeats the name of pools[${first}]`, "give every pool its own name"));
        } else seen.set(k, i);
      });
      return out;
    },
  },
  {
    id: "unique-sockets",
    check: (profile, problem) => {
      const sockets = boundSockets(profile);
      const out: Problem[] = [];
      sockets.forEach((s, j) => {
        for (let k = 0; k < j; k++) {
          const o = sockets[k] as (typeof sockets)[number];
          const clash =
            (s.unix !== undefined && s.unix === o.unix) ||
            (s.tcp !== undefined && o.tcp !== undefined && !(s.tcp.program === "nginx" && o.tcp.program === "nginx") && endpointsOverlap(s.tcp, o.tcp));
          if (clash) {
            out.push(
              problem(
                s.path,
                s.unix ?? (s.tcp ? formatEndpoint(s.tcp.endpoint) : undefined),
                `binds the same socket as ${o.what}`,
                "give each pool and nginx address its own socket path or port",
              ),
            );
            break;
          }
        }
      });
      return out;
    },
  },
  {
    id: "nginx-address-overlap",
    check: (profile, problem) => {
      const out: Problem[] = [];
      const groups = [...listenersByAddress(profile).values()].map((idx) => idx[0] as number);
      groups.forEach((i, j) => {
        const l = profile.listeners[i] as Listener;
        for (let k = 0; k < j; k++) {
          const oi = groups[k] as number;
          const o = profile.listeners[oi] as Listener;
          if (endpointsOverlap({ program: "nginx", endpoint: l.listen }, { program: "nginx", endpoint: o.listen })) {
            out.push(
              problem(
                `listeners[${i}].listen`,
                l.address,
                `overlaps listeners[${oi}].listen (${o.address}) on port ${l.listen.port}: one is the wildcard`,
                `use the same address on both (name-based virtual hosts share one socket) or different ports`,
              ),
            );
            break;
          }
        }
      });
      return out;
    },
  },
  {
    id: "listener-pool-exists",
    check: (profile, problem) => {
      const out: Problem[] = [];
      profile.listeners.forEach((l, i) => {
        const pool = profile.pools.find((p) => p.name === l.pool);
        if (!pool) {
          out.push(
            problem(
              `listeners[${i}].pool`,
              l.pool,
              `names no pool of this profile (pools: ${profile.pools.map((p) => p.name).join(", ") || "none"})`,
              "use the name of one of the profile's pools, or add the pool",
            ),
          );
        } else if (fastcgiTarget(pool.listen) !== l.fastcgiPass) {
          out.push(
            problem(
              `listeners[${i}].fastcgiPass`,
              l.fastcgiPass,
              `does not reach pool ${pool.name}, which listens on ${formatPoolListen(pool.listen)}`,
              `use ${fastcgiTarget(pool.listen)}`,
            ),
          );
        }
      });
      return out;
    },
  },
  perAddress("nginx-backlog-once", (address, ls, problem) => {
    const out: Problem[] = [];
    const emitters = ls.filter((x) => x.l.emitsBacklog).map((x) => x.i);
    const first = ls[0] as (typeof ls)[number];
    if (emitters.length !== 1) {
      const message = `${emitters.length} listeners write backlog= for ${address}; nginx accepts it once`;
      out.push(
        problem(
          `listeners[${emitters[1] ?? first.i}].emitsBacklog`,
          emitters.length,
          message,
          "let only the first listener of each address carry backlog= (defineProfile does this)",
        ),
      );
    }
    const value = first.l.backlog;
    for (const { i, l } of ls.slice(1)) {
      if (l.backlog === value) continue;
      const message = `conflicts with listeners[${first.i}] on the same address ${address} (backlog ${value}): one socket has one backlog`;
      out.push(problem(`listeners[${i}].backlog`, l.backlog, message, `use ${value} on every listener of ${address}, or give it on one listener only`));
    }
    return out;
  }),
  perAddress("nginx-default-server-once", (address, ls, problem) => {
    const defaults = ls.filter((x) => x.l.defaultServer).map((x) => x.i);
    const message = `listeners[${defaults[0]}] is already the default server for ${address}`;
    return defaults.slice(1).map((i) => problem(`listeners[${i}].defaultServer`, true, message, "mark only one listener per address as defaultServer"));
  }),
  perAddress("nginx-server-name-unique", (address, ls, problem) => {
    const out: Problem[] = [];
    const seen = new Map<string, number>();
    for (const { i, l } of ls) {
      l.serverNames.forEach((n, j) => {
        const k = n.toLowerCase();
        const prev = seen.get(k);
        if (prev === undefined || prev === i) seen.set(k, i);
        else
          out.push(
            problem(`listeners[${i}].serverName[${j}]`, n, `is already served on ${address} by listeners[${prev}]`, "use each server name once per address"),
          );
      });
    }
    return out;
  }),
  {
    id: "pm-consistency",
    check: (profile) => profile.pools.flatMap((p, i) => pmProblems(p.pm, `pools[${i}].pm`)),
  },
  {
    id: "safe-name",
    check: (profile) => [
      ...collect((ps) => checkPattern(ps, "name", profile.name, NAME_PATTERN, "safe-name", "the profile name", "use letters, digits, _ . -"), "safe-name"),
      ...profile.pools.flatMap((p, i) =>
        collect((ps) => checkPattern(ps, `pools[${i}].name`, p.name, NAME_PATTERN, "safe-name", "the pool name", "use letters, digits, _ . -"), "safe-name"),
      ),
    ],
  },
  {
    id: "safe-account",
    check: (profile) =>
      profile.pools.flatMap((p, i) =>
        (["user", "group", "listenOwner", "listenGroup"] as const).flatMap((f) =>
          collect(
            (ps) => checkPattern(ps, `pools[${i}].${f}`, p[f], ACCOUNT_PATTERN, "safe-account", `the ${f}`, "use a system account name such as www-data"),
            "safe-account",
          ),
        ),
      ),
  },
  {
    id: "socket-mode",
    check: (profile) =>
      profile.pools.flatMap((p, i) =>
        collect(
          (ps) => checkPattern(ps, `pools[${i}].listenMode`, p.listenMode, /^0[0-7]{3}$/, "socket-mode", "listen.mode", "write four octal digits such as 0660"),
          "socket-mode",
        ),
      ),
  },
  {
    id: "safe-path",
    check: (profile) => [
      ...profile.pools.flatMap((p, i) =>
        p.listen.kind === "unix"
          ? collect((ps) => checkAbsolutePath(ps, `pools[${i}].listen`, (p.listen as { path: string }).path, "the socket path"), "safe-path")
          : [],
      ),
      ...profile.listeners.flatMap((l, i) => collect((ps) => checkAbsolutePath(ps, `listeners[${i}].root`, l.root, "the document root"), "safe-path")),
    ],
  },
  {
    id: "unix-socket-path",
    check: (profile, problem) =>
      profile.pools.flatMap((p, i) => {
        if (p.listen.kind !== "unix") return [];
        const bad = unixSocketPathProblem(p.listen.path);
        return bad ? [problem(`pools[${i}].listen`, p.listen.path, `the socket path ${bad.message}`, bad.fix)] : [];
      }),
  },
  {
    id: "tcp-endpoint",
    check: (profile, problem) => {
      const out: Problem[] = [];
      const ok = (e: TcpEndpoint, program: "php-fpm" | "nginx") => {
        const parsed = parseTcpEndpoint(formatEndpoint(e), program);
        return "port" in parsed && parsed.port === e.port && parsed.host === e.host && parsed.family === e.family;
      };
      profile.pools.forEach((p, i) => {
        if (p.listen.kind === "tcp" && !ok(p.listen.endpoint, "php-fpm")) {
          out.push(problem(`pools[${i}].listen`, p.listen.endpoint, "is not a valid TCP listen address", "use IPV4:PORT, [IPV6]:PORT or PORT"));
        }
      });
      profile.listeners.forEach((l, i) => {
        if (!ok(l.listen, "nginx") || l.address !== formatEndpoint(l.listen)) {
          out.push(problem(`listeners[${i}].listen`, l.listen, "is not a valid nginx listen address", "use IPV4:PORT, [IPV6]:PORT or PORT"));
        }
      });
      return out;
    },
  },
  {
    id: "server-name",
    check: (profile) =>
      profile.listeners.flatMap((l, i) =>
        l.serverNames.flatMap((n, j) =>
          collect((ps) => checkServerName(ps, `listeners[${i}].serverName[${j}]`, n, "use a host name such as example.com or *.example.com"), "server-name"),
        ),
      ),
  },
  ...(["ini-key", "ini-value", "owned-directive"] as const).map(
    (id): RuleSpec => ({
      id,
      check: (profile: BacklogProfile) =>
        profile.pools.flatMap((p, i) =>
          p.extra.flatMap((d) => collect((ps) => checkExtraDirective(ps, `pools[${i}].extra[${JSON.stringify(d.key)}]`, d.key, d.value), id)),
        ),
    }),
  ),
];

/**
 * The rules every profile must satisfy. {@link defineProfile} checks them all; the policy
 * pack and {@link checkProfile} reuse them on any derived profile. Ids are stable.
 */
export const rules: readonly Rule[] = Object.freeze(RULES.map(bound));

/**
 * Rule ids that only the input check reports (they concern the shape of the input, which a
 * derived profile no longer has). Every other id in a {@link Problem} is one of {@link rules}.
 */
export const INPUT_RULES: Readonly<Record<string, string>> = Object.freeze({
  required: "A required field is missing (profile name and backlog, pool name and listen, listener listen and pool).",
  type: "A field has the wrong type (object, array, boolean expected).",
  "unknown-field": "A field is not part of the input (usually a typo); it is rejected rather than ignored.",
  "mode-value": 'mode is "atLeast" or "exact".',
  "netdev-opt-in": "net.core.netdev_max_backlog is managed only as { value, machineGlobal: true }: it is global to the machine.",
  "listen-address": "A TCP listen address is PORT, IPV4:PORT or [IPV6]:PORT (nginx also *:PORT), IP literals only.",
  "pm-style": "pm.style is dynamic, static or ondemand.",
  "pm-unused-setting": "A pm setting is given for a style that ignores it (e.g. minSpareServers with static).",
  "unix-only-setting": "listenOwner/listenGroup/listenMode are given for a pool that listens on TCP.",
  "host-value": "A host value passed to kernelTargets/render/expectedValues is a whole number 0..2147483647 of a managed key.",
});

/**
 * Run every rule over a derived profile; returns all problems (empty when it is sound).
 *
 * @param profile - any derived profile (from `defineProfile`, or hand-made, as the policy pack sees it).
 */
export function checkProfile(profile: BacklogProfile): Problem[] {
  return rules.flatMap((r) => r.check(profile));
}

/**
 * Ids of the rules that relate several fields or items (and `defineProfile` runs after the
 * walker). Every other rule checks one field, or a derived value against its source: on a
 * profile `derive` made from the walker's draft they cannot fire, because the walker checked
 * those fields on the input, kept only valid values and derived the rest
 * (test/unit/core/profile.test.ts checks this over generated inputs). The one exception,
 * `pm-consistency` over a pm whose bad field got its default, comes from the walker as
 * `DraftPool.pmFollowUp`.
 */
export const CROSS_FIELD_RULE_IDS: readonly string[] = Object.freeze([
  "backlog-within-somaxconn",
  "syn-backlog-covers-tcp",
  "unique-pool-names",
  "unique-sockets",
  "nginx-address-overlap",
  "nginx-backlog-once",
  "nginx-default-server-once",
  "nginx-server-name-unique",
]);

/**
 * `true` when `key` is an extra-directive key the profile owns (case-insensitive).
 *
 * @param key - a php-fpm pool directive key, e.g. `listen.backlog`.
 */
export function isOwnedPoolKey(key: string): boolean {
  return OWNED_POOL_KEYS.includes(key.toLowerCase());
}

/**
 * php-fpm's own process-manager checks (`fpm_conf.c`), as problems under rule
 * `pm-consistency`: the one home of these checks, used by the rule and by the walker.
 *
 * @param pm - fully defaulted pm settings.
 * @param base - field path of the pm, e.g. `pools[0].pm`; each problem's path is `base.field`.
 */
export function pmProblems(pm: Pm, base: string): Problem[] {
  const out: Problem[] = [];
  const add = (field: string, value: unknown, message: string, fix: string) => out.push(problem(`${base}.${field}`, value, "pm-consistency", message, fix));
  if (!inRange(pm.maxChildren, LIMITS.pmServers)) {
    add("maxChildren", pm.maxChildren, `pm.max_children must be between ${LIMITS.pmServers.min} and ${LIMITS.pmServers.max}`, "give a positive whole number");
  }
  if (!inRange(pm.maxRequests, LIMITS.pmMaxRequests)) {
    add(
      "maxRequests",
      pm.maxRequests,
      `pm.max_requests must be between 0 and ${LIMITS.pmMaxRequests.max}`,
      "give 0 (never recycle) or a positive whole number",
    );
  }
  if (pm.style === "ondemand" && !inRange(pm.processIdleTimeoutSeconds, LIMITS.pmIdleSeconds)) {
    add(
      "processIdleTimeoutSeconds",
      pm.processIdleTimeoutSeconds,
      `pm.process_idle_timeout must be between 1 and ${LIMITS.pmIdleSeconds.max} seconds`,
      "give e.g. 10",
    );
  }
  if (pm.style === "dynamic") {
    const { maxChildren, startServers, minSpareServers, maxSpareServers } = pm;
    for (const [f, v] of [
      ["startServers", startServers],
      ["minSpareServers", minSpareServers],
      ["maxSpareServers", maxSpareServers],
    ] as const) {
      if (!inRange(v, LIMITS.pmServers)) add(f, v, `must be between ${LIMITS.pmServers.min} and ${LIMITS.pmServers.max}`, "give a positive whole number");
    }
    if (out.length > 0) return out;
    if (maxSpareServers > maxChildren) {
      add(
        "maxSpareServers",
        maxSpareServers,
        `pm.max_spare_servers (${maxSpareServers}) cannot be greater than pm.max_children (${maxChildren}); php-fpm refuses to start`,
        `lower maxSpareServers to at most ${maxChildren} or raise maxChildren`,
      );
    }
    if (minSpareServers > maxSpareServers) {
      add(
        "minSpareServers",
        minSpareServers,
        `pm.min_spare_servers (${minSpareServers}) cannot be greater than pm.max_spare_servers (${maxSpareServers}); php-fpm refuses to start`,
        "make minSpareServers <= maxSpareServers",
      );
    } else if (startServers < minSpareServers || startServers > maxSpareServers) {
      add(
        "startServers",
        startServers,
        `pm.start_servers (${startServers}) must be between pm.min_spare_servers (${minSpareServers}) and pm.max_spare_servers (${maxSpareServers}); php-fpm refuses to start`,
        `use a value from ${minSpareServers} to ${maxSpareServers}`,
      );
    }
  }
  return out;
}
