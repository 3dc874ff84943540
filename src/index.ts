/**
 * pulumi-backlog: keep a Linux host's listen-backlog settings consistent end to end, and prove it.
 *
 * Components: {@link BacklogHost} (one host), {@link BacklogFleet} (many hosts, one profile).
 * AWS (EC2 by tag, launch-template user data, SSM): import `./aws` (kept apart so that programs
 * that do not use AWS never load @pulumi/aws).
 * Pure core: profile and rules ({@link defineProfile}, {@link rules}), rendering ({@link render}),
 * shell quoting ({@link quote}), verification parsing ({@link parseSs}, {@link compare}).
 *
 * @module pulumi-backlog
 */
export * from "./pulumi/backlogFleet";
export * from "./pulumi/backlogHost";
export { CONFLICT_MODES, ConflictMode, DEBIAN_12_SERVICES, ServiceNames, STATE_DIR, bootOverrides, conflictMode, decide } from "./core/converge";
export * from "./core/sysctlSources";
export * from "./core/profile";
export * from "./core/render";
export * from "./core/shell";
export { SshConnection, parseHostKey, sshError, sshTarget } from "./transport/ssh";
export * from "./core/verify";
export * from "./core/standalone";
