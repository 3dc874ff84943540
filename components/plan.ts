/**
 * Host plan: the shell scripts that probe, apply, verify and restore a host, generated as plain
 * strings from plain data. Nothing here touches a host; {@link ./ssh} runs the scripts and
 * {@link parseReport} reads what they print. Every value that reaches a script goes through
 * `quote` from {@link ./shell}; file contents travel base64-encoded in here-documents.
 *
 * Report format: every script prints sections, each a line `@@ <name> [<arg>]` followed by raw
 * lines, so the parser needs no shell-side formatting (values come straight from /proc/sys and `ss`).
 */
import { createHash } from "crypto";
import { quote } from "./shell";
import { EffectiveValues, parseSs } from "./verify";

/** A file the library owns on a host. */
export interface ManagedFile {
    /** Absolute path on the host. */
    path: string;
    /** Exact content (UTF-8). */
    content: string;
    /** Octal permission bits, e.g. `"0644"`. */
    mode: string;
    /** Owner user name. */
    owner: string;
    /** Owner group name. */
    group: string;
    /**
     * Values known only on the host, when the script runs (optional: without it the content is
     * written byte for byte, as always). Each key is a placeholder that occurs in `content`
     * (`@NAME@`: capitals, digits and `_` between two `@`); its value names a shell variable that
     * the script running the apply steps has set before them (components/standalone.ts does, for
     * kernel values read on the host). As the file is written each placeholder becomes the
     * variable's value, which must be a whole number, and a line holding a placeholder whose
     * variable is empty is left out. Any other value stops the apply (exit 13, files put back).
     */
    runtimeValues?: Record<string, string>;
}

/** A service whose configuration is among the managed files. */
export interface ManagedService {
    /** systemd unit, e.g. `php8.2-fpm` or `nginx`. */
    unit: string;
    /** Command (argv) that tests the whole configuration, e.g. `["php-fpm8.2", "-t"]`. */
    test: string[];
    /** What to do after the files changed: a restart re-creates listening sockets (new backlog), a reload keeps them. */
    action: "restart" | "reload" | "none";
}

/** What one apply run does on one host. */
export interface ApplyPlan {
    /** Directory on the host that keeps what was there before the first deploy. */
    stateDir: string;
    files: ManagedFile[];
    /** The sysctl drop-in among {@link files}, loaded with `sysctl -p`; omitted when no kernel value is managed. */
    sysctlFile?: string;
    /** Kernel keys (dotted, e.g. `net.core.somaxconn`) whose values before the first deploy are kept for restore. */
    sysctlKeys: string[];
    services: ManagedService[];
    /**
     * Files an earlier deploy managed that the profile no longer has (a pool removed, say): each is
     * given back as it was before the first deploy, like destroy does for all files.
     */
    retired?: string[];
    /**
     * The host's own value of each kernel key this deploy assumed (see converge.ts `hostOwnValues`),
     * kept on the host so that the next deploy still knows a value raised by hand was the host's.
     */
    hostOwn?: Record<string, number>;
}

/** What a probe or verification reads. */
export interface ProbeSpec {
    stateDir: string;
    sysctlKeys: string[];
    paths: string[];
    units: string[];
}

/** Directories systemd-sysctl reads at boot, in precedence order for equal file names (first wins). */
export const SYSCTL_DIRS = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];

/** `/proc/sys` path of a dotted sysctl key. */
export function procPath(key: string): string {
    if (!/^[a-z0-9_]+(\.[a-z0-9_]+)+$/.test(key)) {
        throw new Error(`sysctl key ${JSON.stringify(key)} is not a dotted kernel parameter name`);
    }
    return "/proc/sys/" + key.replace(/\./g, "/");
}

/** Name under which a file's original is kept in the state directory. */
export function backupName(path: string): string {
    return createHash("sha256").update(path).digest("hex").slice(0, 16);
}

/** sha256 of a file's content, as `sha256sum` prints it. */
export function contentHash(content: string): string {
    return createHash("sha256").update(content, "utf8").digest("hex");
}

/**
 * Shell for a deliberate restart or reload of a unit. systemd refuses a fifth start within 10 s
 * (StartLimitBurst) and then leaves the unit failed, that is, down: a deploy's restart is no crash
 * loop, so the unit's start counter is reset first. The exit status is the restart's.
 */
export function serviceAction(action: "restart" | "reload", unit: string): string {
    return `systemctl reset-failed ${quote(unit)} >/dev/null 2>&1; systemctl ${action} ${quote(unit)}`;
}

const PRELUDE = ["set -u", "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "umask 022"];

/** Lines that print the current state: kernel values, managed files' hashes, sysctl.d, sockets, units. */
function observeLines(spec: ProbeSpec): string[] {
    const lines: string[] = [];
    for (const key of spec.sysctlKeys) {
        const p = procPath(key);
        lines.push(`echo ${quote("@@ sysctl " + key)}; if [ -r ${quote(p)} ]; then cat ${quote(p)}; else echo '!missing'; fi`);
    }
    for (const path of spec.paths) {
        lines.push(`echo ${quote("@@ file " + path)}; if [ -f ${quote(path)} ]; then sha256sum < ${quote(path)} | cut -c1-64; else echo '!absent'; fi`);
    }
    const keyPattern = spec.sysctlKeys.map((k) => k.replace(/\./g, "[./]")).join("|");
    if (keyPattern) {
        // Every sysctl.d file (resolved, so /lib -> /usr/lib links count once) and the lines that set a managed key.
        const globs = SYSCTL_DIRS.map((d) => `${quote(d)}/*.conf`).join(" ");
        lines.push(`echo '@@ sysctl.d'; for f in ${globs} /etc/sysctl.conf; do [ -f "$f" ] || continue; ` +
            `grep -H -E ${quote(`^[[:space:]]*-?[[:space:]]*(${keyPattern})[[:space:]]*=`)} "$f" /dev/null; done`);
    }
    lines.push("echo '@@ ss-tcp'; ss -H -l -n -t", "echo '@@ ss-unix'; ss -H -l -n -x");
    lines.push("echo '@@ container'; systemd-detect-virt --container 2>/dev/null || true");
    for (const unit of spec.units) {
        lines.push(`echo ${quote("@@ unit " + unit)}; systemctl is-active ${quote(unit)} 2>&1`);
    }
    const orig = quote(spec.stateDir + "/orig");
    lines.push(`echo '@@ before'; if [ -d ${orig} ]; then cd ${orig} && grep -H . sysctl.* 2>/dev/null; cd /; fi`);
    lines.push(`echo '@@ applied'; if [ -d ${quote(spec.stateDir)} ]; then cd ${quote(spec.stateDir)} && grep -H . applied.* own.* 2>/dev/null; cd /; fi`);
    // Every file a deploy has managed on this host (their originals are kept), one path a line.
    lines.push(`echo '@@ managed'; for f in ${orig}/*.path; do [ -f "$f" ] && { cat "$f"; echo; }; done`);
    return lines;
}

/** Script that only reads: used before an apply (to learn the host's values) and by refresh (drift). */
export function probeScript(spec: ProbeSpec): string {
    return [...PRELUDE, ...observeLines(spec), "echo '@@ end'", ""].join("\n");
}

/**
 * The lines that start decoding a file's content into `tmp` (the base64 here-document follows):
 * plain `base64 -d`, or, with {@link ManagedFile.runtimeValues}, each variable checked to be a whole
 * number (or empty) and its placeholder filled in (or its lines left out) by `sed`.
 */
function decodeLines(f: ManagedFile, tmp: string): string[] {
    const values = Object.entries(f.runtimeValues ?? {});
    if (values.length === 0) return [`base64 -d > ${tmp} <<'PULUMI_BACKLOG_B64'`];
    const lines: string[] = [];
    const edits: string[] = [];
    values.forEach(([placeholder, variable], i) => {
        if (!/^@[A-Z][A-Z0-9_]*@$/.test(placeholder)) throw new Error(`runtimeValues of ${f.path}: placeholder ${JSON.stringify(placeholder)} must look like @NAME@ (capitals, digits, _)`);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(variable)) throw new Error(`runtimeValues of ${f.path}: ${JSON.stringify(variable)} is not a shell variable name`);
        if (!f.content.includes(placeholder)) throw new Error(`runtimeValues of ${f.path}: placeholder ${placeholder} does not occur in the content`);
        lines.push(
            `case \${${variable}-} in *[!0-9]*) rollback; echo ${quote("@@ failed write " + f.path)}; echo ${quote(`${variable} is not a whole number`)}; exit 13;; esac`,
            `if [ -n "\${${variable}-}" ]; then rv${i}="s/${placeholder}/\${${variable}}/g"; else rv${i}='/${placeholder}/d'; fi`,
        );
        edits.push(`-e "$rv${i}"`);
    });
    lines.push(`base64 -d <<'PULUMI_BACKLOG_B64' | sed ${edits.join(" ")} > ${tmp}`);
    return lines;
}

/**
 * Script that applies a plan in one SSH session, in this order:
 * 1. keep the originals (first deploy only): each managed file (or the fact it was absent) and each kernel value;
 * 2. write each file next to its target and rename it into place (the previous version is kept for rollback);
 * 3. test each service's whole configuration; on failure put every file back, touch no service, exit 10;
 * 4. `sysctl -p` the drop-in (exit 11 on failure, files rolled back);
 * 5. restart or reload the services that need it (exit 12 on failure);
 * 6. print what the kernel and the sockets have now, for verification.
 */
export function applyScript(plan: ApplyPlan): string {
    const state = quote(plan.stateDir);
    const lines = [...PRELUDE,
        `state=${state}`,
        `mkdir -p "$state/orig" "$state/prev" && chmod 700 "$state"`,
        "rm -f \"$state\"/prev/*",
        "changed=''",
        "rollback() {",
        "  for b in \"$state\"/prev/*.path; do [ -f \"$b\" ] || continue; p=$(cat \"$b\"); n=${b%.path};",
        "    if [ -f \"$n.absent\" ]; then rm -f \"$p\"; else mv -f \"$n.file\" \"$p\"; fi; done",
        "}",
    ];
    for (const key of plan.sysctlKeys) {
        const name = quote("sysctl." + key);
        lines.push(`[ -f "$state/orig/"${name} ] || { cat ${quote(procPath(key))} > "$state/orig/"${name}.tmp && mv "$state/orig/"${name}.tmp "$state/orig/"${name}; }`);
    }
    for (const f of plan.files) {
        const p = quote(f.path);
        const b = backupName(f.path);
        const tmp = quote(f.path + ".pulumi-backlog.new");
        lines.push(
            `# ${f.path.replace(/[^A-Za-z0-9_./-]/g, "?")}`,
            // Original, once: the file itself (mode and owner kept) or a marker that there was none.
            `if [ ! -f "$state/orig/${b}.path" ]; then`,
            `  if [ -f ${p} ]; then cp -p ${p} "$state/orig/${b}.file"; else : > "$state/orig/${b}.absent"; fi`,
            `  printf '%s' ${p} > "$state/orig/${b}.path"`,
            "fi",
            `mkdir -p "$(dirname ${p})"`,
            ...decodeLines(f, tmp),
            Buffer.from(f.content, "utf8").toString("base64").replace(/(.{76})/g, "$1\n").replace(/\n$/, ""),
            "PULUMI_BACKLOG_B64",
            `chmod ${quote(f.mode)} ${tmp} && chown ${quote(f.owner + ":" + f.group)} ${tmp} || { rm -f ${tmp}; rollback; echo ${quote("@@ failed write " + f.path)}; exit 13; }`,
            `if [ -f ${p} ] && cmp -s ${tmp} ${p}; then rm -f ${tmp}; else`,
            `  printf '%s' ${p} > "$state/prev/${b}.path"`,
            `  if [ -f ${p} ]; then cp -p ${p} "$state/prev/${b}.file"; else : > "$state/prev/${b}.absent"; fi`,
            `  mv -f ${tmp} ${p}; changed="$changed ${b}"`,
            "fi",
        );
    }
    for (const path of plan.retired ?? []) {
        const p = quote(path);
        const b = backupName(path);
        lines.push(
            `# retired: ${path.replace(/[^A-Za-z0-9_./-]/g, "?")}`,
            `if [ -f "$state/orig/${b}.path" ]; then`,
            `  printf '%s' ${p} > "$state/prev/${b}.path"`,
            `  if [ -f ${p} ]; then cp -p ${p} "$state/prev/${b}.file"; else : > "$state/prev/${b}.absent"; fi`,
            `  if [ -f "$state/orig/${b}.absent" ]; then rm -f ${p}; else cp -p "$state/orig/${b}.file" ${p}; fi`,
            "fi",
        );
    }
    for (const s of plan.services) {
        lines.push(
            `if ! out=$(${s.test.map(quote).join(" ")} 2>&1); then rollback; echo ${quote("@@ failed test " + s.unit)}; printf '%s\\n' "$out"; exit 10; fi`,
        );
    }
    if (plan.sysctlFile) {
        lines.push(`if ! out=$(sysctl -p ${quote(plan.sysctlFile)} 2>&1); then rollback; echo '@@ failed sysctl'; printf '%s\\n' "$out"; exit 11; fi`);
        // What this deploy set: a later value that differs was set by someone else (see converge.ts).
        for (const key of plan.sysctlKeys) {
            lines.push(`cat ${quote(procPath(key))} > "$state/"${quote("applied." + key)}`);
            const own = plan.hostOwn?.[key];
            if (own !== undefined) {
                lines.push(`echo ${quote(String(Math.trunc(own)))} > "$state/"${quote("own." + key)}`);
            }
        }
    }
    for (const s of plan.services) {
        if (s.action === "none") continue;
        lines.push(
            `if ! out=$(${serviceAction(s.action, s.unit)} 2>&1); then echo ${quote(`@@ failed ${s.action} ${s.unit}`)}; printf '%s\\n' "$out"; ` +
            `systemctl status --no-pager ${quote(s.unit)} 2>&1 | tail -n 20; exit 12; fi`,
        );
    }
    lines.push("rm -f \"$state\"/prev/*");
    for (const path of plan.retired ?? []) {
        lines.push(`rm -f "$state/orig/${backupName(path)}".*`);
    }
    lines.push(...observeLines({ stateDir: plan.stateDir, sysctlKeys: plan.sysctlKeys, paths: plan.files.map((f) => f.path), units: plan.services.map((s) => s.unit) }));
    lines.push("echo '@@ end'", "");
    return lines.join("\n");
}

/**
 * Script that gives the host back: each managed file restored from its original (or removed when
 * there was none), each kernel value set back, each service restarted so its sockets listen again
 * with the old values; then it prints the state for verification and removes the state directory.
 */
export function restoreScript(plan: Pick<ApplyPlan, "stateDir" | "sysctlKeys" | "services"> & { paths: string[] }): string {
    const lines = [...PRELUDE, `state=${quote(plan.stateDir)}`, "rc=0"];
    for (const path of plan.paths) {
        const b = backupName(path);
        const p = quote(path);
        lines.push(
            `if [ -f "$state/orig/${b}.absent" ]; then rm -f ${p};`,
            `elif [ -f "$state/orig/${b}.file" ]; then cp -p "$state/orig/${b}.file" ${p}.pulumi-backlog.new && mv -f ${p}.pulumi-backlog.new ${p};`,
            `else echo ${quote("@@ warning no original kept for " + path)}; fi`,
        );
    }
    for (const key of plan.sysctlKeys) {
        const name = quote("sysctl." + key);
        lines.push(`if [ -f "$state/orig/"${name} ]; then cat "$state/orig/"${name} > ${quote(procPath(key))} || rc=11; fi`);
    }
    for (const s of plan.services) {
        lines.push(`if ! out=$(${serviceAction("restart", s.unit)} 2>&1); then echo ${quote("@@ failed restart " + s.unit)}; printf '%s\\n' "$out"; rc=12; fi`);
    }
    lines.push(...observeLines({ stateDir: plan.stateDir, sysctlKeys: plan.sysctlKeys, paths: plan.paths, units: plan.services.map((s) => s.unit) }));
    lines.push("echo '@@ end'", `[ "$rc" = 0 ] && rm -rf "$state"`, "exit $rc", "");
    return lines.join("\n");
}

/** What a probe, apply or restore printed, parsed. */
export interface HostReport {
    /** Kernel values read from /proc/sys (undefined: the key is not exposed on this host). */
    sysctls: Record<string, number | undefined>;
    /** sha256 of each managed file, or null when absent. */
    files: Record<string, string | null>;
    /** Lines from sysctl.d files that set a managed key: `file:line`. */
    sysctlSources: string[];
    /** Raw `ss -H -l -n -t` and `ss -H -l -n -x` output. */
    ssTcp: string;
    ssUnix: string;
    /** `systemctl is-active` per unit. */
    units: Record<string, string>;
    /** Kernel values kept from before the first deploy. */
    before: Record<string, number>;
    /** Files a deploy has managed on the host (their originals are kept). */
    managed: string[];
    /** `systemd-detect-virt --container`: `none` on a machine of its own, else the container type. */
    container: string;
    /** Kernel values the last deploy set. */
    applied: Record<string, number>;
    /** The host's own values the last deploy assumed. */
    own: Record<string, number>;
    /** Set when the script stopped at a step: which step and its output. */
    failure?: { step: string; output: string };
    /** Whether the report ended (false: the script died half-way). */
    complete: boolean;
}

/** Parses the sections a script printed into a {@link HostReport}. */
export function parseReport(stdout: string): HostReport {
    const report: HostReport = { sysctls: {}, files: {}, sysctlSources: [], ssTcp: "", ssUnix: "", units: {}, before: {}, managed: [], applied: {}, own: {}, container: "", complete: false };
    let section = "";
    let arg = "";
    let body: string[] = [];
    const flush = () => {
        const text = body.join("\n");
        if (section === "sysctl") {
            report.sysctls[arg] = text === "!missing" || text.trim() === "" ? undefined : Number(text.trim());
        } else if (section === "file") {
            report.files[arg] = text === "!absent" ? null : text.trim();
        } else if (section === "sysctl.d") {
            report.sysctlSources = body.filter((l) => l.trim() !== "");
        } else if (section === "ss-tcp") {
            report.ssTcp = text;
        } else if (section === "ss-unix") {
            report.ssUnix = text;
        } else if (section === "unit") {
            report.units[arg] = text.trim();
        } else if (section === "before") {
            for (const line of body) {
                const m = /^sysctl\.([a-z0-9_.]+):(\d+)$/.exec(line.trim());
                if (m) report.before[m[1]] = Number(m[2]);
            }
        } else if (section === "container") {
            report.container = text.trim();
        } else if (section === "applied") {
            for (const line of body) {
                const m = /^(applied|own)\.([a-z0-9_.]+):(\d+)$/.exec(line.trim());
                if (m) report[m[1] as "applied" | "own"][m[2]] = Number(m[3]);
            }
        } else if (section === "managed") {
            report.managed = body.filter((l) => l !== "");
        } else if (section === "failed") {
            report.failure = { step: arg, output: text };
        }
    };
    for (const line of stdout.split("\n")) {
        const m = /^@@ (\S+)(?: (.*))?$/.exec(line);
        if (!m) {
            body.push(line);
            continue;
        }
        flush();
        section = m[1];
        arg = m[2] ?? "";
        body = [];
        if (section === "end") report.complete = true;
    }
    flush();
    return report;
}

/** The kernel values and listening sockets a report shows, as verify.ts `compare` takes them. */
export function effectiveOf(report: Pick<HostReport, "sysctls" | "ssTcp" | "ssUnix">): EffectiveValues {
    return { sysctls: report.sysctls, sockets: [...parseSs(report.ssTcp), ...parseSs(report.ssUnix)] };
}
