/**
 * The deployment program (`pulumi up` in this folder, `npm run demo`): one backlog profile applied
 * to a fleet of hosts, read from stack configuration (namespace `backlog`; see docs/configuration.md):
 *
 *   backlog:profile    the profile (required): name, backlog, optional overrides, pools, listeners
 *   backlog:hosts      hosts: [{ name, host, port?, user?, sudo?, hostKey, privateKeyPath, proxy? }]; or
 *   backlog:inventory  a JSON file with such hosts (default .lab/inventory.json, what `npm run lab -- up` writes)
 *   backlog:services   php-fpm/nginx unit and binary names (default Debian 12)
 *   backlog:onGone     "forget" (default) or "fail": a host that left the inventory and cannot be reached
 *   backlog:conflicts  "report" (default) or "neutralize": a line of another sysctl file that undoes the
 *                      drop-in is reported (warning, output sysctlConflicts), or also commented out
 *                      (destroy puts it back); see docs/sysctl.md
 *   backlog:rollout    { maxParallel?: number | "N%", maxFailedHosts?: number } (default: all hosts at once
 *                      when no service needs more than a relisten, else 25 % of the hosts at a time; stop
 *                      after the first batch with a failed host)
 */
import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { BacklogFleet, type FleetHost, type ProfileInput, type ServiceNames } from "./src";
import { toRollout } from "./src/core/rollout";
import { maxStartupsOf } from "./src/transport/ssh";

/** Where to reach a host, and with which key (read from privateKeyPath, kept as a secret). */
interface Endpoint {
  host: string;
  port?: number;
  user?: string;
  hostKey: string;
  privateKeyPath: string;
  /** Seconds one SSH call may take (connection and script together). Default 300. */
  scriptTimeoutSeconds?: number;
  /** Of a bastion: how many handshakes with it at once (default 8, under sshd's MaxStartups 10; see SshConnection.maxStartups). */
  maxStartups?: number;
}

interface HostEntry extends Endpoint {
  name: string;
  /** Run through `sudo -n` (default: when user is not root). */
  sudo?: boolean;
  /** A bastion to hop through. */
  proxy?: Endpoint;
  /**
   * Whether the machine is there (default "present"): "stopped" keeps its last deploy and touches
   * nothing, "gone" forgets it without SSH (what ec2Hosts sets for stopped / terminated instances;
   * see docs/fleets.md).
   */
  presence?: "present" | "stopped" | "gone";
}

const config = new pulumi.Config("backlog");
const profile = config.requireObject<ProfileInput>("profile");
const services = config.getObject<Partial<ServiceNames>>("services");
const onGone = config.get("onGone");
if (onGone !== undefined && onGone !== "forget" && onGone !== "fail") {
  throw new Error(`backlog:onGone ${JSON.stringify(onGone)}: must be "forget" or "fail"`);
}
// Checked here too, so that a mistake names the configuration key.
const conflicts = config.get("conflicts");
if (conflicts !== undefined && conflicts !== "report" && conflicts !== "neutralize") {
  throw new Error(`backlog:conflicts ${JSON.stringify(conflicts)}: must be "report" or "neutralize"`);
}
const rolloutPolicy = toRollout(config.getObject<unknown>("rollout"), "backlog:rollout");

function readHosts(): HostEntry[] {
  const explicit = config.getObject<HostEntry[]>("hosts");
  if (explicit) return explicit;
  const path = resolve(config.get("inventory") ?? ".lab/inventory.json");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`backlog:inventory: cannot read ${path} (${(err as Error).message}); start lab hosts with 'npm run lab -- up' or set backlog:hosts`);
  }
  const hosts = JSON.parse(text) as HostEntry[];
  if (!Array.isArray(hosts)) throw new Error(`backlog:inventory: ${path} must hold a JSON array of hosts`);
  return hosts;
}

function endpoint(e: Endpoint, where: string) {
  for (const field of ["host", "hostKey", "privateKeyPath"] as const) {
    if (typeof e[field] !== "string" || e[field] === "") {
      throw new Error(`backlog ${where}.${field}: required (a non-empty string)`);
    }
  }
  if (e.scriptTimeoutSeconds !== undefined && (!Number.isInteger(e.scriptTimeoutSeconds) || e.scriptTimeoutSeconds < 10 || e.scriptTimeoutSeconds > 3600)) {
    throw new Error(`backlog ${where}.scriptTimeoutSeconds ${JSON.stringify(e.scriptTimeoutSeconds)}: must be a whole number of seconds from 10 to 3600`);
  }
  if (e.maxStartups !== undefined) {
    if (!where.endsWith(".proxy")) throw new Error(`backlog ${where}.maxStartups ${JSON.stringify(e.maxStartups)}: only a proxy (bastion) takes it`);
    try {
      maxStartupsOf(e); // the transport's own rule
    } catch (err) {
      throw new Error(`backlog ${where}.maxStartups: ${(err as Error).message}`);
    }
  }
  return {
    host: e.host,
    port: e.port,
    user: e.user,
    hostKey: e.hostKey,
    privateKey: pulumi.secret(readFileSync(e.privateKeyPath, "utf8")),
    ...(e.scriptTimeoutSeconds !== undefined ? { scriptTimeoutSeconds: e.scriptTimeoutSeconds } : {}),
    ...(e.maxStartups !== undefined ? { maxStartups: e.maxStartups } : {}),
  };
}

const hosts: FleetHost[] = readHosts().map((h, i) => {
  if (typeof h.name !== "string" || h.name === "") throw new Error(`backlog hosts[${i}].name: required (a non-empty string)`);
  if (h.presence !== undefined && !["present", "stopped", "gone"].includes(h.presence)) {
    throw new Error(`backlog hosts[${i}].presence ${JSON.stringify(h.presence)} (host ${h.name}): must be "present", "stopped" or "gone"`);
  }
  return {
    name: h.name,
    ...(h.presence !== undefined ? { presence: h.presence } : {}),
    connection: {
      ...endpoint(h, `hosts[${i}]`),
      sudo: h.sudo,
      proxy: h.proxy ? endpoint(h.proxy, `hosts[${i}].proxy`) : undefined,
    },
  };
});

const fleet = new BacklogFleet("backlog", {
  hosts,
  profile,
  services,
  rollout: { maxParallel: rolloutPolicy.maxParallel, maxFailedHosts: rolloutPolicy.maxFailedHosts },
  ...(onGone !== undefined ? { onGone } : {}),
  ...(conflicts !== undefined ? { conflicts } : {}),
});

/** Per host and setting: expected, effective, ok. */
export const verification = fleet.verification;
/** Per host: whether it matches the profile after this run (true once its apply verified; unknown at preview for a host this run changes). */
export const inSync = fleet.inSync;
/** Per host: whether it matched the profile when this run probed it, before any change (false: drift or a changed profile). */
export const inSyncBefore = fleet.inSyncBefore;
/** Per host: whether this run changes it (at preview), or changed it (after up). */
export const changed = fleet.changed;
/** Per host and systemd unit: what this run does to the service (none, relisten, reload, restart). */
export const actions = fleet.actions;
/** The rollout: host names, batch after batch. */
export const rollout = fleet.rollout;
/** Hosts whose machine is not there: "stopped" (kept as last deployed, not touched) or "gone" (forgotten without SSH). */
export const absent = fleet.absent;
const byHost = <T>(pick: (h: (typeof fleet.hosts)[string]) => pulumi.Output<T>) =>
  pulumi.all(Object.fromEntries(Object.entries(fleet.hosts).map(([n, h]) => [n, pick(h)])));
/**
 * Per host: what this run changes (at preview) or changed (after up): values `current → wanted`,
 * files with a unified diff, files given back, and the action per service with its reason. Empty
 * lists for a host that needed nothing.
 */
export const changes = byHost((h) => h.changes);
/**
 * Per host: each line of another sysctl file that undoes the drop-in (file, line, key, value, the
 * tools that let it win: systemd-sysctl, sysctl --system, sysctl -p) and whether this run
 * neutralized it. Empty lists when none.
 */
export const sysctlConflicts = byHost((h) => h.sysctlConflicts);
/** Per host and unit: what the last apply really did (`restart (fallback: …)` when a relisten could not work). */
export const applied = byHost((h) => h.applied);
