/**
 * Shared harness of the integration tests: lab hosts started and stopped through the lab's own CLI
 * (`scripts/lab/lab.ts`), and Pulumi stacks of this project driven with the Automation API against
 * the real engine (the `pulumi` on PATH that `npm test` sets up).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";

export const repo = resolve(__dirname, "..", "..");

/** One entry of a lab inventory. */
export interface LabHost {
  name: string;
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  hostKey: string;
  /** Debian suite of the host: "bullseye" (11), "bookworm" (12, the default) or "trixie" (13). */
  suite: string;
}

/** Which hosts `Lab.up` starts: `suite` for all of them (default bookworm), or one host per entry of `suites`. */
export interface LabUpOptions {
  suite?: string;
  suites?: string[];
  /** Seconds each host may take to boot (the lab's default: 90). */
  timeout?: number;
}

/** A lab of its own (own directory and name prefix), so tests never share hosts. */
export class Lab {
  readonly dir = mkdtempSync(join(tmpdir(), "backlog-lab-"));
  hosts: LabHost[] = [];

  constructor(readonly prefix: string) {}

  get inventory(): string {
    return join(this.dir, "inventory.json");
  }

  /** Runs the lab CLI; throws with its output when it fails. */
  cli(args: string[], allowFailure = false, timeoutMs = 600_000): { code: number; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, [join(repo, "scripts/lab/lab.ts"), ...args], {
      env: { ...process.env, BACKLOG_LAB_DIR: this.dir },
      encoding: "utf8",
      timeout: timeoutMs,
    });
    const result = { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    if (!allowFailure && result.code !== 0) {
      throw new Error(`lab ${args.join(" ")} failed (${result.code}):\n${result.stdout}\n${result.stderr}`);
    }
    return result;
  }

  /**
   * Starts `count` hosts; with `options.suites`, one host per entry in that order (count must be its
   * length). A root fs not built yet is built first (minutes, once per suite; see scripts/lab/README.md).
   */
  up(count: number, options: LabUpOptions = {}): LabHost[] {
    const args = ["up", "--hosts", String(count), "--prefix", this.prefix];
    if (options.suite) args.push("--suite", options.suite);
    if (options.suites) args.push("--suites", options.suites.join(","));
    if (options.timeout) args.push("--timeout", String(options.timeout));
    // Another suite's root fs may have to be built first: minutes each (they build in parallel).
    this.cli(args, false, options.suite || options.suites ? 1_800_000 : 600_000);
    this.hosts = JSON.parse(readFileSync(this.inventory, "utf8")) as LabHost[];
    return this.hosts;
  }

  /** Runs a shell command inside a host and returns its stdout (throws on failure). */
  sh(host: string, script: string): string {
    return this.cli(["exec", host, "--", "sh", "-c", script]).stdout;
  }

  /** `systemctl is-active` of each unit on a host, one state each (its exit code says only whether any is active). */
  unitStates(host: string, ...units: string[]): string[] {
    return this.sh(host, `systemctl is-active ${units.join(" ")} || true`)
      .trim()
      .split("\n");
  }

  /**
   * Runs a shell command on a host over SSH (the inventory's key, the pinned host key) and returns
   * its stdout (throws on failure). Unlike `sh` (nsenter from this machine), the command runs in a
   * login session like a real one, under the container's seccomp filter too.
   */
  ssh(host: string, script: string): string {
    const h = this.hosts.find((x) => x.name === host);
    if (!h) throw new Error(`no host "${host}" in ${this.inventory}`);
    const r = spawnSync(
      "ssh",
      [
        "-F",
        "none",
        "-i",
        h.privateKeyPath,
        "-o",
        "IdentitiesOnly=yes",
        "-p",
        String(h.port),
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        `UserKnownHostsFile=${join(this.dir, "known_hosts")}`,
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
        `${h.user}@${h.host}`,
        script,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    if (r.status !== 0) throw new Error(`ssh ${host} ${JSON.stringify(script)} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  down(): void {
    this.cli(["down"], true);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Fails with a clear message when the integration tests cannot run here. */
export function requireLabMachine(): void {
  if (process.platform !== "linux" || process.getuid?.() !== 0) {
    throw new Error("integration tests need Linux and root (lab hosts are systemd-nspawn containers); run `npm run test:unit` for the unit tests only");
  }
}

/** A throwaway stack of this project (`it-…`), with its own state directory. */
export async function testStack(name: string, config: Record<string, unknown>): Promise<{ stack: Stack; remove: () => Promise<void> }> {
  const state = mkdtempSync(join(tmpdir(), "backlog-state-"));
  const stackName = `it-${name}-${process.pid}`;
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName, workDir: repo },
    {
      envVars: {
        PULUMI_BACKEND_URL: `file://${state}`,
        PULUMI_CONFIG_PASSPHRASE: "integration-tests-only",
      },
    },
  );
  for (const [key, value] of Object.entries(config)) {
    await stack.setConfig(key, { value: typeof value === "string" ? value : JSON.stringify(value) });
  }
  const remove = async () => {
    try {
      await stack.workspace.removeStack(stackName, { force: true });
    } finally {
      rmSync(state, { recursive: true, force: true });
      rmSync(join(repo, `Pulumi.${stackName}.yaml`), { force: true });
    }
  };
  return { stack, remove };
}

/**
 * Registers the suite's teardown: destroy each stack (a failure there must not keep the lab up),
 * remove it, then take the lab down, also when a test failed half-way.
 */
export function tearDownAfterAll(lab: Lab, stacks: () => ({ stack: Stack; remove: () => Promise<void> } | undefined)[]): void {
  afterAll(async () => {
    try {
      for (const s of stacks()) {
        if (!s) continue;
        await s.stack.destroy({ onOutput: () => undefined }).catch(() => undefined);
        await s.remove();
      }
    } finally {
      lab.down();
    }
  });
}

/** Verification rows of the stack output `verification`, by host. */
export type Verification = Record<string, { setting: string; expected: number; effective: number | null; ok: boolean }[]>;
