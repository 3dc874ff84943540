/** Shared inputs for the unit tests. */
import type { ProfileInput } from "../../src/core/profile";

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
