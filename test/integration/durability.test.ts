/**
 * The apply's journal against a power cut: every record that a rollback needs (the original kept
 * once, this run's copy, the journal's open mark) reaches the disk before the managed file it
 * protects is replaced. The records are flushed together, by one `sync` right before that rename
 * (plan.ts `pb_flush`), not each on its own; this checks the order with the system calls the script
 * makes (strace: fsync and rename), running the real script with /bin/sh on this machine.
 * strace comes with the lab's prerequisites (scripts/lab/rootfs.ts, `npm run lab -- prepare`).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { type ApplyPlan, applyScript, backupName, reportToken } from "../../src/core/plan";

const dir = mkdtempSync(join(tmpdir(), "backlog-durability-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the apply of `plan` under strace; returns the fsync'ed paths and renames, in order. */
function traced(plan: ApplyPlan): { calls: ({ fsync: string } | { from: string; to: string })[]; code: number | null } {
  const log = join(dir, `strace.${Date.now()}.log`);
  const r = spawnSync("strace", ["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o", log, "/bin/sh", "-s"], {
    input: applyScript(plan, { token: reportToken(), runDir: join(dir, "run"), lockWaitSeconds: 5 }),
    encoding: "utf8",
  });
  if (r.error) throw new Error(`strace could not run (npm run lab -- prepare installs it): ${r.error.message}`);
  const calls: ({ fsync: string } | { from: string; to: string })[] = [];
  for (const line of readFileSync(log, "utf8").split("\n")) {
    const f = /\bf(?:data)?sync\(\d+<([^>]*)>\) = 0/.exec(line);
    if (f) calls.push({ fsync: f[1] });
    const m = /\brename(?:at2?)?\((?:[^,]*, )?"([^"]*)", (?:[^,]*, )?"([^"]*)"[^)]*\) = 0/.exec(line);
    if (m) calls.push({ from: m[1], to: m[2] });
  }
  return { calls, code: r.status };
}

/** What was flushed since the previous replacement of a managed file, when `target` takes its name. */
function flushedBefore(calls: ReturnType<typeof traced>["calls"], target: string, managed: string[]): { from: string; flushed: string[] } {
  const at = calls.findIndex((c) => "to" in c && c.to === target);
  if (at < 0) throw new Error(`no rename to ${target}: ${JSON.stringify(calls)}`);
  let start = at - 1;
  while (start >= 0 && !("to" in calls[start] && managed.includes((calls[start] as { to: string }).to))) start--;
  const flushed = calls.slice(start + 1, at).flatMap((c) => ("fsync" in c ? [c.fsync] : []));
  return { from: (calls[at] as { from: string }).from, flushed };
}

test("the rollback's records are on disk before the file they protect is replaced, first deploy and later", () => {
  const etc = join(dir, "etc");
  mkdirSync(etc);
  const kept = join(etc, "kept.conf");
  const fresh = join(etc, "fresh.conf");
  writeFileSync(kept, "original\n");
  const state = join(dir, "state");
  const group = execFileSync("id", ["-gn"], { encoding: "utf8" }).trim();
  const plan = (content: string): ApplyPlan => ({
    stateDir: state,
    owner: "web1",
    sysctlKeys: [],
    files: [kept, fresh].map((path) => ({ path, content, mode: "0644", owner: userInfo().username, group })),
    services: [{ unit: "svc", test: ["true"], action: "none" }],
    sockets: { unixPaths: [], tcpPorts: [] },
  });
  const b = backupName(kept);
  const f = backupName(fresh);

  // First deploy: the original of each file is kept once (orig/), and this run's copy (txn/f/).
  const first = traced(plan("managed 1\n"));
  expect(first.code).toBe(0);
  const k1 = flushedBefore(first.calls, kept, [kept, fresh]);
  expect(k1.from).toMatch(/\/\.pulumi-backlog\.\w+$/);
  expect(k1.flushed).toEqual(
    expect.arrayContaining([
      k1.from,
      join(state, "txn/open"),
      join(state, `orig/${b}.file`),
      join(state, `orig/${b}.path`),
      join(state, `txn/f/${b}.file`),
      join(state, `txn/f/${b}.path`),
    ]),
  );
  // A file that did not exist: its "absent" mark counts once its .path record is on disk.
  const f1 = flushedBefore(first.calls, fresh, [kept, fresh]);
  expect(f1.flushed).toEqual(expect.arrayContaining([f1.from, join(state, `orig/${f}.path`), join(state, `txn/f/${f}.path`)]));
  expect(readFileSync(kept, "utf8")).toBe("managed 1\n");

  // A later deploy: the current content is journalled, the original is not copied again.
  const second = traced(plan("managed 2\n"));
  expect(second.code).toBe(0);
  const k2 = flushedBefore(second.calls, kept, [kept, fresh]);
  expect(k2.flushed).toEqual(expect.arrayContaining([k2.from, join(state, "txn/open"), join(state, `txn/f/${b}.file`), join(state, `txn/f/${b}.path`)]));
  expect(k2.flushed).not.toContain(join(state, `orig/${b}.file`));
  expect(readFileSync(join(state, `orig/${b}.file`), "utf8")).toBe("original\n");
  // One process flushes them all: no record is flushed twice.
  expect(new Set(k2.flushed).size).toBe(k2.flushed.length);
  // The commit's own records (owner, generation) are on disk before the journal goes.
  const last = second.calls.findIndex((c) => "to" in c && c.to === fresh);
  expect(second.calls.slice(last + 1).flatMap((c) => ("fsync" in c ? [c.fsync] : []))).toEqual(
    expect.arrayContaining([join(state, "owners/web1"), join(state, "generation")]),
  );
  expect(readFileSync(join(state, "generation"), "utf8")).toBe("2\n");
});
