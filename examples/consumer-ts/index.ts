/**
 * A program of its own that uses pulumi-backlog as any user would: from the npm package, through
 * its public entry point only (`import … from "pulumi-backlog"`), with its own stack config.
 *
 *   pulumi config set host 10.0.0.5
 *   pulumi config set hostKey "ssh-ed25519 AAAA…"
 *   pulumi config set --secret privateKey -- "$(cat ~/.ssh/deploy_ed25519)"
 *   pulumi up
 */
import * as pulumi from "@pulumi/pulumi";
import { BacklogHost, type BacklogHostArgs, type ProfileInput, type VerificationRow } from "pulumi-backlog";

const config = new pulumi.Config();

const profile: ProfileInput = {
  name: "consumer",
  backlog: config.getNumber("backlog") ?? 4096,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
};

const args: BacklogHostArgs = {
  connection: {
    host: config.require("host"),
    port: config.getNumber("port") ?? 22,
    user: config.get("user") ?? "root",
    hostKey: config.require("hostKey"),
    privateKey: config.requireSecret("privateKey"),
  },
  profile,
};

const web = new BacklogHost("web", args);

/** Per setting: expected, effective, ok (read back from /proc/sys and `ss` after the deploy). */
export const verification: pulumi.Output<VerificationRow[]> = web.verification;
/** Whether the host already matched the profile before this run. */
export const inSync = web.inSync;
/** sysctl.d files that would override the drop-in at boot (should be empty). */
export const bootOverrides = web.bootOverrides;
