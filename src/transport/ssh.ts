/**
 * SSH transport: how the library reaches a host. One call of {@link runScript} is one SSH
 * connection (plus one to the bastion when a proxy is set) that runs one POSIX shell script sent
 * on standard input, so no script text, path or value ever appears on a remote command line.
 *
 * Host keys are pinned, the way OpenSSH checks `known_hosts`: the connection offers only the key
 * types given in {@link SshConnection.hostKey} and is refused unless the key the server presents is
 * one of them. Skipping the check needs an explicit, loudly named opt-out
 * ({@link SshConnection.insecureIgnoreHostKey}); {@link insecureHops} names the hops that use it.
 */
import { createHash } from "node:crypto";
import { Client, type ConnectConfig } from "ssh2";
import type { Duplex } from "node:stream";

/** Where and how to reach one host over SSH. Plain values: see {@link SshConnectionArgs} for the Pulumi inputs. */
export interface SshConnection {
  /** Host name or IP address. */
  host: string;
  /** TCP port of the SSH server. Default 22. */
  port?: number;
  /** Login user. Default `root`. A non-root user needs `sudo` (see {@link sudo}). */
  user?: string;
  /** Private key in OpenSSH or PEM format. Pass it as a Pulumi secret: it is kept encrypted in state. */
  privateKey: string;
  /** Passphrase of the private key, if it has one. Pass it as a Pulumi secret. */
  passphrase?: string;
  /**
   * The host's public keys, one per line; any of them is accepted. Each line is one of:
   * - a public key line, as in `/etc/ssh/ssh_host_ed25519_key.pub`: `ssh-ed25519 AAAA… [comment]`;
   * - a line of `ssh-keyscan` output: `host ssh-ed25519 AAAA…`;
   * - a `known_hosts` line: `host[,host…] ssh-ed25519 AAAA… [comment]`, hashed `|1|…` host fields
   *   and `[host]:port` included. The host field is not matched: these are the keys of this connection.
   *
   * Blank lines and `# comment` lines are skipped; `@cert-authority` and `@revoked` lines are refused.
   * Only the pinned key types are offered to the server (RSA keys as `rsa-sha2-512`, `rsa-sha2-256`,
   * `ssh-rsa`). Get them with `ssh-keyscan -p PORT HOST`, from a trusted network path.
   * Required unless {@link insecureIgnoreHostKey} is set.
   */
  hostKey?: string;
  /**
   * Accept any host key. Only for throwaway hosts: anyone on the path can impersonate the host and
   * receive what is sent to it. Every deployment that uses it prints a warning. Default false.
   */
  insecureIgnoreHostKey?: boolean;
  /** Run the scripts through `sudo -n` (non-interactive sudo). Default: true when {@link user} is not `root`. */
  sudo?: boolean;
  /** A bastion to hop through (its own user, key and pinned host key). */
  proxy?: Omit<SshConnection, "proxy" | "sudo">;
  /**
   * When this connection is a bastion ({@link proxy}): how many connections to it may be in their
   * handshake at once from one process (the program's probes, or the engine's provider). Default 8:
   * OpenSSH's sshd drops new connections at random once 10 are unauthenticated (`MaxStartups
   * 10:30:100`), and a fleet behind one bastion would otherwise open one per host at the same time.
   * The rest wait their turn; a session holds no slot once it is logged in. Set it below the
   * bastion's own `MaxStartups` start value. A whole number from 1 to 1000.
   */
  maxStartups?: number;
  /** Seconds to wait for each connection attempt, handshake included. Default 15. */
  dialTimeoutSeconds?: number;
  /** How many times to try to connect before giving up (the script itself never runs twice). Default 5. */
  dialAttempts?: number;
  /**
   * Seconds one script may take, connecting (bastion included) and running together. When it runs
   * over, the connection is closed, the host rolls the run back, and the operation fails naming the
   * step it was in. Default 300.
   */
  scriptTimeoutSeconds?: number;
}

/** What a remote script returned. */
export interface ScriptResult {
  /** Exit status of the script (non-zero when it failed). */
  code: number;
  stdout: string;
  stderr: string;
  /** Set when the call ran over {@link SshConnection.scriptTimeoutSeconds} and was cut. */
  timedOut?: boolean;
}

/**
 * A connection problem (not a failed script): unreachable host, refused key, wrong host key.
 * A plain `Error` named "SshError", not a subclass: this module runs inside the dynamic provider,
 * whose serialized code turns `class … extends Error` into a function that loses the message.
 */
export function sshError(message: string): Error {
  return Object.assign(new Error(message), { name: "SshError" });
}

/** One pinned host key: its type (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …), key blob and fingerprint. */
export interface HostKey {
  type: string;
  blob: Buffer;
  /** OpenSSH style: `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

const KEY_TYPE = /^(ssh-|ecdsa-|sk-)[a-z0-9@.-]+$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** Shapes of text that are no public key line, and what to tell about them. */
const MISTAKES: [RegExp, string][] = [
  [/PRIVATE KEY|PuTTY-User-Key-File|b3BlbnNzaC1rZXktdjE/, "it looks like a private key — never put a private key here"],
  [/BEGIN SSH2 PUBLIC KEY/, "it looks like an RFC 4716 public key: convert it with `ssh-keygen -i -f FILE`"],
  [/BEGIN (RSA )?PUBLIC KEY|BEGIN CERTIFICATE/, "it looks like a PEM key or certificate: give the OpenSSH line (`ssh-keygen -i -m PKCS8 -f FILE`)"],
];

/** The OpenSSH fingerprint of a key blob: `SHA256:` and the unpadded base64 of its SHA-256. */
export function hostKeyFingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The key type written at the start of a key blob (an SSH string), or undefined when there is none. */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  if (length === 0 || length > 64 || blob.length < 4 + length) return undefined;
  return blob.subarray(4, 4 + length).toString("latin1");
}

/**
 * Parses the pinned host keys: one or more lines, each a public key line (`type base64 [comment]`),
 * a line of `ssh-keyscan` output (`host type base64`) or a `known_hosts` line (`hosts type base64
 * [comment]`, hashed `|1|…` hosts and `[host]:port` included; the host field is ignored). Blank and
 * `#` lines are skipped; duplicate keys are kept once. Throws an "SshError" on anything else: on a
 * known_hosts marker (`@cert-authority`, `@revoked`), a line that is no key line, or no key at all.
 * Error messages name the line number and what is wrong with it, never the text given: a private
 * key pasted here by mistake must not end up in a log or in the stack's state.
 */
export function parseHostKeys(text: string): HostKey[] {
  if (typeof text !== "string") {
    throw sshError(`hostKey must be text (OpenSSH public key lines), not ${text === null ? "null" : typeof text}`);
  }
  const keys: HostKey[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `hostKey line ${i + 1}`;
    const fields = line.split(/\s+/);
    if (fields[0].startsWith("@")) {
      throw sshError(`${where}: known_hosts markers (@cert-authority, @revoked) are not supported: pin the host's own public keys`);
    }
    const isKey = (at: number) => fields.length >= at + 2 && KEY_TYPE.test(fields[at]) && BASE64.test(fields[at + 1]);
    const at = isKey(0) ? 0 : isKey(1) ? 1 : -1;
    if (at < 0) {
      const hint = MISTAKES.find(([shape]) => shape.test(text));
      throw sshError(
        `${where} is not an OpenSSH public key line (expected "ssh-ed25519 AAAA…", ` +
          `"HOST ssh-ed25519 AAAA…" as ssh-keyscan prints it, or a known_hosts line)${hint ? `; ${hint[1]}` : ""}`,
      );
    }
    const blob = Buffer.from(fields[at + 1], "base64");
    // The blob starts with its own key type as an SSH string; it must agree with the type field, and hold more than that.
    const type = blobType(blob);
    if (type !== fields[at] || blob.length <= 8 + type.length) {
      throw sshError(`${where}: the key data does not match the key type in front of it (a truncated or mixed-up line?)`);
    }
    if (!keys.some((k) => k.blob.equals(blob))) {
      keys.push({ type, blob, fingerprint: hostKeyFingerprint(blob) });
    }
  }
  if (keys.length === 0) {
    throw sshError("hostKey has no key line (only blank lines or # comments): pin the host's public keys, e.g. what `ssh-keyscan -p PORT HOST` prints");
  }
  return keys;
}

/**
 * Parses pinned host keys like {@link parseHostKeys} (every line is checked) and returns the first
 * one. Kept for callers that validate a `hostKey` or expect a single key.
 */
export function parseHostKey(text: string): HostKey {
  return parseHostKeys(text)[0];
}

/** Host key algorithms of ssh2 (1.17), in its order of preference, by the key type they verify. */
const HOST_KEY_ALGORITHMS: [algorithm: string, keyType: string][] = [
  ["ssh-ed25519", "ssh-ed25519"],
  ["ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"],
  ["ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"],
  ["ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521"],
  ["rsa-sha2-512", "ssh-rsa"],
  ["rsa-sha2-256", "ssh-rsa"],
  ["ssh-rsa", "ssh-rsa"],
  ["ssh-dss", "ssh-dss"],
];

/**
 * The host key algorithms to offer for the pinned keys (ssh2's `algorithms.serverHostKey`): only
 * those that verify a pinned type, so the server proves a key we can check rather than its own
 * favourite. An `ssh-rsa` key gives `rsa-sha2-512`, `rsa-sha2-256` and `ssh-rsa`. Pinned types the
 * library cannot verify (certificates, `sk-` keys) are left out; throws when none is left.
 */
export function hostKeyAlgorithms(keys: Pick<HostKey, "type">[]): string[] {
  const types = new Set(keys.map((k) => k.type));
  const algorithms = HOST_KEY_ALGORITHMS.filter(([, type]) => types.has(type)).map(([algorithm]) => algorithm);
  if (algorithms.length === 0) {
    throw sshError(
      `hostKey has no key of a type that can be checked (pinned: ${[...types].join(", ")}); ` +
        "pin an ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa key",
    );
  }
  return algorithms;
}

/** Whether a hop skips the host key check: only the boolean `true` does (anything else means pinned). */
function insecure(conn: Pick<SshConnection, "insecureIgnoreHostKey">): boolean {
  return conn.insecureIgnoreHostKey === true;
}

/**
 * The hops of a connection that do not check the host key ({@link SshConnection.insecureIgnoreHostKey}),
 * named like {@link sshTarget}: the target as `user@host:port` (with ` via …` when it has a bastion),
 * then the bastion as `user@host:port`. Empty when every hop is pinned. For a warning per hop.
 */
export function insecureHops(conn: SshConnection): string[] {
  const hops: string[] = [];
  if (insecure(conn)) hops.push(sshTarget(conn));
  if (conn.proxy && insecure(conn.proxy)) hops.push(sshTarget(conn.proxy));
  return hops;
}

/** A key type sent by the server, safe to print. */
function printableType(blob: Buffer): string {
  const type = blobType(blob);
  return type && /^[A-Za-z0-9@._-]+$/.test(type) ? type : "key of unknown type";
}

const describeKeys = (keys: HostKey[]) => keys.map((k) => `${k.fingerprint} (${k.type})`).join(", ");

/** Human-readable name of a connection, for messages: `user@host:port` (via bastion). */
export function sshTarget(conn: Pick<SshConnection, "host" | "port" | "user" | "proxy">): string {
  const self = `${conn.user ?? "root"}@${conn.host}:${conn.port ?? 22}`;
  return conn.proxy ? `${self} via ${sshTarget(conn.proxy)}` : self;
}

function connectOnce(conn: Omit<SshConnection, "proxy" | "sudo">, sock?: Duplex): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let pinned: HostKey[] | undefined;
    let algorithms: string[] | undefined;
    if (!insecure(conn)) {
      if (!conn.hostKey) {
        reject(sshError(`no hostKey for ${sshTarget(conn)}: pin the host's public keys, or set insecureIgnoreHostKey for a throwaway host`));
        return;
      }
      try {
        pinned = parseHostKeys(conn.hostKey);
        algorithms = hostKeyAlgorithms(pinned);
      } catch (err) {
        // Name the hop: a bastion's hostKey and the target's are both called hostKey.
        reject(sshError(`${sshTarget(conn)}: ${(err as Error).message}`));
        return;
      }
    }
    const accepted = (key: Buffer) => pinned === undefined || pinned.some((k) => k.blob.equals(key));
    let presented: Buffer | undefined;
    const config: ConnectConfig = {
      host: conn.host,
      port: conn.port ?? 22,
      username: conn.user ?? "root",
      privateKey: conn.privateKey,
      passphrase: conn.passphrase,
      readyTimeout: (conn.dialTimeoutSeconds ?? 15) * 1000,
      keepaliveInterval: 10_000,
      hostVerifier: (key: Buffer) => {
        presented = key;
        return accepted(key);
      },
      sock,
    };
    if (algorithms) {
      config.algorithms = { serverHostKey: algorithms as NonNullable<NonNullable<ConnectConfig["algorithms"]>["serverHostKey"]> };
    }
    // One listener for the client's whole life (`on`, not `once`): ssh2 can emit a second error
    // after the first (a handshake time-out, then "Connection lost before handshake"), and an
    // error event nobody listens to would bring the whole provider process down. Only the first
    // error before "ready" decides; later ones end in the session's own close handling.
    let settled = false;
    client.once("ready", () => {
      settled = true;
      resolve(client);
    });
    client.on("error", (err: Error & { level?: string }) => {
      if (settled) return;
      settled = true;
      // destroy, not end: a connection that failed in its handshake must not keep the process alive.
      client.destroy();
      if (pinned && presented && !accepted(presented)) {
        reject(
          sshError(
            `host key mismatch for ${sshTarget(conn)}: the server presented ${printableType(presented)} ` +
              `${hostKeyFingerprint(presented)}, the pinned keys are ${describeKeys(pinned)}; refusing to connect`,
          ),
        );
      } else if (pinned && !presented && /no matching host key/i.test(err.message)) {
        reject(
          sshError(
            `host key mismatch for ${sshTarget(conn)}: the server has no key of the pinned types ` +
              `(${[...new Set(pinned.map((k) => k.type))].join(", ")}); the pinned keys are ${describeKeys(pinned)}; refusing to connect`,
          ),
        );
      } else {
        reject(sshError(`cannot connect to ${sshTarget(conn)}: ${err.message}`));
      }
    });
    try {
      client.connect(config);
    } catch (err) {
      // ssh2 checks the private key here; some of its messages quote bytes of the key ("…: <value>"): cut them off.
      const message = String((err as Error).message).replace(/^([^:]*:[^:]*):.*$/s, "$1");
      reject(sshError(`cannot use the privateKey for ${sshTarget(conn)}: ${message}`));
    }
  });
}

function forward(bastion: Client, host: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    bastion.forwardOut("127.0.0.1", 0, host, port, (err, stream) => (err ? reject(err) : resolve(stream)));
  });
}

/** Per bastion (`user@host:port`), its handshakes in progress in this process and who waits for one. */
// A plain object, not a Map: this module is also serialized by value into the dynamic provider.
const handshakes: Record<string, { active: number; waiting: (() => void)[] }> = {};

/**
 * Runs `f` (a handshake with the bastion `key`) once fewer than `max` of them are in progress in this
 * process; in the order they asked. See {@link SshConnection.maxStartups}.
 */
export async function underStartupLimit<T>(key: string, max: number, f: () => Promise<T>): Promise<T> {
  const s = handshakes[key] ?? { active: 0, waiting: [] };
  handshakes[key] = s;
  if (s.active >= max) await new Promise<void>((resume) => s.waiting.push(resume));
  else s.active++;
  try {
    return await f();
  } finally {
    // The slot passes to the next in line (active stays the same), or is given back.
    const next = s.waiting.shift();
    if (next) next();
    else if (--s.active === 0) delete handshakes[key];
  }
}

/** {@link SshConnection.maxStartups} of a bastion, checked. */
export function maxStartupsOf(proxy: Pick<SshConnection, "maxStartups" | "host" | "port" | "user">): number {
  const n = proxy.maxStartups ?? 8;
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw sshError(`proxy.maxStartups of ${sshTarget(proxy)} must be a whole number from 1 to 1000, not ${JSON.stringify(proxy.maxStartups)}`);
  }
  return n;
}

async function connect(conn: SshConnection): Promise<{ client: Client; close: () => void }> {
  if (!conn.proxy) {
    const client = await connectOnce(conn);
    return { client, close: () => client.end() };
  }
  const proxy = conn.proxy;
  const bastion = await underStartupLimit(sshTarget(proxy), maxStartupsOf(proxy), () => connectOnce(proxy));
  try {
    const stream = await forward(bastion, conn.host, conn.port ?? 22);
    const client = await connectOnce(conn, stream);
    return {
      client,
      close: () => {
        client.end();
        bastion.end();
      },
    };
  } catch (err) {
    bastion.end();
    throw err;
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Connects (retrying only the connection, with back-off), runs `script` with `/bin/sh -s` (through
 * `sudo -n` when asked) and returns its exit code and output. The script is sent on standard input.
 */
/**
 * The remote command that runs a script sent on standard input: it reads exactly the script's
 * length, checks its sha256, and only then runs it, so a script cut short in transit (or altered)
 * runs not one line. Only the length and the hash reach the command line; no value does.
 */
export function remoteCommand(script: string, sudo: boolean): string {
  const bytes = Buffer.byteLength(script, "utf8");
  const sum = createHash("sha256").update(script, "utf8").digest("hex");
  const inner =
    `LC_ALL=C; export LC_ALL; s=$(head -c ${bytes}; echo .); s=\${s%.}; h=$(printf %s "$s" | sha256sum); ` +
    `[ "\${h%% *}" = ${sum} ] || { echo "pulumi-backlog: the script arrived incomplete or altered (${bytes} bytes expected); nothing ran" >&2; exit 121; }; eval "$s"`;
  return `${sudo ? "sudo -n " : ""}/bin/sh -c '${inner}'`;
}

/**
 * Connects (retrying only the connection, with back-off), runs `script` with `/bin/sh` (through
 * `sudo -n` when asked) and returns its exit code and output. The script is sent on standard input
 * and checked whole before it runs (see {@link remoteCommand}). The whole call, connection and
 * bastion forward included, is bounded by {@link SshConnection.scriptTimeoutSeconds}: when it runs
 * over, the connection is closed (the host's script then rolls back, see plan.ts) and the result
 * says `timedOut` with what was printed so far.
 */
export async function runScript(conn: SshConnection, script: string, options: RunOptions = {}): Promise<ScriptResult> {
  const limit = (conn.scriptTimeoutSeconds ?? 300) * 1000;
  const deadline = Date.now() + limit;
  const attempts = Math.max(1, conn.dialAttempts ?? 5);
  if (conn.proxy) maxStartupsOf(conn.proxy); // a wrong value fails now, not after every attempt
  let session: { client: Client; close: () => void } | undefined;
  for (let attempt = 1; !session; attempt++) {
    try {
      session = await withDeadline(
        connect(conn),
        deadline,
        (s) => s.close(),
        () => sshError(`timed out after ${limit / 1000} s connecting to ${sshTarget(conn)}`),
      );
    } catch (err) {
      const mismatch = err instanceof Error && err.name === "SshError" && /host key mismatch|no hostKey|hostKey |timed out/.test(err.message);
      if (mismatch || attempt >= attempts) {
        throw err;
      }
      await delay(Math.min(500 * 2 ** (attempt - 1), 4000, Math.max(0, deadline - Date.now())));
    }
  }
  const { client, close } = session;
  const sudo = conn.sudo ?? (conn.user ?? "root") !== "root";
  try {
    return await new Promise<ScriptResult>((resolve, reject) => {
      client.exec(remoteCommand(script, sudo), (err, stream) => {
        if (err) {
          reject(sshError(`cannot start a shell on ${sshTarget(conn)}: ${err.message}`));
          return;
        }
        const out: Buffer[] = [];
        const errs: Buffer[] = [];
        let code = -1;
        let done = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const finish = (timedOut: boolean) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve({
            code: timedOut ? -1 : code,
            stdout: Buffer.concat(out).toString(),
            stderr: Buffer.concat(errs).toString(),
            ...(timedOut ? { timedOut } : {}),
          });
        };
        timer = setTimeout(
          () => {
            finish(true);
            close();
          },
          Math.max(1, deadline - Date.now()),
        );
        // Whoever waited for the result is gone: end the session, so the host rolls back.
        const abort = () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          close();
          reject(
            sshError(
              `stopped on ${sshTarget(conn)}: ${(options.signal?.reason as Error | undefined)?.message ?? "aborted"}; the session was closed, so the host puts back what this run changed`,
            ),
          );
        };
        if (options.signal?.aborted) abort();
        options.signal?.addEventListener("abort", abort, { once: true });
        stream.on("data", (d: Buffer) => out.push(d));
        stream.stderr.on("data", (d: Buffer) => errs.push(d));
        stream.on("exit", (c: number | null, signal?: string) => {
          code = c ?? (signal ? 128 : -1);
        });
        stream.on("close", () => finish(false));
        stream.end(script);
      });
    });
  } finally {
    close();
  }
}

/** Options of {@link runScript}. */
export interface RunOptions {
  /** When it aborts, the session is closed at once and the call fails (default: none). */
  signal?: AbortSignal;
}

/** Resolves like `p` unless `deadline` (epoch ms) passes first; a late result is disposed of. */
function withDeadline<T>(p: Promise<T>, deadline: number, dispose: (v: T) => void, error: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let late = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    timer = setTimeout(
      () => {
        late = true;
        reject(error());
      },
      Math.max(1, deadline - Date.now()),
    );
    p.then(
      (v) => {
        clearTimeout(timer);
        if (late) dispose(v);
        else resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        if (!late) reject(e);
      },
    );
  });
}
