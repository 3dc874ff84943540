/**
 * Rendering: a {@link BacklogProfile} becomes the exact files a host gets (sysctl drop-in,
 * one php-fpm pool file per pool, one nginx file with a server block per listener). The
 * templates live in `templates/*.mustache` and are data; this module only builds their
 * views. Output is deterministic byte for byte: same profile and options, same files, same
 * order. HTML escaping is off (every value was validated against strict patterns instead).
 *
 * The only I/O is reading the template files.
 *
 * @packageDocumentation
 */

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import Mustache from "mustache";
import { type BacklogProfile, type KernelValues, type Listener, type Pool, formatPoolListen, kernelTargets } from "./profile";
import { ProfileError, Problems, isSafeAbsolutePath } from "./validation";

/**
 * Where the sysctl drop-in goes. The name sorts after `99-sysctl.conf` (Debian's link to
 * /etc/sysctl.conf) and after any `9x-*` / `zz-a…zz-o…` file: systemd-sysctl applies files
 * from /etc/sysctl.d, /run/sysctl.d and /usr/lib/sysctl.d in file-name order across the
 * directories, and the last file that sets a key wins (sysctl.d(5)).
 */
export const SYSCTL_DROPIN_PATH = "/etc/sysctl.d/zz-pulumi-backlog.conf";

/** Host paths that differ between distributions and PHP versions. */
export interface HostPaths {
  /** Absolute path of the sysctl drop-in. Default {@link SYSCTL_DROPIN_PATH}. */
  readonly sysctlDropIn: string;
  /** Directory php-fpm includes pool files from. Debian 12: `/etc/php/8.2/fpm/pool.d`. */
  readonly phpFpmPoolDir: string;
  /** Absolute path of the nginx file with the server blocks (inside `http {}`). */
  readonly nginxConf: string;
}

/** Debian 12 (bookworm): PHP 8.2, nginx 1.22 including `/etc/nginx/conf.d/*.conf`. */
export const DEBIAN_12_PATHS: HostPaths = Object.freeze({
  sysctlDropIn: SYSCTL_DROPIN_PATH,
  phpFpmPoolDir: "/etc/php/8.2/fpm/pool.d",
  nginxConf: "/etc/nginx/conf.d/pulumi-backlog.conf",
});

/**
 * Debian-family paths for another PHP version (Debian 13 ships 8.4, Ubuntu 24.04 ships 8.3).
 *
 * @param phpVersion - `MAJOR.MINOR`, e.g. `"8.4"`.
 * @throws {@link ProfileError} for anything but `MAJOR.MINOR`.
 */
export function debianPaths(phpVersion: string): HostPaths {
  if (typeof phpVersion !== "string" || !/^[5-9]\.\d{1,2}$/.test(phpVersion)) {
    throw new ProfileError(
      [
        {
          path: "phpVersion",
          value: phpVersion,
          rule: "safe-path",
          message: "must be MAJOR.MINOR, e.g. 8.2",
          fix: 'give the PHP version of the php-fpm package, e.g. "8.2"',
        },
      ],
      "render options",
    );
  }
  return Object.freeze({ ...DEBIAN_12_PATHS, phpFpmPoolDir: `/etc/php/${phpVersion}/fpm/pool.d` });
}

/** One file to place on the host. Structurally a `ManagedFile` of the host plan. */
export interface RenderedFile {
  /** Absolute path on the host. */
  readonly path: string;
  /** Exact content, UTF-8, ending with a newline. */
  readonly content: string;
  /** Octal permission bits: `"0644"` (no secrets in these files). */
  readonly mode: string;
  /** Owner user: `root`. */
  readonly owner: string;
  /** Owner group: `root`. */
  readonly group: string;
  /**
   * What the file configures, so the host plan knows what applies it: `sysctl` (load with
   * `sysctl -p`), `php-fpm-pool` (test with `php-fpm -t`, restart for socket changes),
   * `nginx` (test with `nginx -t`).
   */
  readonly kind: "sysctl" | "php-fpm-pool" | "nginx";
}

/** Options for {@link render}. */
export interface RenderOptions {
  /** Path overrides; missing ones come from {@link DEBIAN_12_PATHS}. */
  readonly paths?: Partial<HostPaths>;
  /**
   * The host's kernel values before the first deployment. In `atLeast` mode a larger host
   * value is written into the drop-in instead of the profile's (so a reboot never lowers it).
   */
  readonly hostBefore?: KernelValues;
  /** Directory with the `*.mustache` templates. Default: `templates/` of this package. */
  readonly templateDir?: string;
}

/**
 * Default template directory: `templates/` of the package, i.e. of the nearest folder above this
 * module that holds a package.json (the same from `src/core/`, the package's `dist/core/` and the
 * repository program's compiled `.build/src/core/`).
 */
export const TEMPLATE_DIR = join(packageRoot(__dirname), "templates");

function packageRoot(from: string): string {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) return resolve(from, "..", "..");
  }
}

/** Template file names under the template directory. */
export const TEMPLATES = Object.freeze({
  sysctl: "sysctl-dropin.conf.mustache",
  pool: "php-fpm-pool.conf.mustache",
  nginx: "nginx-servers.conf.mustache",
});

function template(dir: string | undefined, name: string): string {
  return readFileSync(join(dir ?? TEMPLATE_DIR, name), "utf8");
}

/** Render with HTML escaping disabled (values are validated, not escaped). */
function fill(text: string, view: object): string {
  return Mustache.render(text, view, undefined, { escape: (s: unknown) => String(s) });
}

/** Resolve and check the paths (all must be safe absolute paths). */
export function resolvePaths(paths?: Partial<HostPaths>): HostPaths {
  const out = { ...DEBIAN_12_PATHS, ...(paths ?? {}) };
  const problems = new Problems();
  for (const key of ["sysctlDropIn", "phpFpmPoolDir", "nginxConf"] as const) {
    const v: unknown = out[key];
    if (!isSafeAbsolutePath(v) || v === "/") {
      problems.add(
        `paths.${key}`,
        v,
        "safe-path",
        "must be a plain absolute path (letters, digits, _ . + - between single slashes)",
        `use e.g. ${DEBIAN_12_PATHS[key]}`,
      );
    } else if (key !== "phpFpmPoolDir" && !v.endsWith(".conf")) {
      problems.add(
        `paths.${key}`,
        v,
        "safe-path",
        "must end in .conf: systemd-sysctl and nginx's include only read *.conf",
        `use e.g. ${DEBIAN_12_PATHS[key]}`,
      );
    }
  }
  if (problems.count > 0) throw new ProfileError(problems.all, "render options");
  return Object.freeze(out);
}

const SYSCTL_COMMENTS: Record<string, string> = {
  "net.core.somaxconn": "Cap listen() applies to every backlog; >= every application backlog.",
  "net.ipv4.tcp_max_syn_backlog": "Per-listener SYN queue; >= the largest TCP listener backlog.",
  "net.core.netdev_max_backlog": "NIC input queue: MACHINE-GLOBAL (not per network namespace), explicit opt-in.",
};

/**
 * Content of the sysctl drop-in: header (generated by pulumi-backlog, profile, mode, do not
 * edit), then each managed key with a comment saying why and where its value comes from.
 */
export function renderSysctlDropIn(profile: BacklogProfile, options: RenderOptions = {}): string {
  const settings = kernelTargets(profile, options.hostBefore).map((t) => {
    const source =
      t.key === "net.core.somaxconn" ? profile.sources.somaxconn : t.key === "net.ipv4.tcp_max_syn_backlog" ? profile.sources.tcpMaxSynBacklog : "opt-in";
    const notes: string[] = [`Profile value ${t.profileValue} (${source}).`];
    if (t.keptHostValue) notes.push(`The host had ${t.hostBefore} before: mode atLeast keeps the larger value.`);
    return { key: t.key, value: t.value, comment: SYSCTL_COMMENTS[t.key], notes };
  });
  return fill(template(options.templateDir, TEMPLATES.sysctl), {
    profileName: profile.name,
    mode: profile.mode,
    settings,
  });
}

/** Content of one php-fpm pool file (`[name]` section, owned keys, pm, then extras). */
export function renderPool(profile: BacklogProfile, pool: Pool, options: Pick<RenderOptions, "templateDir"> = {}): string {
  return fill(template(options.templateDir, TEMPLATES.pool), {
    profileName: profile.name,
    name: pool.name,
    user: pool.user,
    group: pool.group,
    listen: formatPoolListen(pool.listen),
    backlog: pool.backlog,
    unix: pool.listen.kind === "unix",
    listenOwner: pool.listenOwner,
    listenGroup: pool.listenGroup,
    listenMode: pool.listenMode,
    pm: pool.pm,
    dynamic: pool.pm.style === "dynamic",
    ondemand: pool.pm.style === "ondemand",
    hasExtra: pool.extra.length > 0,
    extra: pool.extra,
  });
}

/** The text after `listen` for one server block, e.g. `0.0.0.0:80 default_server backlog=1024`. */
export function nginxListenParameters(l: Listener): string {
  return [l.address, ...(l.defaultServer ? ["default_server"] : []), ...(l.emitsBacklog ? [`backlog=${l.backlog}`] : [])].join(" ");
}

/** Content of the nginx file: one `server {}` block per listener, in profile order. */
export function renderNginx(profile: BacklogProfile, options: Pick<RenderOptions, "templateDir"> = {}): string {
  return fill(template(options.templateDir, TEMPLATES.nginx), {
    profileName: profile.name,
    servers: profile.listeners.map((l) => ({
      listen: nginxListenParameters(l),
      hasServerNames: l.serverNames.length > 0,
      serverNames: l.serverNames.join(" "),
      root: l.root,
      pool: l.pool,
      fastcgiPass: l.fastcgiPass,
    })),
  });
}

/**
 * Every file a profile puts on a host, in a fixed order: the sysctl drop-in, the pool files
 * (profile order, `<poolDir>/<name>.conf`), then the nginx file (only when there are
 * listeners). All `0644 root:root`.
 *
 * @throws {@link ProfileError} when a path option is not a safe absolute path, or a host
 *   value is not a whole number.
 */
export function render(profile: BacklogProfile, options: RenderOptions = {}): RenderedFile[] {
  const paths = resolvePaths(options.paths);
  const file = (path: string, content: string, kind: RenderedFile["kind"]): RenderedFile =>
    Object.freeze({ path, content, mode: "0644", owner: "root", group: "root", kind });
  const poolDir = paths.phpFpmPoolDir.replace(/\/+$/, "");
  return [
    file(paths.sysctlDropIn, renderSysctlDropIn(profile, options), "sysctl"),
    ...profile.pools.map((p) => file(`${poolDir}/${p.name}.conf`, renderPool(profile, p, options), "php-fpm-pool")),
    ...(profile.listeners.length > 0 ? [file(paths.nginxConf, renderNginx(profile, options), "nginx")] : []),
  ];
}
