/**
 * Converge: from a profile and what a probe read on a host, decide what the host needs (pure).
 * The result is everything the effectful shell needs: the apply plan (files, services and what
 * to do with them), the values verification expects, whether the host already matches (drift),
 * and the boot-time winner of each managed kernel key.
 */
import { basename } from "path";
import { ApplyPlan, HostReport, ManagedService, contentHash, effectiveOf } from "./plan";
import { BacklogProfile, KernelValues, SOMAXCONN, SysctlKey, kernelTargets } from "./profile";
import { HostPaths, RenderedFile, render, resolvePaths } from "./render";
import { ComparisonRow, ExpectedValue, compare, expectedValues } from "./verify";

/** How services are named and tested on the host's distribution. */
export interface ServiceNames {
  /** systemd unit of php-fpm. Debian/Ubuntu: `php8.2-fpm`; RHEL/Fedora: `php-fpm`. */
  phpFpmUnit: string;
  /** php-fpm binary, used for `-t`. Debian/Ubuntu: `php-fpm8.2`; RHEL/Fedora: `php-fpm`. */
  phpFpmBinary: string;
  /** systemd unit of nginx. */
  nginxUnit: string;
  /** nginx binary, used for `-t`. */
  nginxBinary: string;
}

/** Debian 12 names. */
export const DEBIAN_12_SERVICES: ServiceNames = Object.freeze({
  phpFpmUnit: "php8.2-fpm",
  phpFpmBinary: "php-fpm8.2",
  nginxUnit: "nginx",
  nginxBinary: "nginx",
});

/**
 * The service names with defaults filled in, each checked (they reach systemctl and a shell, quoted,
 * but a name that cannot be a unit or a binary is a mistake to report, not to run).
 *
 * @throws an Error naming the field and the value.
 */
export function serviceNames(names?: Partial<ServiceNames>): ServiceNames {
  const all: ServiceNames = { ...DEBIAN_12_SERVICES, ...(names ?? {}) };
  for (const [k, v] of Object.entries(all)) {
    if (typeof v !== "string" || !/^[A-Za-z0-9@_.+-]{1,128}$/.test(v)) {
      throw new Error(`services.${k} ${JSON.stringify(v)}: must be a unit or binary name (1-128 letters, digits, @ _ . + -)`);
    }
  }
  return all;
}

/** Where the library keeps a host's originals (files and kernel values before the first deploy). */
export const STATE_DIR = "/var/lib/pulumi-backlog";

/** Everything one host needs, decided from the profile and the host's probe. */
export interface HostDecision {
  /** Files, kernel keys and services the apply script works on. */
  plan: ApplyPlan;
  /** What verification expects after the apply. */
  expected: ExpectedValue[];
  /** The host as it is now, against {@link expected}. */
  current: ComparisonRow[];
  /** True when every file has the wanted content and every value is as expected: nothing to do. */
  inSync: boolean;
  /** Human-readable reasons why the host is not in sync (drift or a changed profile). */
  reasons: string[];
  /** Fingerprint of what is wanted (files and expected values), for change detection. */
  desiredHash: string;
  /** Kernel values the host had before the first deploy (the ones destroy puts back). */
  before: KernelValues;
  /** Files in the sysctl load order that would override a managed key at boot. */
  bootOverrides: BootOverride[];
}

/** A file that sets a managed kernel key and is read after the library's drop-in at boot. */
export interface BootOverride {
  key: string;
  file: string;
  line: string;
}

/** The kernel keys this profile manages. */
export function managedKeys(profile: BacklogProfile): SysctlKey[] {
  return kernelTargets(profile).map((t) => t.key);
}

/**
 * The files of `sources` (`file:line` as grep prints them) that systemd-sysctl reads after
 * `dropIn` at boot and that set one of `keys`. systemd-sysctl sorts all files by name across
 * /etc, /run, /usr/local/lib and /usr/lib (for equal names the first directory wins) and applies
 * them in that order, so the last assignment of a key wins. `/etc/sysctl.conf` counts only through
 * a sysctl.d link to it (Debian's 99-sysctl.conf), which appears in `sources` under the link's name.
 */
export function bootOverrides(sources: readonly string[], dropIn: string, keys: readonly string[]): BootOverride[] {
  const ours = basename(dropIn);
  const out: BootOverride[] = [];
  const seenNames = new Map<string, string>();
  for (const source of sources) {
    const m = /^([^:]+):(.*)$/.exec(source);
    if (!m) continue;
    const [, file, line] = m as unknown as [string, string, string];
    if (file === "/etc/sysctl.conf" || file === dropIn) continue;
    const name = basename(file);
    const first = seenNames.get(name);
    if (first !== undefined && first !== file) continue; // shadowed by an equal name in an earlier directory
    seenNames.set(name, file);
    if (name === ours) continue; // same name as ours in another directory: ours (/etc) shadows it
    const key = /^\s*-?\s*([a-z0-9_./]+)\s*=/.exec(line)?.[1]?.replace(/\//g, ".");
    if (key && keys.includes(key) && name > ours) {
        out.push({ key, file, line: line.trim() });
    }
  }
  return out;
}

/**
 * The host's own value of each key, the one mode `atLeast` never lowers: the running value when
 * it differs from what the last deploy set (someone changed it since, by hand or by another tool);
 * otherwise the own value the last deploy assumed (kept on the host), or the value from before the
 * first deploy. So a value this library raised is not taken for the host's own (lowering the
 * profile lowers the host again), while a value raised by hand stays the host's own deploy after
 * deploy.
 */
export function hostOwnValues(keys: readonly SysctlKey[], report: Pick<HostReport, "sysctls" | "before" | "applied" | "own">): KernelValues {
  const own: Partial<Record<SysctlKey, number>> = {};
  for (const k of keys) {
    const now = report.sysctls[k];
    const applied = report.applied[k];
    own[k] = applied !== undefined && now === applied ? (report.own[k] ?? report.before[k] ?? now) : now;
  }
  return own;
}

/** Inputs of {@link decide}. */
export interface DecideOptions {
  paths?: Partial<HostPaths>;
  services?: Partial<ServiceNames>;
  /** Name of the state directory entry for this host (the resource's name). */
  stateName: string;
}

/**
 * Decides what a host needs. `report` is what {@link probeScript} printed on it. Kernel values
 * come from the host: in mode `atLeast` a running value above the profile is kept (and written
 * to the drop-in so boot keeps it too); the originals kept since the first deploy are what destroy
 * restores.
 */
export function decide(profile: BacklogProfile, report: HostReport, options: DecideOptions): HostDecision {
  const keys = managedKeys(profile);
  const missing = keys.filter((k) => report.sysctls[k] === undefined);
  if (missing.length > 0) {
    throw new Error(
      `${missing.join(", ")}: not exposed in /proc/sys on this host. The host is probably a container in a network ` +
      "namespace owned by an unprivileged user namespace, where the kernel hides these keys; tune it from the machine that owns the namespace.");
  }
  const global = kernelTargets(profile).filter((t) => t.scope === "machine").map((t) => t.key);
  if (global.length > 0 && report.container !== "none" && report.container !== "") {
    throw new Error(
      `${global.join(", ")}: global to the machine, not to the host's network namespace, and this host is a container ` +
      `(${report.container}): setting it here would change every container on the machine, or fail. Set it on the machine itself, ` +
      "or leave netdevMaxBacklog out of this profile.");
  }
  const before: Partial<Record<SysctlKey, number>> = {};
  for (const k of keys) before[k] = report.before[k] ?? report.sysctls[k];
  const own = hostOwnValues(keys, report);

  const paths = resolvePaths(options.paths);
  const names = serviceNames(options.services);
  const files: RenderedFile[] = render(profile, { paths, hostBefore: own });
  const expected = expectedValues(profile, own);
  const current = compare(expected, effectiveOf(report));

  const reasons: string[] = [];
  const changedKinds = new Set<string>();
  for (const f of files) {
    const have = report.files[f.path];
    if (have !== contentHash(f.content)) {
      changedKinds.add(f.kind);
      reasons.push(have === null || have === undefined ? `${f.path} is missing` : `${f.path} differs from the profile`);
    }
  }
  // Files an earlier deploy managed that this profile no longer has go back to their originals.
  const retired = report.managed.filter((path) => !files.some((f) => f.path === path)).sort();
  for (const path of retired) {
    reasons.push(`${path} is no longer in the profile: its original comes back`);
    if (path.startsWith(paths.phpFpmPoolDir.replace(/\/+$/, "") + "/")) changedKinds.add("php-fpm-pool");
    if (path === paths.nginxConf) changedKinds.add("nginx");
  }
  const badRows = current.filter((r) => !r.ok);
  for (const r of badRows) {
    reasons.push(`${r.setting}: expected ${r.comparison === "atLeast" ? ">=" : ""}${r.expected}, host has ${r.effective ?? "nothing"}`);
  }
  const somaxconnChanges = current.some((r) => r.setting === SOMAXCONN && !r.ok);
  const socketBad = (service: string) => badRows.some((r) => expected.find((e) => e.setting === r.setting)?.target.kind === "socket" &&
    r.setting.startsWith(service === "php-fpm" ? "php-fpm" : "nginx"));

  const services: ManagedService[] = [];
  if (profile.pools.length > 0 || changedKinds.has("php-fpm-pool")) {
    const restart = changedKinds.has("php-fpm-pool") || somaxconnChanges || socketBad("php-fpm");
    // A reload keeps the inherited listening socket (and its backlog): only a restart listens again.
    services.push({ unit: names.phpFpmUnit, test: [names.phpFpmBinary, "-t"], action: restart ? "restart" : "none" });
  }
  if (profile.listeners.length > 0 || changedKinds.has("nginx")) {
    // nginx re-listens on reload only when backlog= itself changed; a somaxconn change needs a restart.
    const restart = changedKinds.has("nginx") || somaxconnChanges || socketBad("nginx");
    services.push({ unit: names.nginxUnit, test: [names.nginxBinary, "-t"], action: restart ? "restart" : "none" });
  }

  const plan: ApplyPlan = {
    stateDir: `${STATE_DIR}/${options.stateName}`,
    files: files.map(({ path, content, mode, owner, group }) => ({ path, content, mode, owner, group })),
    sysctlFile: paths.sysctlDropIn,
    sysctlKeys: keys,
    services,
    retired,
    // What the next deploy should take for the host's own value while nobody changes it: the value
    // this deploy kept (mode atLeast, host above the profile), else the original from before the
    // first deploy (so after a deploy in mode exact a value once raised by hand is forgotten).
    hostOwn: Object.fromEntries(kernelTargets(profile, own).map((t) => [t.key, t.keptHostValue ? t.value : before[t.key]])
      .filter(([, v]) => v !== undefined)) as Record<string, number>,
  };
  const desiredHash = contentHash(JSON.stringify({ files: plan.files, expected, units: services.map((s) => s.unit) }));
  return {
    plan,
    expected,
    current,
    inSync: reasons.length === 0,
    reasons,
    desiredHash,
    before,
    bootOverrides: bootOverrides(report.sysctlSources, paths.sysctlDropIn, keys),
  };
}
