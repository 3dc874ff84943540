/**
 * The backlog profile: the single source of truth for one host's (or fleet's) listen
 * backlogs. {@link defineProfile} validates the input, derives every value (sysctls, each
 * php-fpm pool's `listen.backlog`, each nginx listener's `backlog=`), checks every
 * {@link rules | rule}, and returns a frozen {@link BacklogProfile}; bad input throws one
 * {@link ProfileError} listing every problem. The same {@link rules} serve the components and
 * the policy pack.
 *
 * Derivation in one paragraph: every application backlog defaults to the profile's
 * `backlog`; `net.core.somaxconn` defaults to the largest application backlog (so listen()
 * never truncates one); `net.ipv4.tcp_max_syn_backlog` defaults to somaxconn (so no TCP
 * listener's SYN queue is smaller than its accept queue). Explicit overrides are checked
 * against the same rules and rejected, never adjusted, when they break one.
 *
 * The profile lives in this folder, one seam a file: `types.ts` (input and derived types,
 * defaults), `walk.ts` (the walker of the untyped input: every field check), `derive.ts`
 * (derivation and what is read off a derived profile), `rules.ts` (the rules, shared with the
 * policy pack), `define.ts` (`defineProfile`, `validateProfile`, `toProfile`). This file
 * re-exports their public part; `import ... from "./profile"` is the way in.
 *
 * @packageDocumentation
 */

export { ProfileError, type Problem } from "../validation";
export {
  type AppBacklog,
  type KernelTarget,
  appBacklogs,
  fastcgiTarget,
  formatPoolListen,
  kernelTargets,
} from "./derive";
export { defineProfile, toProfile, validateProfile } from "./define";
export { INPUT_RULES, type Rule, checkProfile, isOwnedPoolKey, rules } from "./rules";
export {
  type BacklogProfile,
  DEFAULTS,
  type ExtraDirective,
  type KernelValues,
  type Listener,
  type ListenerInput,
  MACHINE_GLOBAL_SYSCTLS,
  type Mode,
  NETDEV_MAX_BACKLOG,
  type NetdevMaxBacklogInput,
  type Pm,
  type PmInput,
  type PmStyle,
  type Pool,
  type PoolInput,
  type PoolListen,
  type ProfileInput,
  SOMAXCONN,
  type SysctlKey,
  type Sysctls,
  TCP_MAX_SYN_BACKLOG,
  type ValueSource,
} from "./types";
