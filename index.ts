/**
 * The deployment program (`pulumi up` in this folder, `npm run demo`): one backlog profile applied
 * to a fleet of hosts, read from stack configuration (namespace `backlog`; see README "Configuration"):
 *
 *   backlog:profile    the profile (required): name, backlog, optional overrides, pools, listeners
 *   backlog:hosts      hosts: [{ name, host, port?, user?, hostKey, privateKeyPath }]; or
 *   backlog:inventory  a JSON file with such hosts (default .lab/inventory.json, what `npm run lab -- up` writes)
 *   backlog:services   php-fpm/nginx unit and binary names (default Debian 12)
 */
import * as pulumi from "@pulumi/pulumi";
import { readFileSync } from "fs";
import { resolve } from "path";
import { BacklogFleet, FleetHost, ProfileInput, ServiceNames } from "./components";

interface HostEntry {
  name: string;
  host: string;
  port?: number;
  user?: string;
  hostKey: string;
  privateKeyPath: string;
}

const config = new pulumi.Config("backlog");
const profile = config.requireObject<ProfileInput>("profile");
const services = config.getObject<Partial<ServiceNames>>("services");

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

const hosts: FleetHost[] = readHosts().map((h, i) => {
  for (const field of ["name", "host", "hostKey", "privateKeyPath"] as const) {
    if (typeof h[field] !== "string" || h[field] === "") {
      throw new Error(`backlog hosts[${i}].${field}: required (a non-empty string)`);
    }
  }
  return {
    name: h.name,
    connection: {
      host: h.host,
      port: h.port,
      user: h.user,
      hostKey: h.hostKey,
      privateKey: pulumi.secret(readFileSync(h.privateKeyPath, "utf8")),
    },
  };
});

const fleet = new BacklogFleet("backlog", { hosts, profile, services });

/** Per host and setting: expected, effective, ok. */
export const verification = fleet.verification;
/** Per host: whether it matched the profile before this run (false: drift or a changed profile). */
export const inSync = fleet.inSync;
