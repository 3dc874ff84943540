/**
 * User data and the SSM document (pure): what cloud-init and the SSM agent get is the standalone
 * script, byte for byte.
 */
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { SSM_STEP_NAME, agentScriptFile, ssmCommands, ssmDocumentContent } from "../../../../src/core/aws/ssmDocument";
import { EC2_USER_DATA_LIMIT, backlogUserData, encodeUserData, instanceUserData, multipartUserData, partType } from "../../../../src/core/aws/userData";
import { defineProfile } from "../../../../src/core/profile";
import { standaloneScript } from "../../../../src/core/standalone";
import { WEB } from "../../fixtures";

const INCIDENT = {
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
};

describe("user data", () => {
  test("is the standalone script, marked as carried by EC2 user data", () => {
    const text = backlogUserData(INCIDENT);
    expect(text).toBe(standaloneScript(INCIDENT, { carrier: "EC2 user data (cloud-init scripts_user)", conflicts: "none" }));
    expect(text.startsWith("#!/bin/sh\n")).toBe(true);
    expect(text).toContain("# Carried by EC2 user data (cloud-init scripts_user).");
  });

  test("with preceding user data: a MIME multipart archive, theirs first, each part typed from its first line", () => {
    const mine = "#cloud-config\npackages: [php8.2-fpm, nginx]\n";
    const text = backlogUserData(INCIDENT, { precedingUserData: mine });
    const boundary = /boundary="([^"]+)"/.exec(text)![1]!;
    expect(text.startsWith(`Content-Type: multipart/mixed; boundary="${boundary}"\nMIME-Version: 1.0\n\n--${boundary}\n`)).toBe(true);
    const parts = text.split(`--${boundary}`).slice(1, -1);
    expect(parts).toHaveLength(2);
    expect(parts[0]).toContain("Content-Type: text/cloud-config");
    expect(parts[0]).toContain("\n\n#cloud-config\npackages: [php8.2-fpm, nginx]\n");
    expect(parts[1]).toContain("Content-Type: text/x-shellscript");
    expect(parts[1]!.split("\n\n").slice(1).join("\n\n")).toBe(
      standaloneScript(INCIDENT, { carrier: "EC2 user data (cloud-init scripts_user)", conflicts: "none" }),
    );
    expect(text.endsWith(`--${boundary}--\n`)).toBe(true);
    expect(backlogUserData(INCIDENT, { precedingUserData: mine })).toBe(text); // deterministic
  });

  test("part types and refusals", () => {
    expect(partType("#!/bin/bash\necho hi")).toBe("text/x-shellscript");
    expect(partType("#cloud-config\n{}")).toBe("text/cloud-config");
    expect(partType("#cloud-boothook\n")).toBe("text/cloud-boothook");
    expect(() => partType("Content-Type: multipart/mixed; boundary=x\n")).toThrow(/cannot be nested/);
    expect(() => multipartUserData(["echo no shebang"])).toThrow(/must start with/);
  });

  test("encoding: base64; gzip only when over 16 KB with compress auto; refused when still too big", () => {
    const small = "#!/bin/sh\necho hi\n";
    const plain = encodeUserData(small);
    expect(plain).toEqual({ base64: Buffer.from(small).toString("base64"), bytes: small.length, compressed: false });
    const gz = encodeUserData(small, true);
    expect(gz.compressed).toBe(true);
    expect(gunzipSync(Buffer.from(gz.base64, "base64")).toString()).toBe(small);
    const script = backlogUserData(WEB);
    expect(Buffer.byteLength(script)).toBeGreaterThan(EC2_USER_DATA_LIMIT); // a real profile needs gzip
    const auto = encodeUserData(script);
    expect(auto.compressed).toBe(true);
    expect(auto.bytes).toBeLessThanOrEqual(EC2_USER_DATA_LIMIT);
    expect(gunzipSync(Buffer.from(auto.base64, "base64")).toString()).toBe(script);
    expect(encodeUserData(script).base64).toBe(auto.base64); // same bytes every time (no gzip mtime)
    expect(() => encodeUserData(script, false)).toThrow(/at most 16384.*compress/);
    // 30 KB that gzip cannot shrink (a hash chain).
    const noise = Array.from({ length: 1000 }, (_, i) => createHash("sha256").update(String(i)).digest("base64")).join("");
    expect(() => encodeUserData(`#!/bin/sh\n# ${noise}\n`)).toThrow(/after gzip/);
  });

  test("instanceUserData gives userDataBase64 for aws.ec2.Instance", () => {
    const { userDataBase64 } = instanceUserData(INCIDENT, { compress: true });
    expect(gunzipSync(Buffer.from(userDataBase64, "base64")).toString()).toBe(backlogUserData(INCIDENT));
  });
});

describe("SSM document", () => {
  test("schema 2.2, one aws:runShellScript step for Linux whose lines are the script", () => {
    const doc = JSON.parse(ssmDocumentContent(INCIDENT));
    expect(doc.schemaVersion).toBe("2.2");
    expect(doc.mainSteps).toHaveLength(1);
    const step = doc.mainSteps[0];
    expect(step).toMatchObject({ action: "aws:runShellScript", name: SSM_STEP_NAME, precondition: { StringEquals: ["platformType", "Linux"] } });
    expect(step.inputs.timeoutSeconds).toBe("600");
    const script = standaloneScript(INCIDENT, { carrier: "an SSM Command document (aws:runShellScript)", compact: true });
    expect(step.inputs.runCommand).toEqual(ssmCommands(script));
    // What the agent writes to _script.sh is the script itself.
    expect(agentScriptFile(step.inputs.runCommand)).toBe(script);
    expect(step.inputs.runCommand[0]).toBe("#!/bin/sh");
    expect(doc.description).toContain('backlog profile "web" (mode atLeast)');
  });

  test("the same script as the user data, but for the carrier line", () => {
    const doc = JSON.parse(ssmDocumentContent(defineProfile(WEB)));
    const fromDoc = agentScriptFile(doc.mainSteps[0].inputs.runCommand)
      .split("\n")
      .filter((l: string) => !l.startsWith("# Carried by"));
    // The same options: the document carries the sysctl conflict functions compact (issue #14), user data leaves them out by default.
    const fromUserData = backlogUserData(WEB, { conflicts: "report", compact: true })
      .split("\n")
      .filter((l) => !l.startsWith("# Carried by"));
    expect(fromDoc).toEqual(fromUserData);
  });

  test("options and limits", () => {
    expect(JSON.parse(ssmDocumentContent(INCIDENT, { timeoutSeconds: 120 })).mainSteps[0].inputs.timeoutSeconds).toBe("120");
    expect(() => ssmDocumentContent(INCIDENT, { timeoutSeconds: 0 })).toThrow(/timeoutSeconds/);
    const many = {
      name: "many",
      backlog: 1024,
      pools: Array.from({ length: 60 }, (_, i) => ({ name: `p${i}`, listen: `/run/php/p${i}.sock` })),
      listeners: Array.from({ length: 60 }, (_, i) => ({ listen: 8000 + i, pool: `p${i}` })),
    };
    expect(() => ssmDocumentContent(many)).toThrow(/at most 65536/);
  });
});
