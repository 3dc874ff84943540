/**
 * What the incident bench runs inside the lab host (pure: builds shell scripts and file contents;
 * incident.ts sends them with `lab exec NAME -- sh -c SCRIPT`). Kept in one place so the report can
 * show exactly what ran.
 */

/** The untuned baseline of the incident (docs/incident.md, step 1). */
export const BASELINE = Object.freeze({
  somaxconn: 16,
  listenBacklog: 8,
  children: 2,
});

/** The load: the same for "before" and "after", bounded in time and count, loopback only. */
export const LOAD = Object.freeze({
  threads: 2,
  connections: 300,
  duration: "5s",
  /** Hard limit for the wrk process (coreutils `timeout`), seconds. */
  killAfterSeconds: 60,
  port: 8080,
  path: "/slow.php",
});

export const PHP_SOCKET = "/run/php/php8.2-fpm.sock";
export const SLOW_PHP_PATH = "/var/www/html/slow.php";
export const BASELINE_NGINX_PATH = "/etc/nginx/conf.d/incident.conf";
export const WWW_POOL_PATH = "/etc/php/8.2/fpm/pool.d/www.conf";
export const LUA_PATH = "/root/incident-count.lua";
export const ACCESS_LOG = "/var/log/nginx/access.log";
export const ERROR_LOG = "/var/log/nginx/error.log";
export const EAGAIN = "Resource temporarily unavailable";

/** The profile applied with `pulumi up` for "after" (the program's `backlog:profile`). */
export const AFTER_PROFILE = Object.freeze({
  name: "incident",
  backlog: 4096,
  pools: [{ name: "www", listen: PHP_SOCKET, pm: { style: "static", maxChildren: 20 } }],
  listeners: [{ listen: LOAD.port, pool: "www" }],
});

/** The PHP script under load: ~50 ms per request. */
export const SLOW_PHP = `<?php
// incident bench: one request keeps a php-fpm worker busy for about 50 ms
usleep(50000);
echo "ok\\n";
`;

/** php-fpm pool www of the baseline (replaces Debian's www.conf). */
export const BASELINE_POOL = `; incident bench baseline (untuned), written by hand with lab exec
[www]
user = www-data
group = www-data
listen = ${PHP_SOCKET}
listen.owner = www-data
listen.group = www-data
listen.backlog = ${BASELINE.listenBacklog}
pm = static
pm.max_children = ${BASELINE.children}
`;

/** nginx server of the baseline: port 8080, .php to the pool's socket, default backlog (511 → capped). */
export const BASELINE_NGINX = `# incident bench baseline (untuned), written by hand with lab exec
server {
    listen ${LOAD.port};
    root /var/www/html;
    index index.php index.html;

    location ~ \\.php$ {
        try_files $fastcgi_script_name =404;
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass unix:${PHP_SOCKET};
    }
}
`;

/**
 * wrk Lua script: counts responses by HTTP status across threads and prints them with the
 * latency percentiles and socket errors, one `INCIDENT key value...` line each, after the run.
 */
export const WRK_LUA = `-- incident bench: count responses by status (all threads) and print percentiles
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + v end
  end
  for k, v in pairs(all) do io.write(string.format("INCIDENT status %d %d\\n", k, v)) end
  for _, p in ipairs({50, 90, 99}) do
    io.write(string.format("INCIDENT p%d_us %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("INCIDENT max_us %d\\n", latency.max))
  io.write(string.format("INCIDENT requests %d\\n", summary.requests))
  io.write(string.format("INCIDENT duration_us %d\\n", summary.duration))
  local e = summary.errors
  io.write(string.format("INCIDENT errors %d %d %d %d %d\\n", e.connect, e.read, e.write, e.status, e.timeout))
end
`;

/** Single-quotes a string for sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** sh: write `content` to `path` (mode 0644) atomically enough for this purpose. */
function writeFile(path: string, content: string): string {
  return `printf '%s' ${shQuote(content)} > ${path}.incident-tmp && chmod 0644 ${path}.incident-tmp && mv ${path}.incident-tmp ${path}`;
}

/** Step 1: the untuned baseline, then restart both services so their sockets get the small backlog. */
export function baselineScript(): string {
  return [
    "set -eu",
    `sysctl -w net.core.somaxconn=${BASELINE.somaxconn}`,
    writeFile(SLOW_PHP_PATH, SLOW_PHP),
    writeFile(WWW_POOL_PATH, BASELINE_POOL),
    writeFile(BASELINE_NGINX_PATH, BASELINE_NGINX),
    writeFile(LUA_PATH, WRK_LUA),
    "php-fpm8.2 -t",
    "nginx -t",
    "systemctl restart php8.2-fpm nginx",
    "systemctl is-active php8.2-fpm nginx",
  ].join("\n");
}

/**
 * Step 2a: take the baseline's nginx server away before the deployment (the profile's listener
 * uses the same port). No reload here: the running socket stays as it was until the deployment.
 */
export function removeBaselineNginxScript(): string {
  return `set -eu\nrm -f ${BASELINE_NGINX_PATH}\nnginx -t`;
}

/** The wrk command line of one load run. */
export function wrkCommand(): string {
  const url = `http://127.0.0.1:${LOAD.port}${LOAD.path}`;
  return `timeout ${LOAD.killAfterSeconds} wrk -t${LOAD.threads} -c${LOAD.connections} -d${LOAD.duration} --latency -s ${LUA_PATH} ${url}`;
}

/**
 * One load run, the same before and after: read the kernel values and the listening sockets
 * (Send-Q = effective backlog), empty the nginx logs, run wrk, wait until the access log stops
 * growing (requests still in flight when wrk stops), then count statuses in the access log
 * (Debian's default `combined` format: status is field 9) and EAGAIN lines in the error log.
 * Output: sections that start with `@@@ NAME` (see incident-parse.ts).
 */
export function loadScript(): string {
  return [
    "set -u",
    "echo '@@@ sysctl'; sysctl -n net.core.somaxconn net.ipv4.tcp_max_syn_backlog",
    "echo '@@@ ssx'; ss -H -l -n -x",
    "echo '@@@ sst'; ss -H -l -n -t",
    "echo '@@@ workers'; pgrep -c -f '^php-fpm: pool www' || true",
    `: > ${ACCESS_LOG}; : > ${ERROR_LOG}`,
    `echo '@@@ wrk'; ${wrkCommand()} 2>&1; echo "INCIDENT wrk_exit $?"`,
    // settle: at most 10 s, until the line count is the same twice 0.5 s apart
    `prev=-1; i=0; while n=$(wc -l < ${ACCESS_LOG}); [ "$n" != "$prev" ] && [ $i -lt 20 ]; do prev=$n; i=$((i+1)); sleep 0.5; done`,
    `echo '@@@ access'; awk '{ print $9 }' ${ACCESS_LOG} | sort | uniq -c`,
    `echo '@@@ eagain'; grep -c ${shQuote(EAGAIN)} ${ERROR_LOG} || true`,
    `echo '@@@ errorlog'; grep -m 2 ${shQuote(EAGAIN)} ${ERROR_LOG} || true; grep -v ${shQuote(EAGAIN)} ${ERROR_LOG} | head -n 5 || true`,
    "echo '@@@ end'",
  ].join("\n");
}

/** Facts about the host for the report. */
export function factsScript(): string {
  return [
    "echo '@@@ nproc'; nproc",
    "echo '@@@ kernel'; uname -r",
    "echo '@@@ os'; . /etc/os-release && echo \"$PRETTY_NAME\"",
    "echo '@@@ nginx'; nginx -v 2>&1",
    "echo '@@@ php'; php-fpm8.2 -v | head -n 1",
    "echo '@@@ wrk'; wrk -v 2>&1 | head -n 1",
    "echo '@@@ end'",
  ].join("\n");
}
