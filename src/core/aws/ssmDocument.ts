/**
 * The SSM Command document that carries the standalone script (pure). The SSM agent runs an
 * `aws:runShellScript` step by writing its `runCommand` lines, joined with newlines, to
 * `_script.sh` in the command's orchestration directory and running `sh -c <that file>` as root
 * (amazon-ssm-agent, `agent/plugins/runscript`): the file starts with `#!/bin/sh`, so it is the
 * very script the user data carries. Its exit status becomes the command's (and the association's)
 * status: 0 Success, anything else Failed.
 *
 * @packageDocumentation
 */

import type { BacklogProfile, ProfileInput } from "../profile";
import { STANDALONE_EXIT, type StandaloneOptions, resolveProfile, standaloneScript } from "../standalone";

/** SSM's limit on a document's content: 64 KB. */
export const SSM_DOCUMENT_LIMIT = 65536;

/** Name of the document's one step. */
export const SSM_STEP_NAME = "applyAndVerifyBacklogProfile";

/** Options of {@link ssmDocumentContent}. */
export interface SsmDocumentOptions extends StandaloneOptions {
  /** Seconds the agent lets the script run before it stops it. Default 600 (the agent's own default is 3600). */
  readonly timeoutSeconds?: number;
}

/** The script as `runCommand` lines: one element per line, no trailing empty element. */
export function ssmCommands(script: string): string[] {
  return script.replace(/\n$/, "").split("\n");
}

/**
 * What the SSM agent executes for these `runCommand` lines: the content of its `_script.sh`
 * (`strings.Join(runCommand, "\n") + "\n"` in amazon-ssm-agent's `CreateScriptFile`).
 */
export function agentScriptFile(runCommand: readonly string[]): string {
  return runCommand.join("\n") + "\n";
}

/**
 * Content (JSON) of a Command document, schema 2.2, with one `aws:runShellScript` step for Linux
 * that runs the standalone script of `profile`.
 *
 * @throws `ProfileError` for an invalid profile; `Error` when the script holds `{{` (SSM would take
 *   it for a parameter) or the content is over 64 KB.
 */
export function ssmDocumentContent(profileInput: ProfileInput | BacklogProfile, options: SsmDocumentOptions = {}): string {
  const profile = resolveProfile(profileInput);
  const { timeoutSeconds = 600, ...standalone } = options;
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 1 || timeoutSeconds > 172800) {
    throw new Error(`timeoutSeconds ${JSON.stringify(timeoutSeconds)}: must be a whole number of seconds between 1 and 172800`);
  }
  // compact: the document is plain JSON of at most 64 KB (no compression on the way).
  const script = standaloneScript(profile, { carrier: "an SSM Command document (aws:runShellScript)", compact: true, ...standalone });
  if (script.includes("{{")) {
    throw new Error('the script contains "{{", which SSM reads as a document parameter; this is a bug in pulumi-backlog\'s script generator');
  }
  const content = JSON.stringify(
    {
      schemaVersion: "2.2",
      description:
        `pulumi-backlog: apply and verify backlog profile "${profile.name}" (mode ${profile.mode}). ` +
        `Exit ${STANDALONE_EXIT.ok}: verified; ${STANDALONE_EXIT.mismatch}: MISMATCH (see the table in the output); other: a step failed.`,
      mainSteps: [
        {
          action: "aws:runShellScript",
          name: SSM_STEP_NAME,
          precondition: { StringEquals: ["platformType", "Linux"] },
          inputs: { runCommand: ssmCommands(script), timeoutSeconds: String(timeoutSeconds) },
        },
      ],
    },
    null,
    2,
  );
  const bytes = Buffer.byteLength(content, "utf8");
  if (bytes > SSM_DOCUMENT_LIMIT) {
    throw new Error(`the SSM document would be ${bytes} bytes; SSM takes at most ${SSM_DOCUMENT_LIMIT}: use fewer pools or listeners per profile`);
  }
  return content;
}
