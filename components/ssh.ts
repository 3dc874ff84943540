/**
 * SSH transport: how the library reaches a host. One call of {@link runScript} is one SSH
 * connection (plus one to the bastion when a proxy is set) that runs one POSIX shell script sent
 * on standard input, so no script text, path or value ever appears on a remote command line.
 *
 * The host key is pinned: the connection is refused unless the key the server presents is exactly
 * the one given in {@link SshConnection.hostKey}. Skipping the check needs an explicit, loudly
 * named opt-out ({@link SshConnection.insecureIgnoreHostKey}).
 */
import { Client, ConnectConfig } from "ssh2";
import type { Duplex } from "stream";

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
     * The host's public key as one OpenSSH line, as in `known_hosts` or `/etc/ssh/ssh_host_ed25519_key.pub`:
     * `ssh-ed25519 AAAA… [comment]`. Required unless {@link insecureIgnoreHostKey} is set.
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
    /** Seconds to wait for each connection attempt, handshake included. Default 15. */
    dialTimeoutSeconds?: number;
    /** How many times to try to connect before giving up (the script itself never runs twice). Default 5. */
    dialAttempts?: number;
}

/** What a remote script returned. */
export interface ScriptResult {
    /** Exit status of the script (non-zero when it failed). */
    code: number;
    stdout: string;
    stderr: string;
}

/**
 * A connection problem (not a failed script): unreachable host, refused key, wrong host key.
 * A plain `Error` named "SshError", not a subclass: this module runs inside the dynamic provider,
 * whose serialized code turns `class … extends Error` into a function that loses the message.
 */
export function sshError(message: string): Error {
    return Object.assign(new Error(message), { name: "SshError" });
}

/** Parses an OpenSSH public key line into its type and key blob. Throws on anything else. */
export function parseHostKey(line: string): { type: string; blob: Buffer } {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 2 || !/^(ssh-|ecdsa-|sk-)[a-z0-9@.-]+$/.test(fields[0]) || !/^[A-Za-z0-9+/]+={0,2}$/.test(fields[1])) {
        throw sshError(`hostKey ${JSON.stringify(line)} is not an OpenSSH public key line ("ssh-ed25519 AAAA…")`);
    }
    const blob = Buffer.from(fields[1], "base64");
    // The blob starts with its own key type as an SSH string; it must agree with the first field.
    const typeLength = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
    if (typeLength < 0 || blob.subarray(4, 4 + typeLength).toString() !== fields[0]) {
        throw sshError(`hostKey ${JSON.stringify(line)}: the key data does not match its type ${fields[0]}`);
    }
    return { type: fields[0], blob };
}

/** Human-readable name of a connection, for messages: `user@host:port` (via bastion). */
export function sshTarget(conn: Pick<SshConnection, "host" | "port" | "user" | "proxy">): string {
    const self = `${conn.user ?? "root"}@${conn.host}:${conn.port ?? 22}`;
    return conn.proxy ? `${self} via ${sshTarget(conn.proxy)}` : self;
}

function connectOnce(conn: Omit<SshConnection, "proxy" | "sudo">, sock?: Duplex): Promise<Client> {
    return new Promise((resolve, reject) => {
        const client = new Client();
        let pinned: Buffer | undefined;
        if (!conn.insecureIgnoreHostKey) {
            if (!conn.hostKey) {
                reject(sshError(`no hostKey for ${sshTarget(conn)}: pin the host's public key, or set insecureIgnoreHostKey for a throwaway host`));
                return;
            }
            pinned = parseHostKey(conn.hostKey).blob;
        }
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
                return pinned === undefined || key.equals(pinned);
            },
            sock,
        };
        client.once("ready", () => resolve(client));
        client.once("error", (err: Error & { level?: string }) => {
            // destroy, not end: a connection that failed in its handshake must not keep the process alive.
            client.destroy();
            if (pinned && presented && !presented.equals(pinned)) {
                reject(sshError(`host key mismatch for ${sshTarget(conn)}: the server presented a key other than the pinned hostKey; refusing to connect`));
            } else {
                reject(sshError(`cannot connect to ${sshTarget(conn)}: ${err.message}`));
            }
        });
        client.connect(config);
    });
}

function forward(bastion: Client, host: string, port: number): Promise<Duplex> {
    return new Promise((resolve, reject) => {
        bastion.forwardOut("127.0.0.1", 0, host, port, (err, stream) => (err ? reject(err) : resolve(stream)));
    });
}

async function connect(conn: SshConnection): Promise<{ client: Client; close: () => void }> {
    if (!conn.proxy) {
        const client = await connectOnce(conn);
        return { client, close: () => client.end() };
    }
    const bastion = await connectOnce(conn.proxy);
    try {
        const stream = await forward(bastion, conn.host, conn.port ?? 22);
        const client = await connectOnce(conn, stream);
        return { client, close: () => { client.end(); bastion.end(); } };
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
export async function runScript(conn: SshConnection, script: string): Promise<ScriptResult> {
    const attempts = Math.max(1, conn.dialAttempts ?? 5);
    let session: { client: Client; close: () => void } | undefined;
    for (let attempt = 1; !session; attempt++) {
        try {
            session = await connect(conn);
        } catch (err) {
            const mismatch = err instanceof Error && err.name === "SshError" && /host key mismatch|no hostKey|hostKey /.test(err.message);
            if (mismatch || attempt >= attempts) {
                throw err;
            }
            await delay(Math.min(500 * 2 ** (attempt - 1), 4000));
        }
    }
    const { client, close } = session;
    const sudo = conn.sudo ?? (conn.user ?? "root") !== "root";
    const command = sudo ? "sudo -n /bin/sh -s" : "/bin/sh -s";
    try {
        return await new Promise<ScriptResult>((resolve, reject) => {
            client.exec(command, (err, stream) => {
                if (err) {
                    reject(sshError(`cannot start a shell on ${sshTarget(conn)}: ${err.message}`));
                    return;
                }
                const out: Buffer[] = [];
                const errs: Buffer[] = [];
                let code = -1;
                stream.on("data", (d: Buffer) => out.push(d));
                stream.stderr.on("data", (d: Buffer) => errs.push(d));
                stream.on("exit", (c: number | null, signal?: string) => {
                    code = c ?? (signal ? 128 : -1);
                });
                stream.on("close", () =>
                    resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(errs).toString() }));
                stream.end(script);
            });
        });
    } finally {
        close();
    }
}
