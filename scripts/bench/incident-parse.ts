/**
 * Parsing what the incident bench's host scripts print (pure functions, no I/O):
 * `@@@ NAME` sections, wrk's `INCIDENT …` lines from the Lua script, `uniq -c` status counts,
 * and `ss -H -l -n` listings (Send-Q of a listening socket = its effective backlog).
 */

/** Splits output into `@@@ NAME` sections (text after each marker up to the next). */
export function sections(output: string): Map<string, string> {
  const out = new Map<string, string>();
  let name: string | null = null;
  let lines: string[] = [];
  for (const line of output.split("\n")) {
    const m = /^@@@ (\S+)\s*$/.exec(line);
    if (m) {
      if (name !== null) out.set(name, lines.join("\n"));
      name = m[1];
      lines = [];
    } else if (name !== null) {
      lines.push(line);
    }
  }
  if (name !== null) out.set(name, lines.join("\n"));
  return out;
}

/** What one wrk run reported (from the Lua script's `INCIDENT` lines). */
export interface WrkResult {
  /** Completed responses by HTTP status. */
  readonly statuses: Readonly<Record<string, number>>;
  /** Completed responses (wrk's "requests"). */
  readonly requests: number;
  readonly durationSeconds: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** wrk socket errors; `status` is wrk's count of non-2xx/3xx responses. */
  readonly errors: { readonly connect: number; readonly read: number; readonly write: number; readonly status: number; readonly timeout: number };
  /** wrk's exit status (124 = killed by `timeout`). */
  readonly exitCode: number;
  /** wrk's own printed summary (without the INCIDENT lines). */
  readonly text: string;
}

/** Parses the wrk section; throws when the Lua summary is missing (wrk did not finish). */
export function parseWrk(section: string): WrkResult {
  const statuses: Record<string, number> = {};
  const values = new Map<string, number[]>();
  const text: string[] = [];
  for (const line of section.split("\n")) {
    const m = /^INCIDENT (\S+)((?: -?\d+)+)\s*$/.exec(line);
    if (!m) {
      if (line.trim() !== "") text.push(line);
      continue;
    }
    const nums = m[2].trim().split(/\s+/).map(Number);
    if (m[1] === "status") statuses[String(nums[0])] = (statuses[String(nums[0])] ?? 0) + nums[1];
    else values.set(m[1], nums);
  }
  const one = (key: string): number => {
    const v = values.get(key);
    if (!v) throw new Error(`wrk did not report "${key}" (did it finish?). Its output:\n${section}`);
    return v[0];
  };
  const e = values.get("errors");
  if (e?.length !== 5) throw new Error(`wrk did not report its socket errors. Its output:\n${section}`);
  return {
    statuses,
    requests: one("requests"),
    durationSeconds: one("duration_us") / 1e6,
    p50Ms: one("p50_us") / 1000,
    p90Ms: one("p90_us") / 1000,
    p99Ms: one("p99_us") / 1000,
    maxMs: one("max_us") / 1000,
    errors: { connect: e[0], read: e[1], write: e[2], status: e[3], timeout: e[4] },
    exitCode: one("wrk_exit"),
    text: text.join("\n"),
  };
}

/** Parses `uniq -c` output (`  COUNT VALUE` lines) into VALUE → COUNT. */
export function parseUniqCounts(section: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of section.split("\n")) {
    const m = /^\s*(\d+)\s+(\S+)\s*$/.exec(line);
    if (m) out[m[2]] = (out[m[2]] ?? 0) + Number(m[1]);
  }
  return out;
}

/** The first integer in a section (e.g. `grep -c` output); null when there is none. */
export function parseCount(section: string | undefined): number | null {
  const m = /-?\d+/.exec(section ?? "");
  return m ? Number(m[0]) : null;
}

/**
 * Effective backlog (Send-Q) of the listening socket whose local address is `local`, from
 * `ss -H -l -n -x` or `ss -H -l -n -t` output (with or without the Netid column). Null when no
 * such socket listens.
 */
export function sendQ(ssOutput: string, local: string): number | null {
  for (const line of ssOutput.split("\n")) {
    const t = line.trim().split(/\s+/);
    const i = t.indexOf(local);
    // … LISTEN RECV-Q SEND-Q LOCAL …: the local address follows the two queue columns.
    if (i >= 3 && t[i - 3] === "LISTEN" && /^\d+$/.test(t[i - 1])) return Number(t[i - 1]);
  }
  return null;
}

/** Every listening TCP socket on `port`: local address → Send-Q. */
export function tcpSendQByPort(ssOutput: string, port: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of ssOutput.split("\n")) {
    const t = line.trim().split(/\s+/);
    const i = t.indexOf("LISTEN");
    if (i < 0 || t.length < i + 4) continue;
    const local = t[i + 3];
    if (local.endsWith(`:${port}`) && /^\d+$/.test(t[i + 2])) out[local] = Number(t[i + 2]);
  }
  return out;
}
