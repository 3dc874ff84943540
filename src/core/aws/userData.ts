/**
 * EC2 user data from a backlog profile (pure): the standalone script of `../standalone.ts`, which
 * cloud-init runs once per instance, late in boot (module `scripts_user`, stage `cloud-final`), as
 * root and with its output in the console log and `/var/log/cloud-init-output.log`.
 *
 * Why a `#!/bin/sh` script and not a `#cloud-config` with `write_files` + `runcmd`: the same script
 * then runs unchanged under cloud-init, under the SSM agent (`aws:runShellScript`) and by hand, so
 * launch-time and drift repair apply and verify in exactly one way; `write_files` would write in
 * the `init` stage, before packages (php-fpm, nginx) are installed, with no configuration test and
 * no rollback; and `runcmd` runs after every user-data script part anyway. Your own cloud-config
 * (packages, users, …) still fits: {@link backlogUserData} combines it with the script in a MIME
 * multipart archive, yours first.
 *
 * @packageDocumentation
 */

import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import type { BacklogProfile, ProfileInput } from "../profile";
import { type StandaloneOptions, standaloneScript } from "../standalone";

/** EC2's limit on user data: 16 KB before base64 encoding (after gzip, when compressed). */
export const EC2_USER_DATA_LIMIT = 16384;

/** Options of {@link backlogUserData}. */
export interface BacklogUserDataOptions extends StandaloneOptions {
  /**
   * Your own user data, run before the backlog script: a `#cloud-config` document (e.g. `packages:
   * [php8.2-fpm, nginx]`) or a `#!` script. The two become a MIME multipart archive, yours first.
   * Note that cloud-config `runcmd` runs after every script part (its script sorts after
   * `part-00N`), so install what the backlog script needs with `packages:` or a script part.
   * Default: none (the user data is the script alone).
   */
  readonly precedingUserData?: string;
}

/** User data, encoded for EC2. */
export interface EncodedUserData {
  /** Base64 of the bytes EC2 stores (gzip-compressed when {@link compressed}). */
  readonly base64: string;
  /** Size EC2 counts against {@link EC2_USER_DATA_LIMIT}. */
  readonly bytes: number;
  /** Whether it was gzip-compressed (cloud-init detects and inflates gzip user data). */
  readonly compressed: boolean;
}

/** The MIME type cloud-init gives a user-data part, from its first line. */
export function partType(text: string): string {
  const first = text.split("\n", 1)[0]?.trim() ?? "";
  if (first.startsWith("#cloud-config")) return "text/cloud-config";
  if (first.startsWith("#!")) return "text/x-shellscript";
  if (first.startsWith("#cloud-boothook")) return "text/cloud-boothook";
  if (first.startsWith("#include")) return "text/x-include-url";
  throw new Error(
    `precedingUserData must start with "#cloud-config", "#!", "#cloud-boothook" or "#include", not ${JSON.stringify(first.slice(0, 40))}; ` +
      "an existing MIME multipart archive cannot be nested: pass its parts' text instead",
  );
}

/**
 * A MIME multipart archive of user-data parts, in order, as cloud-init reads it
 * (`Content-Type: multipart/mixed`). Each part's type comes from its first line ({@link partType});
 * parts are sent as 8bit text with a deterministic boundary that occurs in none of them.
 */
export function multipartUserData(parts: readonly string[]): string {
  const boundary = `==pulumi-backlog-${createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 24)}==`;
  if (parts.some((p) => p.includes(boundary))) throw new Error("multipartUserData: a part contains the boundary");
  const out = [`Content-Type: multipart/mixed; boundary="${boundary}"`, "MIME-Version: 1.0", ""];
  parts.forEach((part, i) => {
    out.push(
      `--${boundary}`,
      `Content-Type: ${partType(part)}; charset="utf-8"`,
      "MIME-Version: 1.0",
      "Content-Transfer-Encoding: 8bit",
      `Content-Disposition: attachment; filename="part-${String(i + 1).padStart(3, "0")}"`,
      "",
      part.endsWith("\n") ? part.slice(0, -1) : part,
    );
  });
  out.push(`--${boundary}--`, "");
  return out.join("\n");
}

/**
 * The user data for `profile`: the standalone script (header: "Carried by EC2 user data"), or,
 * with `precedingUserData`, a MIME multipart archive of that and the script.
 *
 * @throws `ProfileError` for an invalid profile; `Error` for bad options.
 */
export function backlogUserData(profile: ProfileInput | BacklogProfile, options: BacklogUserDataOptions = {}): string {
  const { precedingUserData, ...standalone } = options;
  // Sysctl conflicts only when asked for: they cost about 3 KB of the 16 KB EC2 takes after gzip.
  const script = standaloneScript(profile, { carrier: "EC2 user data (cloud-init scripts_user)", conflicts: "none", ...standalone });
  return precedingUserData === undefined ? script : multipartUserData([precedingUserData, script]);
}

/**
 * Encodes user data for EC2: base64, gzip-compressed when `compress` is `true`, or `"auto"` (the
 * default) and the text is over {@link EC2_USER_DATA_LIMIT}. The gzip header carries no time or
 * name, so the same text always gives the same bytes.
 *
 * @throws Error when the result is still over the limit, with the sizes.
 */
export function encodeUserData(text: string, compress: boolean | "auto" = "auto"): EncodedUserData {
  const raw = Buffer.from(text, "utf8");
  const gzip = compress === true || (compress === "auto" && raw.length > EC2_USER_DATA_LIMIT);
  const bytes = gzip ? gzipSync(raw, { level: 9 }) : raw;
  if (bytes.length > EC2_USER_DATA_LIMIT) {
    throw new Error(
      `user data is ${bytes.length} bytes${gzip ? " after gzip" : ""} (${raw.length} as text): EC2 takes at most ${EC2_USER_DATA_LIMIT}` +
        (gzip ? "; use the SSM association for this profile, or fewer pools" : '; let it be compressed (compress: "auto" or true)'),
    );
  }
  return { base64: bytes.toString("base64"), bytes: bytes.length, compressed: gzip };
}

/** Options of {@link instanceUserData}. */
export interface InstanceUserDataOptions extends BacklogUserDataOptions {
  /** gzip the user data: `"auto"` (default: only when over 16 KB), `true` or `false`. */
  readonly compress?: boolean | "auto";
}

/**
 * User data for an `aws.ec2.Instance`, to spread into its arguments:
 * `new aws.ec2.Instance("web", { ami, instanceType, ...instanceUserData(profile) })`.
 * It sets `userDataBase64` (compressed user data cannot travel in `userData`). Changing the
 * profile changes it; on a running instance that changes nothing until a new instance boots
 * (cloud-init runs user data once per instance): set `userDataReplaceOnChange: true` to get a new
 * instance, or let a {@link BacklogSsmAssociation} repair running ones.
 */
export function instanceUserData(profile: ProfileInput | BacklogProfile, options: InstanceUserDataOptions = {}): { userDataBase64: string } {
  const { compress, ...rest } = options;
  return { userDataBase64: encodeUserData(backlogUserData(profile, rest), compress ?? "auto").base64 };
}
