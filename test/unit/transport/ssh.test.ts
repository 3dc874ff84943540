/** The pure parts of the SSH transport: host key parsing, fingerprints, algorithms, connection names. */
import { execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import {
  hostKeyAlgorithms,
  hostKeyFingerprint,
  insecureHops,
  maxStartupsOf,
  parseHostKey,
  parseHostKeys,
  runScript,
  type SshConnection,
  sshTarget,
  underStartupLimit,
} from "../../../src/transport/ssh";

/**
 * ssh2 with a fake Client: records the ConnectConfig that connectOnce builds and plays a server
 * that presents `mockSsh.present` (or offers no host key type in common, or fails to authenticate).
 */
const mockSsh: { configs: Record<string, any>[]; present?: Buffer; noCommonType?: boolean; twoErrors?: boolean } = { configs: [] };
jest.mock("ssh2", () => {
  const actual = jest.requireActual("ssh2");
  const { EventEmitter } = jest.requireActual("events");
  class Client extends EventEmitter {
    connect(cfg: Record<string, any>) {
      mockSsh.configs.push(cfg);
      if (cfg.privateKey === "unparseable") throw new Error("Cannot parse privateKey: Unsupported OpenSSH key magic: S3CRETBYTES");
      setImmediate(() => {
        if (mockSsh.twoErrors) {
          // What ssh2 does against a server that accepts TCP and never speaks SSH: a time-out, then
          // a second error; an error event without a listener throws (it crashed the provider).
          this.emit("error", new Error("Timed out while waiting for handshake"));
          this.emit("error", new Error("Connection lost before handshake"));
          return;
        }
        if (mockSsh.noCommonType) {
          this.emit("error", new Error("Handshake failed: no matching host key format"));
          return;
        }
        const ok = mockSsh.present === undefined || cfg.hostVerifier(mockSsh.present);
        this.emit("error", new Error(ok ? "All configured authentication methods failed" : "Host denied (verification failed)"));
      });
    }
    destroy() {}
    end() {}
  }
  return { ...actual, Client };
});

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4Gg4rD+B/RoFavrJXOmlAiMKiC5EyU7hiPf8omSLLJ";

// ---- keys made on the spot: with ssh-keygen when there is one (then fingerprints are checked against it), else with node's crypto

const hasSshKeygen = (() => {
  try {
    execFileSync("ssh-keygen", ["-?"], { stdio: "ignore" });
    return true;
  } catch (err) {
    return (err as { code?: string }).code !== "ENOENT";
  }
})();

type Generated = { type: string; publicLine: string; privateKey: string; keygenFingerprint?: string };

const sshString = (b: Buffer | string) => {
  const data = Buffer.isBuffer(b) ? b : Buffer.from(b);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, data]);
};
const mpint = (b64url: string) => {
  let b = Buffer.from(b64url, "base64url");
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return sshString(b);
};

/** A public key line and private key made with node's crypto. */
function cryptoKey(kind: "ed25519" | "ecdsa" | "rsa"): Generated {
  if (kind === "ed25519") {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const jwk = publicKey.export({ format: "jwk" });
    const blob = Buffer.concat([sshString("ssh-ed25519"), sshString(Buffer.from(jwk.x!, "base64url"))]);
    return {
      type: "ssh-ed25519",
      publicLine: `ssh-ed25519 ${blob.toString("base64")}`,
      privateKey: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    };
  }
  if (kind === "ecdsa") {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = publicKey.export({ format: "jwk" });
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]);
    const blob = Buffer.concat([sshString("ecdsa-sha2-nistp256"), sshString("nistp256"), sshString(point)]);
    return {
      type: "ecdsa-sha2-nistp256",
      publicLine: `ecdsa-sha2-nistp256 ${blob.toString("base64")}`,
      privateKey: privateKey.export({ format: "pem", type: "sec1" }).toString(),
    };
  }
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = publicKey.export({ format: "jwk" });
  const blob = Buffer.concat([sshString("ssh-rsa"), mpint(jwk.e!), mpint(jwk.n!)]);
  return { type: "ssh-rsa", publicLine: `ssh-rsa ${blob.toString("base64")}`, privateKey: privateKey.export({ format: "pem", type: "pkcs1" }).toString() };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ssh-unit-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A key pair made with ssh-keygen, and the fingerprint `ssh-keygen -lf` prints for it. */
function keygenKey(kind: "ed25519" | "ecdsa" | "rsa"): Generated {
  const file = path.join(tmp, `id_${kind}`);
  execFileSync("ssh-keygen", ["-q", "-t", kind, "-N", "", "-C", "unit@test", "-f", file]);
  const publicLine = fs.readFileSync(`${file}.pub`, "utf8").trim();
  // "256 SHA256:… unit@test (ED25519)"
  const keygenFingerprint = execFileSync("ssh-keygen", ["-lf", `${file}.pub`], { encoding: "utf8" }).split(/\s+/)[1];
  return { type: publicLine.split(" ")[0], publicLine, privateKey: fs.readFileSync(file, "utf8"), keygenFingerprint };
}

const KINDS = ["ed25519", "ecdsa", "rsa"] as const;
const keys: Record<(typeof KINDS)[number], Generated> = Object.fromEntries(KINDS.map((k) => [k, hasSshKeygen ? keygenKey(k) : cryptoKey(k)])) as Record<
  (typeof KINDS)[number],
  Generated
>;
const other = cryptoKey("ed25519");
/** Private keys in every format at hand: OpenSSH (ssh-keygen) and PEM (PKCS#8, SEC1, PKCS#1). */
const privateKeys = [...KINDS.map((k) => keys[k].privateKey), ...KINDS.map((k) => cryptoKey(k).privateKey)];
const blobOf = (line: string) => Buffer.from(line.split(" ")[1], "base64");

/** The lines of `text` (trimmed, longer than 8 characters) that appear in `message`. */
function leakedLines(message: string, text: string): string[] {
  return text
    .split(/\r\n|\r|\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 8 && message.includes(l));
}
function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

// ---- parsing

test("parseHostKey takes an OpenSSH public key line, with or without comment", () => {
  expect(parseHostKey(ED25519).type).toBe("ssh-ed25519");
  expect(parseHostKey(`${ED25519} root@web1`).blob.length).toBe(51);
});

test.each([
  ["garbage", "not a key"],
  ["a key type without data", "ssh-ed25519"],
  ["data of another type", ED25519.replace("ssh-ed25519", "ssh-rsa")],
  ["a private key", "-----BEGIN OPENSSH PRIVATE KEY-----"],
])("parseHostKey refuses %s", (_name, line) => {
  expect(() => parseHostKey(line)).toThrow(/hostKey/);
});

test.each(KINDS)("the fingerprint of a generated %s key is the one ssh-keygen -l prints", (kind) => {
  const [key] = parseHostKeys(keys[kind].publicLine);
  expect(key.type).toBe(keys[kind].type);
  expect(key.blob.equals(blobOf(keys[kind].publicLine))).toBe(true);
  expect(key.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  expect(key.fingerprint).toBe(`SHA256:${createHash("sha256").update(key.blob).digest("base64").replace(/=+$/, "")}`);
  if (hasSshKeygen) expect(key.fingerprint).toBe(keys[kind].keygenFingerprint);
});

test("several key lines give several keys, in order; blank lines, CRLF and repeats are fine", () => {
  const text = `\r\n${keys.ed25519.publicLine}\r\n\r\n  ${keys.ecdsa.publicLine}  \n${keys.rsa.publicLine}\n${keys.ed25519.publicLine} again\n`;
  const parsed = parseHostKeys(text);
  expect(parsed.map((k) => k.type)).toEqual(["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"]);
  expect(parsed.map((k) => k.fingerprint)).toEqual(KINDS.map((k) => hostKeyFingerprint(blobOf(keys[k].publicLine))));
});

test("ssh-keyscan output: host fields (with and without port) and # comment lines", () => {
  const scan = [
    "# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
    `[127.0.0.1]:2222 ${keys.rsa.publicLine.split(" ").slice(0, 2).join(" ")}`,
    "# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
    `[127.0.0.1]:2222 ${keys.ecdsa.publicLine.split(" ").slice(0, 2).join(" ")}`,
    "# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
    `web1.example.com ${keys.ed25519.publicLine.split(" ").slice(0, 2).join(" ")}`,
  ].join("\n");
  expect(parseHostKeys(scan).map((k) => k.type)).toEqual(["ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519"]);
});

test("known_hosts lines: host lists, [host]:port and hashed |1| host fields, with comments", () => {
  const text = [
    "# known_hosts",
    `|1|JfKTdBh7rNbXkVAQCRp4OQoPfmI=|USECr3SWf1JUPsms5AqfD5QfxkM= ${keys.ed25519.publicLine}`,
    `web1,10.0.0.5 ${keys.ecdsa.publicLine}`,
    `[10.0.0.5]:2222,[web1]:2222 ${keys.rsa.publicLine} rsa host key`,
  ].join("\n");
  expect(parseHostKeys(text).map((k) => k.type)).toEqual(["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"]);
});

(hasSshKeygen ? test : test.skip)("a known_hosts file hashed by ssh-keygen -H", () => {
  const file = path.join(tmp, "known_hosts");
  fs.writeFileSync(file, KINDS.map((k) => `[127.0.0.1]:2222 ${keys[k].publicLine}\n`).join(""));
  execFileSync("ssh-keygen", ["-H", "-f", file], { stdio: "ignore" });
  const hashed = fs.readFileSync(file, "utf8");
  expect(hashed).toMatch(/^\|1\|/);
  expect(parseHostKeys(hashed).map((k) => k.fingerprint)).toEqual(KINDS.map((k) => parseHostKey(keys[k].publicLine).fingerprint));
});

test.each([
  [
    "a @cert-authority line",
    `${ED25519}\n@cert-authority *.example.com ${keys.ed25519.publicLine}`,
    /^hostKey line 2: known_hosts markers \(@cert-authority, @revoked\) are not supported/,
  ],
  ["a @revoked line", `@revoked * ${keys.rsa.publicLine}`, /^hostKey line 1: known_hosts markers/],
  ["nothing but comments", "# 127.0.0.1:22 SSH-2.0-OpenSSH_9.2\n\n", /^hostKey has no key line/],
  ["an empty string", "", /^hostKey has no key line/],
  ["a line without key data", `${ED25519}\nweb1 ssh-ed25519`, /^hostKey line 2 is not an OpenSSH public key line/],
  ["key data that is not base64", "ssh-ed25519 not-base64!", /^hostKey line 1 is not an OpenSSH public key line/],
  ["key data of another type", `${keys.ecdsa.publicLine}\nssh-rsa ${ED25519.split(" ")[1]}`, /^hostKey line 2: the key data does not match the key type/],
  ["truncated key data", ED25519.slice(0, 30), /^hostKey line 1: the key data does not match the key type/],
  ["an RFC 4716 public key", "---- BEGIN SSH2 PUBLIC KEY ----\nAAAAC3Nza\n---- END SSH2 PUBLIC KEY ----", /RFC 4716.*ssh-keygen -i/],
])("parseHostKeys refuses %s, by line number", (_name, text, message) => {
  const error = errorOf(() => parseHostKeys(text));
  expect(error.name).toBe("SshError");
  expect(error.message).toMatch(message);
  expect(leakedLines(error.message, text)).toEqual([]);
});

test.each(privateKeys.map((k, i) => [i, k]))("a private key (#%s) is refused as one, without a line of it", (_i, privateKey) => {
  const error = errorOf(() => parseHostKeys(privateKey as string));
  expect(error.message).toMatch(
    /^hostKey line 1 is not an OpenSSH public key line \(expected "ssh-ed25519 AAAA…".*\); it looks like a private key — never put a private key here$/,
  );
  expect(leakedLines(error.message, privateKey as string)).toEqual([]);
});

test("property: a private key mixed into host keys, in any shape, is refused without echoing any line", () => {
  const pubLines = KINDS.map((k) => keys[k].publicLine);
  const shape = fc.constantFrom(
    (k: string) => k,
    (k: string) => k.replace(/\n/g, "\r\n"),
    (k: string) => k.replace(/\n/g, " "), // one line, as from an environment variable
    (k: string) =>
      k
        .split("\n")
        .filter((l) => !l.startsWith("-----"))
        .join("\n"), // the base64 body only
  );
  fc.assert(
    fc.property(fc.constantFrom(...privateKeys), shape, fc.subarray(pubLines), fc.nat(), (privateKey, reshape, before, at) => {
      const lines = [...before];
      lines.splice(at % (lines.length + 1), 0, reshape(privateKey));
      const text = lines.join("\n");
      const error = errorOf(() => parseHostKeys(text));
      expect(error.name).toBe("SshError");
      expect(leakedLines(error.message, text)).toEqual([]);
      if (/PRIVATE KEY|b3BlbnNzaC1rZXktdjE/.test(text)) expect(error.message).toContain("never put a private key here");
    }),
    { numRuns: 200 },
  );
});

test("property: any text is either pinned keys or an error that quotes no line of it", () => {
  const line = fc.oneof(
    fc.string(),
    fc.string({ unit: "binary", maxLength: 120 }),
    fc.constantFrom(...KINDS.map((k) => keys[k].publicLine), "# comment line here", "", "@cert-authority * x"),
    fc
      .tuple(fc.constantFrom("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "web1"), fc.base64String({ minLength: 4, maxLength: 200 }))
      .map(([t, b]) => `${t} ${b}`),
    fc.tuple(fc.string(), fc.constantFrom(...KINDS.map((k) => keys[k].publicLine))).map(([h, k]) => `${h} ${k}`),
  );
  fc.assert(
    fc.property(fc.array(line, { maxLength: 8 }), fc.constantFrom("\n", "\r\n"), (lines, eol) => {
      const text = lines.join(eol);
      let parsed: ReturnType<typeof parseHostKeys>;
      try {
        parsed = parseHostKeys(text);
      } catch (err) {
        expect((err as Error).name).toBe("SshError");
        expect((err as Error).message).toMatch(/^hostKey /);
        expect(leakedLines((err as Error).message, text)).toEqual([]);
        return;
      }
      expect(parsed.length).toBeGreaterThan(0);
    }),
    { numRuns: 500 },
  );
});

test("parseHostKeys refuses what is not text, without printing it", () => {
  expect(() => parseHostKeys(undefined as unknown as string)).toThrow(/^hostKey must be text .*not undefined$/);
  expect(() => parseHostKeys({ key: "x" } as unknown as string)).toThrow(/not object$/);
});

// ---- algorithms offered to the server

test.each([
  [["ssh-ed25519"], ["ssh-ed25519"]],
  [["ecdsa-sha2-nistp256"], ["ecdsa-sha2-nistp256"]],
  [["ecdsa-sha2-nistp521"], ["ecdsa-sha2-nistp521"]],
  [["ssh-rsa"], ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]],
  [
    ["ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519"],
    ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
  ],
  [["sk-ssh-ed25519@openssh.com", "ssh-ed25519"], ["ssh-ed25519"]],
])("pinned types %j offer the host key algorithms %j", (types, algorithms) => {
  expect(hostKeyAlgorithms(types.map((type) => ({ type })))).toEqual(algorithms);
});

test("property: only algorithms of pinned types are offered, all of them ones ssh2 supports", () => {
  const { SUPPORTED_SERVER_HOST_KEY } = jest.requireActual("ssh2/lib/protocol/constants");
  const keyType = (algorithm: string) => (algorithm.startsWith("rsa-sha2-") ? "ssh-rsa" : algorithm);
  const types = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa", "ssh-dss"];
  fc.assert(
    fc.property(fc.subarray(types, { minLength: 1 }), (pinned) => {
      const offered = hostKeyAlgorithms(pinned.map((type) => ({ type })));
      expect(offered.every((a) => pinned.includes(keyType(a)) && SUPPORTED_SERVER_HOST_KEY.includes(a))).toBe(true);
      expect(new Set(offered.map(keyType))).toEqual(new Set(pinned));
    }),
  );
});

test("pinning only key types that cannot be checked is an error", () => {
  expect(() => hostKeyAlgorithms([{ type: "ssh-ed25519-cert-v01@openssh.com" }])).toThrow(
    /^hostKey has no key of a type that can be checked \(pinned: ssh-ed25519-cert-v01@openssh.com\)/,
  );
});

// ---- what connectOnce hands to ssh2, and what a mismatch says (fake ssh2 client above)

describe("connecting", () => {
  beforeEach(() => {
    mockSsh.configs = [];
    mockSsh.present = undefined;
    mockSsh.noCommonType = false;
    mockSsh.twoErrors = false;
  });

  test("a second error after a handshake time-out is absorbed: the first one is reported, nothing crashes", async () => {
    mockSsh.twoErrors = true;
    await expect(runScript(conn({ hostKey: ED25519 }), "true")).rejects.toThrow(
      /^cannot connect to root@10\.0\.0\.5:2222: Timed out while waiting for handshake$/,
    );
  });
  const conn = (extra: Partial<SshConnection>): SshConnection => ({ host: "10.0.0.5", port: 2222, privateKey: "key", dialAttempts: 1, ...extra });

  test("offers only the pinned types and accepts exactly the pinned keys", async () => {
    const hostKey = `${keys.ecdsa.publicLine}\n${keys.rsa.publicLine}`;
    await expect(runScript(conn({ hostKey }), "true")).rejects.toThrow(/authentication methods failed/);
    const [cfg] = mockSsh.configs;
    expect(cfg.algorithms.serverHostKey).toEqual(["ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
    expect(cfg.hostVerifier(blobOf(keys.ecdsa.publicLine))).toBe(true);
    expect(cfg.hostVerifier(blobOf(keys.rsa.publicLine))).toBe(true);
    expect(cfg.hostVerifier(blobOf(keys.ed25519.publicLine))).toBe(false);
  });

  test("a mismatch names the type and fingerprint seen and the fingerprints pinned, no key material", async () => {
    mockSsh.present = blobOf(other.publicLine);
    const hostKey = `${keys.ed25519.publicLine}\n${keys.rsa.publicLine}`;
    const error = await runScript(conn({ hostKey }), "true").then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.name).toBe("SshError");
    const seen = hostKeyFingerprint(blobOf(other.publicLine));
    const [ed, rsa] = parseHostKeys(hostKey).map((k) => k.fingerprint);
    expect(error?.message).toBe(
      `host key mismatch for root@10.0.0.5:2222: the server presented ssh-ed25519 ${seen}, ` +
        `the pinned keys are ${ed} (ssh-ed25519), ${rsa} (ssh-rsa); refusing to connect`,
    );
    for (const line of [other.publicLine, keys.ed25519.publicLine, keys.rsa.publicLine]) {
      expect(error?.message).not.toContain(line.split(" ")[1].slice(0, 20));
    }
  });

  test("a server without any key of the pinned types is a mismatch, not a network problem", async () => {
    mockSsh.noCommonType = true;
    await expect(runScript(conn({ hostKey: keys.ecdsa.publicLine }), "true")).rejects.toThrow(
      /^host key mismatch for root@10\.0\.0\.5:2222: the server has no key of the pinned types \(ecdsa-sha2-nistp256\); the pinned keys are SHA256:\S+ \(ecdsa-sha2-nistp256\); refusing/,
    );
  });

  test("a bad bastion hostKey names the bastion and the line, and nothing is dialled", async () => {
    const proxy = { host: "bastion", privateKey: "key", hostKey: `${ED25519}\n${keys.ed25519.privateKey}` };
    const error = await runScript(conn({ hostKey: ED25519, proxy }), "true").then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(/^root@bastion:22: hostKey line 2 is not an OpenSSH public key line .*never put a private key here$/);
    expect(leakedLines(error!.message, proxy.hostKey)).toEqual([]);
    expect(mockSsh.configs).toEqual([]);
  });

  test.each([
    [
      "a mismatch",
      () => {
        mockSsh.present = blobOf(other.publicLine);
      },
      ED25519,
      1,
    ],
    [
      "no key of the pinned types",
      () => {
        mockSsh.noCommonType = true;
      },
      ED25519,
      1,
    ],
    ["a bad hostKey", () => undefined, `${ED25519}\nnot a key`, 0],
    [
      "only unusable key types",
      () => undefined,
      `ssh-ed25519-cert-v01@openssh.com ${Buffer.concat([sshString("ssh-ed25519-cert-v01@openssh.com"), sshString("x".repeat(40))]).toString("base64")}`,
      0,
    ],
  ])("%s is final: not retried", async (_name, arrange, hostKey, dials) => {
    arrange();
    const started = Date.now();
    await expect(runScript(conn({ hostKey: hostKey as string, dialAttempts: 5 }), "true")).rejects.toThrow(/hostKey |host key mismatch/);
    expect(mockSsh.configs.length).toBe(dials);
    expect(Date.now() - started).toBeLessThan(400);
  });

  test("insecureIgnoreHostKey leaves the algorithms alone and accepts any key; only the boolean true counts", async () => {
    mockSsh.present = blobOf(other.publicLine);
    await expect(runScript(conn({ insecureIgnoreHostKey: true }), "true")).rejects.toThrow(/authentication methods failed/);
    expect(mockSsh.configs[0].algorithms).toBeUndefined();
    await expect(runScript(conn({ insecureIgnoreHostKey: "true" as unknown as boolean }), "true")).rejects.toThrow(/^no hostKey for/);
  });

  test("a private key ssh2 cannot parse is reported without the bytes it quotes", async () => {
    const error = await runScript(conn({ hostKey: ED25519, privateKey: "unparseable" }), "true").then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toBe("cannot use the privateKey for root@10.0.0.5:2222: Cannot parse privateKey: Unsupported OpenSSH key magic");
  });
});

// ---- names

test("sshTarget names user, host, port and the bastion", () => {
  expect(sshTarget({ host: "10.0.0.5" })).toBe("root@10.0.0.5:22");
  expect(sshTarget({ host: "10.0.0.5", port: 2222, user: "deploy", proxy: { host: "bastion", privateKey: "" } })).toBe(
    "deploy@10.0.0.5:2222 via root@bastion:22",
  );
});

test("insecureHops names every hop that skips the host key check, target and bastion", () => {
  const bastion = { host: "bastion", privateKey: "", hostKey: ED25519 };
  const target = { host: "10.0.0.5", user: "deploy", privateKey: "", hostKey: ED25519 };
  expect(insecureHops(target)).toEqual([]);
  expect(insecureHops({ ...target, proxy: bastion })).toEqual([]);
  expect(insecureHops({ ...target, insecureIgnoreHostKey: true })).toEqual(["deploy@10.0.0.5:22"]);
  expect(insecureHops({ ...target, proxy: { ...bastion, insecureIgnoreHostKey: true } })).toEqual(["root@bastion:22"]);
  expect(insecureHops({ ...target, insecureIgnoreHostKey: true, proxy: { ...bastion, insecureIgnoreHostKey: true } })).toEqual([
    "deploy@10.0.0.5:22 via root@bastion:22",
    "root@bastion:22",
  ]);
  expect(insecureHops({ ...target, insecureIgnoreHostKey: false, proxy: { ...bastion, insecureIgnoreHostKey: false } })).toEqual([]);
});

describe("underStartupLimit: handshakes with one bastion at once", () => {
  test("at most max run at once, the others in the order they asked; a failure frees its slot", async () => {
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const gates: (() => void)[] = [];
    const handshake = (i: number) => () =>
      new Promise<number>((done, fail) => {
        running++;
        most = Math.max(most, running);
        started.push(i);
        gates[i] = () => {
          running--;
          if (i === 1) fail(new Error("refused"));
          else done(i);
        };
      });
    const settled = Promise.allSettled([0, 1, 2, 3, 4].map((i) => underStartupLimit("root@bastion:22", 2, handshake(i))));
    const tick = () => new Promise((r) => setImmediate(r));
    await tick();
    expect(started).toEqual([0, 1]);
    gates[1](); // fails: its slot goes to the next in line
    await tick();
    expect(started).toEqual([0, 1, 2]);
    gates[0]();
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    gates[2]();
    gates[3]();
    await tick();
    gates[4]();
    const results = await settled;
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([0, "refused", 2, 3, 4]);
    expect(most).toBe(2);
    // Another bastion has slots of its own.
    await expect(underStartupLimit("root@other:22", 1, async () => "x")).resolves.toBe("x");
  });

  test("maxStartupsOf: default 8; anything but a whole number from 1 to 1000 is refused, naming the bastion and the value", () => {
    expect(maxStartupsOf({ host: "b" })).toBe(8);
    expect(maxStartupsOf({ host: "b", maxStartups: 3 })).toBe(3);
    for (const bad of [0, -1, 2.5, 1001, "4" as unknown as number]) {
      expect(() => maxStartupsOf({ host: "b", port: 2222, maxStartups: bad })).toThrow(
        `proxy.maxStartups of root@b:2222 must be a whole number from 1 to 1000, not ${JSON.stringify(bad)}`,
      );
    }
  });
});
