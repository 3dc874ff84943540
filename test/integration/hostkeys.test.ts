/**
 * Host keys against a real OpenSSH server, the way `ssh` checks them: a throwaway `sshd` on
 * 127.0.0.1 with three host keys (ed25519, ECDSA, RSA) and its own config, keys and PID file in a
 * temp dir. Any one pinned key is enough (the connection offers only the pinned types, so the server
 * proves the key that was pinned instead of its favourite), so is what `ssh-keyscan` prints, and a
 * wrong key is refused before authentication with both fingerprints named.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseHostKeys, runScript, type SshConnection } from "../../src/transport/ssh";

jest.setTimeout(300_000);

const SSHD = "/usr/sbin/sshd";
let dir = "";
let port = 0;
let sshd: ChildProcess | undefined;
/** What sshd logged (-e: to standard error), for the assertions on the handshake and for failures. */
let log = "";

const keygen = (file: string, ...args: string[]) =>
  execFileSync("ssh-keygen", ["-q", "-N", "", "-C", path.basename(file), "-f", file, ...args], { stdio: "ignore" });
const pub = (name: string) => fs.readFileSync(path.join(dir, `${name}.pub`), "utf8").trim();
/** The fingerprint `ssh-keygen -l` prints for a public key file: "256 SHA256:… comment (ED25519)". */
const keygenFingerprint = (name: string) => execFileSync("ssh-keygen", ["-lf", path.join(dir, `${name}.pub`)], { encoding: "utf8" }).split(/\s+/)[1];

/** PIDs of running processes whose executable is /usr/sbin/sshd. */
function sshdPids(): number[] {
  return fs
    .readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readlinkSync(`/proc/${p}/exe`) === SSHD;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/**
 * Installs openssh-server when this machine has no sshd (a fresh machine of this kind has only the
 * client). The package must not leave the system's own ssh service running or enabled: any sshd that
 * appeared during the install is stopped by its PID, and the service is disabled again.
 */
function ensureSshd(): void {
  if (fs.existsSync(SSHD)) return;
  const before = new Set(sshdPids());
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  spawnSync("apt-get", ["update", "-q"], { stdio: ["ignore", "inherit", "inherit"], env });
  spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", "openssh-server"], { stdio: ["ignore", "inherit", "inherit"], env });
  for (const pid of sshdPids().filter((p) => !before.has(p))) process.kill(pid, "SIGTERM");
  spawnSync("systemctl", ["disable", "ssh"], { stdio: "ignore" });
  if (!fs.existsSync(SSHD)) throw new Error(`apt-get could not install openssh-server (${SSHD} is missing)`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port: p } = server.address() as net.AddressInfo;
      server.close(() => resolve(p));
    });
  });
}

/** Resolves once 127.0.0.1:port accepts connections; rejects when sshd exits first or after 15 s. */
async function listening(child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`sshd exited (${child.exitCode ?? child.signalCode}):\n${log}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port} within 15 s:\n${log}`);
}

beforeAll(async () => {
  if (process.platform !== "linux" || process.getuid?.() !== 0) {
    throw new Error("this test starts its own sshd and needs Linux and root; run `npm run test:unit` for the unit tests only");
  }
  ensureSshd();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "hostkeys-"));
  keygen(path.join(dir, "host_ed25519"), "-t", "ed25519");
  keygen(path.join(dir, "host_ecdsa"), "-t", "ecdsa", "-b", "256");
  keygen(path.join(dir, "host_rsa"), "-t", "rsa", "-b", "3072");
  keygen(path.join(dir, "client"), "-t", "ed25519");
  keygen(path.join(dir, "stranger_ed25519"), "-t", "ed25519");
  keygen(path.join(dir, "stranger_ecdsa384"), "-t", "ecdsa", "-b", "384");
  fs.writeFileSync(path.join(dir, "authorized_keys"), `${pub("client")}\n`, { mode: 0o600 });
  port = await freePort();
  const config = path.join(dir, "sshd_config");
  fs.writeFileSync(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${dir}/host_ed25519`,
      `HostKey ${dir}/host_ecdsa`,
      `HostKey ${dir}/host_rsa`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin prohibit-password",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      // DEBUG1 logs the negotiated host key algorithm ("kex: host key algorithm: …").
      "LogLevel DEBUG1",
      "",
    ].join("\n"),
  );
  // sshd's privilege separation directory (made by the ssh service's unit, which is not running here).
  fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const check = spawnSync(SSHD, ["-t", "-f", config], { encoding: "utf8" });
  if (check.status !== 0) throw new Error(`sshd -t refused the test config: ${check.stderr}`);
  sshd = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  sshd.stderr!.on("data", (d: Buffer) => {
    log += d.toString();
  });
  await listening(sshd);
});

afterAll(async () => {
  const child = sshd;
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(child.pid, "SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      exited,
      new Promise((r) => {
        timer = setTimeout(r, 5_000);
      }),
    ]);
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, "SIGKILL");
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const connection = (hostKey: string): SshConnection => ({
  host: "127.0.0.1",
  port,
  user: "root",
  privateKey: fs.readFileSync(path.join(dir, "client"), "utf8"),
  hostKey,
  dialAttempts: 1,
  dialTimeoutSeconds: 10,
});

/** The host key algorithms sshd logged as negotiated since `from` (an offset in the log). */
const negotiated = (from: number) => [...log.slice(from).matchAll(/kex: host key algorithm: (\S+)/g)].map((m) => m[1]);
const accepted = () => (log.match(/Accepted publickey for root/g) ?? []).length;

test.each([
  ["ed25519", "host_ed25519", ["ssh-ed25519"]],
  ["ECDSA", "host_ecdsa", ["ecdsa-sha2-nistp256"]],
  ["RSA", "host_rsa", ["rsa-sha2-512"]],
])("the %s host key pinned alone is enough, and it is the key the server proves", async (_kind, name, algorithm) => {
  const from = log.length;
  const result = await runScript(connection(pub(name)), "echo ok");
  expect(result).toMatchObject({ code: 0, stdout: "ok\n" });
  expect(negotiated(from)).toEqual(algorithm);
});

test("what ssh-keyscan prints, # comment lines included, is a valid pin (plain and hashed hosts)", async () => {
  const scan = execFileSync("sh", ["-c", 'ssh-keyscan -p "$1" 127.0.0.1 2>&1', "sh", String(port)], { encoding: "utf8" });
  expect(scan).toMatch(/^# 127\.0\.0\.1:\d+ SSH-2\.0-OpenSSH/m);
  expect(new Set(parseHostKeys(scan).map((k) => k.fingerprint))).toEqual(new Set(["host_ed25519", "host_ecdsa", "host_rsa"].map(keygenFingerprint)));
  expect(await runScript(connection(scan), "echo ok")).toMatchObject({ code: 0, stdout: "ok\n" });

  const hashed = execFileSync("ssh-keyscan", ["-H", "-p", String(port), "127.0.0.1"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  expect(hashed).toMatch(/^\|1\|/m);
  expect(await runScript(connection(hashed), "echo ok")).toMatchObject({ code: 0, stdout: "ok\n" });
});

test("a wrong key is refused before authentication, naming the fingerprint seen and the one pinned", async () => {
  const logins = accepted();
  const error = await runScript(connection(pub("stranger_ed25519")), "echo ok").then(
    () => undefined,
    (e: Error) => e,
  );
  expect(error?.name).toBe("SshError");
  expect(error?.message).toBe(
    `host key mismatch for root@127.0.0.1:${port}: the server presented ssh-ed25519 ${keygenFingerprint("host_ed25519")}, ` +
      `the pinned keys are ${keygenFingerprint("stranger_ed25519")} (ssh-ed25519); refusing to connect`,
  );
  expect(error?.message).not.toContain(pub("stranger_ed25519").split(" ")[1]);
  expect(accepted()).toBe(logins);
});

test("a pinned key type the server does not have is refused as a mismatch", async () => {
  const error = await runScript(connection(pub("stranger_ecdsa384")), "echo ok").then(
    () => undefined,
    (e: Error) => e,
  );
  expect(error?.message).toBe(
    `host key mismatch for root@127.0.0.1:${port}: the server has no key of the pinned types (ecdsa-sha2-nistp384); ` +
      `the pinned keys are ${keygenFingerprint("stranger_ecdsa384")} (ecdsa-sha2-nistp384); refusing to connect`,
  );
});
