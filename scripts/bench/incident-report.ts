/**
 * The incident bench's results: derived metrics, the before/after table for stdout, the chart
 * panels and the Markdown report (pure functions, no I/O).
 */
import type { ChartPanel } from "./incident-chart.ts";
import { formatValue } from "./incident-chart.ts";
import type { WrkResult } from "./incident-parse.ts";

/** What one load run measured on the host. */
export interface Phase {
  readonly label: "before" | "after";
  readonly somaxconn: number | null;
  readonly tcpMaxSynBacklog: number | null;
  /** Send-Q of php-fpm's unix socket. */
  readonly phpFpmBacklog: number | null;
  /** Send-Q of each nginx listener on the load port (address → backlog). */
  readonly nginxBacklogs: Readonly<Record<string, number>>;
  readonly phpFpmWorkers: number | null;
  readonly wrk: WrkResult;
  /** nginx access log: status → count. */
  readonly accessLog: Readonly<Record<string, number>>;
  /** nginx error-log lines with "Resource temporarily unavailable". */
  readonly eagainLines: number | null;
  readonly errorLogSample: string;
  /** The relevant `ss` lines, as printed. */
  readonly ssLines: string;
}

/** Numbers derived from a phase, as the table and the chart show them. */
export interface Metrics {
  readonly responses: number;
  readonly ok2xx: number;
  readonly non2xx: number;
  readonly wrk502: number;
  readonly socketErrors: number;
  readonly errorRatePct: number;
  readonly log502: number;
  readonly log499: number;
  readonly logTotal: number;
  readonly rps: number;
}

const isOk = (status: string) => /^[23]\d\d$/.test(status);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * Error rate = (non-2xx/3xx responses + socket errors) / (responses + socket errors): every
 * attempt wrk made that did not end in a good response.
 */
export function metrics(p: Phase): Metrics {
  const s = p.wrk.statuses;
  const e = p.wrk.errors;
  const socketErrors = e.connect + e.read + e.write + e.timeout;
  const non2xx = sum(
    Object.entries(s)
      .filter(([k]) => !isOk(k))
      .map(([, v]) => v),
  );
  const ok2xx = sum(
    Object.entries(s)
      .filter(([k]) => isOk(k))
      .map(([, v]) => v),
  );
  const attempts = p.wrk.requests + socketErrors;
  return {
    responses: p.wrk.requests,
    ok2xx,
    non2xx,
    wrk502: s["502"] ?? 0,
    socketErrors,
    errorRatePct: attempts === 0 ? 0 : ((non2xx + socketErrors) / attempts) * 100,
    log502: p.accessLog["502"] ?? 0,
    log499: p.accessLog["499"] ?? 0,
    logTotal: sum(Object.values(p.accessLog)),
    rps: p.wrk.durationSeconds > 0 ? p.wrk.requests / p.wrk.durationSeconds : 0,
  };
}

const n = (v: number | null | undefined) => (v === null || v === undefined ? "missing" : v.toLocaleString("en-US"));
/** A configured or kernel value (no thousands separator: 4096 as it is written in config files). */
const plain = (v: number | null | undefined) => (v === null || v === undefined ? "missing" : String(v));
const ms = (v: number) => `${formatValue(v)} ms`;
const backlogs = (r: Readonly<Record<string, number>>) =>
  Object.keys(r).length === 0
    ? "missing"
    : Object.entries(r)
        .map(([a, b]) => `${b} (${a})`)
        .join(", ");
const statusList = (r: Readonly<Record<string, number>>) =>
  Object.keys(r).length === 0
    ? "none"
    : Object.entries(r)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k}: ${v.toLocaleString("en-US")}`)
        .join(", ");

/** Rows of the before/after table: [metric, before, after]. */
export function tableRows(before: Phase, after: Phase): string[][] {
  const b = metrics(before);
  const a = metrics(after);
  return [
    ["metric", "before (untuned)", "after (profile)"],
    ["responses (wrk)", n(b.responses), n(a.responses)],
    ["requests/s (wrk)", formatValue(b.rps), formatValue(a.rps)],
    ["2xx responses (wrk)", n(b.ok2xx), n(a.ok2xx)],
    ["non-2xx responses (wrk)", n(b.non2xx), n(a.non2xx)],
    ["502 responses (wrk)", n(b.wrk502), n(a.wrk502)],
    ["socket errors (wrk: connect/read/write/timeout)", fmtErrors(before.wrk), fmtErrors(after.wrk)],
    ["error rate", `${formatValue(b.errorRatePct)} %`, `${formatValue(a.errorRatePct)} %`],
    ["access log: lines by status", statusList(before.accessLog), statusList(after.accessLog)],
    ["access log: 502", n(b.log502), n(a.log502)],
    ["error log: EAGAIN lines", n(before.eagainLines), n(after.eagainLines)],
    ["latency p50", ms(before.wrk.p50Ms), ms(after.wrk.p50Ms)],
    ["latency p90", ms(before.wrk.p90Ms), ms(after.wrk.p90Ms)],
    ["latency p99", ms(before.wrk.p99Ms), ms(after.wrk.p99Ms)],
    ["latency max", ms(before.wrk.maxMs), ms(after.wrk.maxMs)],
    ["net.core.somaxconn", plain(before.somaxconn), plain(after.somaxconn)],
    ["net.ipv4.tcp_max_syn_backlog", plain(before.tcpMaxSynBacklog), plain(after.tcpMaxSynBacklog)],
    ["php-fpm socket backlog (ss Send-Q)", plain(before.phpFpmBacklog), plain(after.phpFpmBacklog)],
    ["nginx listener backlog (ss Send-Q)", backlogs(before.nginxBacklogs), backlogs(after.nginxBacklogs)],
    ["php-fpm workers (pool www)", plain(before.phpFpmWorkers), plain(after.phpFpmWorkers)],
  ];
}

function fmtErrors(w: WrkResult): string {
  const e = w.errors;
  return `${e.connect}/${e.read}/${e.write}/${e.timeout}`;
}

/** A plain-text table (columns padded). */
export function textTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** A Markdown table (first row = header). */
export function markdownTable(rows: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const [head, ...body] = rows;
  return [`| ${head.map(esc).join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...body.map((r) => `| ${r.map(esc).join(" | ")} |`)].join("\n");
}

/** The chart's panels: error rate, p50 and p99 latency. */
export function chartPanels(before: Phase, after: Phase): ChartPanel[] {
  const b = metrics(before);
  const a = metrics(after);
  return [
    { title: "error rate", unit: " %", before: b.errorRatePct, after: a.errorRatePct, max: 100 },
    { title: "latency p50", unit: " ms", before: before.wrk.p50Ms, after: after.wrk.p50Ms },
    { title: "latency p99", unit: " ms", before: before.wrk.p99Ms, after: after.wrk.p99Ms },
  ];
}

/** Everything the Markdown report needs besides the two phases. */
export interface ReportContext {
  readonly date: string;
  readonly wallSeconds: number;
  readonly steps: readonly { name: string; seconds: number }[];
  readonly machine: { nproc: number; cpu: string; memGiB: number; kernel: string };
  readonly host: Readonly<Record<string, string>>;
  readonly git: string;
  readonly verdict: { ok: boolean; problems: string[] };
  readonly expectedBacklog: number;
  readonly profileJson: string;
  readonly files: readonly { path: string; content: string; lang: string }[];
  readonly commands: readonly string[];
  readonly loadScript: string;
  readonly wrkCommand: string;
  readonly verification: string[][] | null;
  readonly deployNotes: readonly string[];
  readonly svgName: string;
  readonly pngName: string | null;
}

/** The Markdown report. */
export function renderMarkdown(before: Phase, after: Phase, ctx: ReportContext): string {
  const fence = (lang: string, body: string) => "```" + lang + "\n" + body.replace(/\n+$/, "") + "\n```";
  const m = ctx.machine;
  const h = ctx.host;
  const backlogRows = [
    ["socket", "before (ss Send-Q)", "after (ss Send-Q)", "profile expects"],
    ["php-fpm pool www (unix:/run/php/php8.2-fpm.sock)", plain(before.phpFpmBacklog), plain(after.phpFpmBacklog), String(ctx.expectedBacklog)],
    ...Object.keys({ ...before.nginxBacklogs, ...after.nginxBacklogs }).map((addr) => [
      `nginx listener ${addr}`,
      plain(before.nginxBacklogs[addr]),
      plain(after.nginxBacklogs[addr]),
      String(ctx.expectedBacklog),
    ]),
    ["net.core.somaxconn (caps every listen())", plain(before.somaxconn), plain(after.somaxconn), "≥ " + String(ctx.expectedBacklog)],
  ];
  const out = [
    "# The incident, before and after",
    "",
    `Generated by \`npm run bench:incident\` (scripts/bench/incident.ts) on ${ctx.date}; whole bench (lab up → teardown): ${ctx.wallSeconds.toFixed(1)} s.`,
    `Result: **${ctx.verdict.ok ? "PASS" : "FAIL"}**${ctx.verdict.ok ? " — the profile removed every 502 and every socket got the profile's backlog." : ": " + ctx.verdict.problems.join("; ")}`,
    "",
    `![error rate and p50/p99 latency, before and after](${ctx.svgName})`,
    ctx.pngName ? `\n(PNG: [${ctx.pngName}](${ctx.pngName}))` : "",
    "",
    "## Results",
    "",
    markdownTable(tableRows(before, after)),
    "",
    "Error rate = (non-2xx/3xx responses + wrk socket errors) / (responses + socket errors). " +
      "Latency percentiles are wrk's, over every completed response, 502s included: before the fix most " +
      "responses are 502s that nginx returns at once (the connect to the full php-fpm queue fails with " +
      "EAGAIN), which is why p50 can look *better* before than after. After the fix every request waits " +
      "for a php-fpm worker: with 20 workers and a 50 ms script the pool serves about 400 requests/s, so " +
      "300 connections see about 300 / 400 s ≈ 750 ms each. " +
      "Access-log status 499 = a request nginx was still working on when wrk closed its connections at the end of the run " +
      "(so the access log has a few more lines than wrk counted responses).",
    "",
    "## Effective backlogs",
    "",
    "Read with `ss -H -l -n -x` (php-fpm's unix socket) and `ss -H -l -n -t` (nginx) right before each load run; " +
      "for a listening socket Send-Q is the backlog the kernel actually uses (`min(requested, somaxconn at listen() time)`).",
    "",
    markdownTable(backlogRows),
    "",
    fence("text", `# before\n${before.ssLines}\n# after\n${after.ssLines}`),
    "",
  ];
  if (ctx.verification) {
    out.push("Stack output `verification` of the deployment (what the library read back after `pulumi up`):", "", markdownTable(ctx.verification), "");
  }
  if (ctx.deployNotes.length > 0) {
    out.push("Notes from the deployment:", "", ...ctx.deployNotes.map((s) => `- ${s}`), "");
  }
  out.push(
    "## Setup",
    "",
    `- Machine: ${m.nproc} CPUs (\`nproc\`), ${m.cpu}, ${m.memGiB.toFixed(1)} GiB RAM, Linux ${m.kernel}.`,
    `- Lab host (systemd-nspawn, own network namespace, shares the machine's CPUs): \`nproc\` = ${h.nproc ?? "?"}, ${h.os ?? "?"}, ${h.nginx ?? "?"}, ${h.php ?? "?"}, ${h.wrk ?? "?"}.`,
    `- Code: ${ctx.git}.`,
    `- Load (same before and after, loopback inside the host only): \`${ctx.wrkCommand}\`, ${"`slow.php`"} sleeps 50 ms per request.`,
    "- Before: the untuned baseline, set by hand with `lab exec`: `net.core.somaxconn = 16`, pool www with " +
      "`listen.backlog = 8` and `pm = static`, `pm.max_children = 2`, nginx on port 8080 with the default " +
      "`backlog` (511, capped by somaxconn at `listen()`), php-fpm and nginx restarted so the sockets got the small values.",
    "- After: the baseline's nginx file removed (the profile's listener takes port 8080), then this profile " +
      "applied with the real `pulumi up` of the deployment program (`index.ts`), which writes the sysctl drop-in, the " +
      "pool file (replacing www.conf) and the nginx server, and restarts what must listen again:",
    "",
    fence("json", ctx.profileJson),
    "",
    "Note: the profile also raises `pm.max_children` from 2 to 20, as the incident's fix did (docs/incident.md). " +
      "The backlog is what removes the 502s (a full accept queue makes the unix-socket connect fail at once); " +
      "the workers are what keeps latency under wrk's 2 s timeout at this load.",
    "",
    "## Exact commands",
    "",
    "`$LAB` is the bench's own lab dir (a fresh temp dir), `$STATE` its Pulumi state dir; the host is `inc1`.",
    "",
    fence("sh", ctx.commands.join("\n")),
    "",
    'Each load run (`npm run lab -- exec inc1 -- sh -c "$LOAD"`), identical before and after:',
    "",
    fence("sh", ctx.loadScript),
    "",
    "Files written on the host for the baseline:",
    "",
  );
  for (const f of ctx.files) out.push(`\`${f.path}\`:`, "", fence(f.lang, f.content), "");
  out.push(
    "## wrk output",
    "",
    fence("text", `# before\n${before.wrk.text}\n\n# after\n${after.wrk.text}`),
    "",
    "nginx error log, first lines (before):",
    "",
    fence("text", before.errorLogSample || "(empty)"),
    "",
    "nginx error log, first lines (after):",
    "",
    fence("text", after.errorLogSample || "(empty)"),
    "",
    "## Timings",
    "",
    markdownTable([["step", "seconds"], ...ctx.steps.map((s) => [s.name, s.seconds.toFixed(1)]), ["whole bench", ctx.wallSeconds.toFixed(1)]]),
    "",
  );
  return out.join("\n");
}
