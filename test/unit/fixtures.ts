/** Shared inputs for the unit tests (and the integration tests, which import them from here). */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { contentHash } from "../../src/core/plan";
import type { ProfileInput } from "../../src/core/profile";
import { type HostReport, emptyReport } from "../../src/core/report";
import type { ListeningSocket } from "../../src/core/verify";

/** The incident's host, fixed: one unix-socket pool behind nginx, plus a TCP pool and IPv6. */
export const WEB: ProfileInput = {
  name: "web",
  backlog: 1024,
  pools: [
    {
      name: "app",
      listen: "/run/php/app.sock",
      pm: { maxChildren: 20 },
      extra: { "php_admin_value[memory_limit]": "128M", request_terminate_timeout: "30s", "env[PATH]": "/usr/local/bin:/usr/bin:/bin" },
    },
    { name: "api", listen: "127.0.0.1:9001", backlog: 2048, pm: { style: "ondemand", maxChildren: 8, processIdleTimeoutSeconds: 20 } },
  ],
  listeners: [
    { listen: 80, serverName: ["example.com", "www.example.com"], pool: "app", defaultServer: true },
    { listen: "0.0.0.0:80", serverName: "api.example.com", pool: "api" },
    { listen: "[::]:80", serverName: "example.com", pool: "app" },
    { listen: "127.0.0.1:8080", backlog: 512, pool: "app", root: "/srv/www/app" },
  ],
};

/** Smallest valid profile: kernel values only. */
export const KERNEL_ONLY: ProfileInput = { name: "kernel-only", backlog: 4096 };

/** Exact mode with explicit overrides and the machine-global opt-in. */
export const EXACT: ProfileInput = {
  name: "exact",
  backlog: 511,
  mode: "exact",
  somaxconn: 8192,
  tcpMaxSynBacklog: 16384,
  netdevMaxBacklog: { value: 5000, machineGlobal: true },
  pools: [{ name: "static-pool", listen: "9000", backlog: 8192, user: "app", group: "app", pm: { style: "static", maxChildren: 12, maxRequests: 500 } }],
  listeners: [{ listen: "[::1]:8443", pool: "static-pool" }],
};

/** Debian 12's php-fpm socket, where the stock pool `www` listens (as on the lab hosts). */
export const DEBIAN_FPM_SOCKET = "/run/php/php8.2-fpm.sock";

/** A Debian 12 host as installed: the pool `www` on its socket behind nginx on port 8080. */
export const DEBIAN_WWW: ProfileInput = {
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: DEBIAN_FPM_SOCKET }],
  listeners: [{ listen: 8080, pool: "www" }],
};

/** Two pools (unix socket and TCP, one ondemand) behind two nginx listeners, one of them IPv6. */
export const FLEET: ProfileInput = {
  name: "fleet",
  backlog: 16384,
  pools: [
    { name: "www", listen: DEBIAN_FPM_SOCKET },
    { name: "api", listen: "127.0.0.1:9001", backlog: 2048, pm: { style: "ondemand", maxChildren: 4 } },
  ],
  listeners: [
    { listen: 8080, pool: "www", defaultServer: true },
    { listen: "[::]:8081", pool: "api", backlog: 1024 },
  ],
};

/** A probe report; by default a fresh host (somaxconn 4096, nothing deployed). */
export function probeReport(over: Partial<HostReport> = {}): HostReport {
  return {
    ...emptyReport(),
    sysctls: { "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 2048 },
    container: "none",
    complete: true,
    ...over,
  };
}

/** The files' hashes and contents as a probe reports them (null: absent). */
export function filesOf(files: Record<string, string | null>): Pick<HostReport, "files" | "contents"> {
  return {
    files: Object.fromEntries(Object.entries(files).map(([p, c]) => [p, c === null ? null : contentHash(c)])),
    contents: Object.fromEntries(Object.entries(files).filter((e): e is [string, string] => e[1] !== null)),
  };
}

/** A listening unix socket as `ss` reports it (parseSs), by default php-fpm's Debian 12 socket. */
export function unixSocket(backlog: number, inode = 111, path = DEBIAN_FPM_SOCKET): ListeningSocket {
  return { kind: "unix", netid: "u_str", recvQ: 0, backlog, local: path, host: null, port: null, path, inode };
}

/** A host's place in a fleet's rollout: batch 2 of 3, one host after it, no failure tolerated. */
export const ROLLOUT_PLACE = { batch: 2, batches: 3, later: ["web3"], laterCount: 1, maxFailedHosts: 0 };

/** HostSettings' `run` input of a run that changes nothing (state generation 2). */
export const EMPTY_RUN = { generation: 2, steps: {}, retired: [], changes: { settings: [], files: [], retired: [], services: [], recovers: false } };

const tempDirs: string[] = [];

/**
 * A new directory in the system's temp folder (`backlog-<name>-XXXXXX`), removed with what it holds
 * after the last test of the file that made it.
 */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `backlog-${name}-`));
  tempDirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
