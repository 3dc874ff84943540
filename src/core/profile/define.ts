/**
 * The entry points: `validateProfile` and `defineProfile` run the walker over the input, derive
 * the profile and run the cross-field rules over it (each check once: the walker checks fields,
 * the rules relate them); `toProfile` takes a profile `defineProfile` made as it is.
 *
 * @packageDocumentation
 */

import { NAME_PATTERN, type Problem, ProfileError, Problems } from "../validation";
import { type DraftListener, type DraftPool, derive } from "./derive";
import { CROSS_FIELD_RULE_IDS, rules } from "./rules";
import type { BacklogProfile, ProfileInput } from "./types";
import { isRecord, readInput } from "./walk";

/** Rewrite `pools[k]`/`listeners[k]` (draft indexes) to the indexes the input used. */
function remap(p: Problem, pools: readonly DraftPool[], listeners: readonly DraftListener[]): Problem {
  const fix = (s: string) =>
    s.replace(/\b(pools|listeners)\[(\d+)\]/g, (_m, list: string, k: string) => {
      const src = list === "pools" ? pools[Number(k)]?.index : listeners[Number(k)]?.index;
      return `${list}[${src ?? k}]`;
    });
  return { ...p, path: fix(p.path), message: fix(p.message), fix: fix(p.fix) };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The rules `evaluate` runs after the walker, in the order of {@link rules}. */
const CROSS_FIELD_RULES = rules.filter((r) => CROSS_FIELD_RULE_IDS.includes(r.id));

/**
 * Walk the input (field checks, in input order), derive the profile from the valid parts, then
 * run the cross-field rules over it (paths mapped back to input indexes) and report the pm
 * follow-ups. Each check runs once; the field rules are not run again over the derived profile.
 */
function evaluate(input: unknown): { problems: readonly Problem[]; profile: BacklogProfile | undefined } {
  const problems = new Problems();
  const draft = readInput(problems, input);
  if (draft === undefined || draft.backlog === undefined) return { problems: problems.all, profile: undefined };
  const profile = derive({ ...draft, backlog: draft.backlog });
  for (const rule of CROSS_FIELD_RULES) problems.addAll(rule.check(profile).map((p) => remap(p, draft.pools, draft.listeners)));
  for (const pool of draft.pools) problems.addAll(pool.pmFollowUp);
  return { problems: problems.all, profile: problems.count === 0 ? deepFreeze(profile) : undefined };
}

/**
 * Validate a profile input without throwing: every problem, in input order (field checks
 * first, then cross-field rules over the items whose own fields are valid). Empty when
 * {@link defineProfile} would succeed.
 *
 * @param input - the profile input as given (a `ProfileInput`, or parsed JSON): not trusted.
 */
export function validateProfile(input: unknown): readonly Problem[] {
  return evaluate(input).problems;
}

/**
 * Validate `input`, apply defaults, derive every value and check every rule.
 *
 * @param input - the profile: only `name` and `backlog` are required; see {@link ProfileInput}
 *   for every field, its unit and its default.
 * @returns a deeply frozen {@link BacklogProfile}.
 * @throws {@link ProfileError} listing every problem (field path, value, rule, fix) when
 *   anything is wrong; nothing is adjusted silently.
 *
 * @example
 * const profile = defineProfile({
 *   name: "web", backlog: 1024,
 *   pools: [{ name: "app", listen: "/run/php/app.sock" }],
 *   listeners: [{ listen: 80, serverName: "example.com", pool: "app" }],
 * });
 * profile.sysctls["net.core.somaxconn"]; // 1024
 */
export function defineProfile(input: ProfileInput): BacklogProfile {
  const { problems, profile } = evaluate(input);
  if (profile === undefined || problems.length > 0) {
    const name = isRecord(input) && typeof input.name === "string" && NAME_PATTERN.test(input.name) ? ` "${input.name}"` : "";
    throw new ProfileError(problems, `backlog profile${name}`);
  }
  DEFINED.add(profile);
  return profile;
}

/** Profiles {@link defineProfile} made: the only derived profiles taken without checking them again. */
const DEFINED = new WeakSet<object>();

/**
 * The profile for a component argument: a {@link BacklogProfile} that {@link defineProfile} made is
 * taken as it is; anything else is validated and derived as a {@link ProfileInput}. So a hand-made
 * object shaped like a derived profile (frozen or not) never skips the rules.
 *
 * @param input - a profile from {@link defineProfile}, or a profile input.
 * @throws {@link ProfileError} listing every problem.
 */
export function toProfile(input: ProfileInput | BacklogProfile): BacklogProfile {
  return typeof input === "object" && input !== null && DEFINED.has(input) ? (input as BacklogProfile) : defineProfile(input as ProfileInput);
}
