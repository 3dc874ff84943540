/**
 * pulumi-backlog: keep a Linux host's listen-backlog settings consistent end to end, and prove it.
 *
 * Components: {@link BacklogHost} (one host), {@link BacklogFleet} (many hosts, one profile).
 * AWS (EC2 by tag, launch-template user data, SSM): import `./aws` (kept apart so that programs
 * that do not use AWS never load @pulumi/aws).
 * Pure core: profile and rules ({@link defineProfile}, {@link rules}), rendering ({@link render}),
 * shell quoting ({@link quote}), verification parsing ({@link parseSs}, {@link compare}).
 *
 * Every public name is listed here explicitly (no `export *`): anything else in `src/` is internal,
 * even when its module exports it. `test/unit/exports.test.ts` pins this list, so a change to it is
 * deliberate (and goes into CHANGELOG.md).
 *
 * @module pulumi-backlog
 */

// Components: one host, a fleet, their arguments and outputs.
export { BacklogHost } from "./pulumi/backlogHost";
export type { BacklogHostArgs, SshConnectionArgs, SshProxyArgs, SysctlConflictRow, VerificationRow } from "./pulumi/backlogHost";
export { BacklogFleet } from "./pulumi/backlogFleet";
export type { BacklogFleetArgs, FleetHost } from "./pulumi/backlogFleet";
export type { HostPresence } from "./pulumi/hostSettings";
export { DEBIAN_12_SERVICES } from "./core/converge";
export type { ConflictMode, HostChanges, ServiceNames } from "./core/converge";
export type { ServiceAction } from "./core/plan";

// Fleet rollout: batches of hosts.
export { DEFAULT_MAX_PARALLEL, RolloutError } from "./core/rollout";
export type { HostRollout, MaxParallel, RolloutInput } from "./core/rollout";

// Profile and rules.
export {
  DEFAULTS,
  INPUT_RULES,
  MACHINE_GLOBAL_SYSCTLS,
  NETDEV_MAX_BACKLOG,
  ProfileError,
  SOMAXCONN,
  TCP_MAX_SYN_BACKLOG,
  appBacklogs,
  checkProfile,
  defineProfile,
  kernelTargets,
  rules,
  validateProfile,
} from "./core/profile";
export type {
  AppBacklog,
  BacklogProfile,
  ExtraDirective,
  KernelTarget,
  KernelValues,
  Listener,
  ListenerInput,
  Mode,
  NetdevMaxBacklogInput,
  Pm,
  PmInput,
  PmStyle,
  Pool,
  PoolInput,
  PoolListen,
  Problem,
  ProfileInput,
  Rule,
  SysctlKey,
  Sysctls,
  ValueSource,
} from "./core/profile";

// Rendering: the generated files and where they go on a host.
export { DEBIAN_12_PATHS, SYSCTL_DROPIN_PATH, debianPaths, render } from "./core/render";
export type { HostPaths, RenderOptions, RenderedFile } from "./core/render";

// Shell quoting.
export { quote } from "./core/shell";

// Verification: parse what a host reports, compare it with what the profile expects.
export {
  compare,
  expectedValues,
  formatMismatchTable,
  isVerifyParseError,
  kernelBacklog,
  parseSs,
  parseSysctlOutput,
  phpFpmDefaultBacklog,
  phpFpmListenArg,
  phpVersionOfUnit,
  socketMatches,
} from "./core/verify";
export type {
  ComparisonRow,
  EffectiveValues,
  ExpectedValue,
  HostComparison,
  ListeningSocket,
  PhpVersion,
  SocketSelector,
  VerifyParseError,
} from "./core/verify";
export type { SysctlConflict, SysctlTool } from "./core/sysctlSources";

// The standalone script (applies and verifies on the host itself: AWS user data, SSM, by hand).
export { STANDALONE_EXIT, standaloneScript } from "./core/standalone";
export type { StandaloneOptions } from "./core/standalone";

// Transport: SSH connection types and host keys.
export { parseHostKey, sshTarget } from "./transport/ssh";
export type { HostKey, SshConnection } from "./transport/ssh";
