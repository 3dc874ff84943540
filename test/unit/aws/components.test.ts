/**
 * BacklogLaunchTemplate and BacklogSsmAssociation with Pulumi mocks (no AWS): the resources they
 * register and their properties.
 */
import * as pulumi from "@pulumi/pulumi";
import { gunzipSync } from "node:zlib";

interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>;
  custom: boolean;
}
const registered: Registered[] = [];

pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs, custom: args.custom ?? true });
      const extra: Record<string, unknown> = {};
      if (args.type === "aws:ssm/document:Document") Object.assign(extra, { name: args.inputs.name ?? `${args.name}-doc`, latestVersion: "3" });
      if (args.type === "aws:ssm/association:Association") Object.assign(extra, { associationId: `${args.name}-assoc-id` });
      if (args.type === "aws:ec2/launchTemplate:LaunchTemplate") Object.assign(extra, { latestVersion: 1 });
      return { id: `${args.name}-id`, state: { ...args.inputs, ...extra } };
    },
    call: () => ({}),
  },
  "backlog",
  "unit",
  false,
);

// Imported after setMocks, as the Pulumi testing guide does.
import { BacklogLaunchTemplate, BacklogSsmAssociation, backlogUserData, ssmDocumentContent } from "../../../src/aws";
import { defineProfile } from "../../../src/core/profile";

function value<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) =>
    o.apply((v) => {
      resolve(v);
      return v;
    }),
  );
}

const INCIDENT = {
  name: "web",
  backlog: 8192,
  pools: [{ name: "www", listen: "/run/php/php8.2-fpm.sock" }],
  listeners: [{ listen: 8080, pool: "www" }],
};

function byType(type: string, name: string): Registered {
  const r = registered.find((x) => x.type === type && x.name === name);
  if (!r) throw new Error(`no ${type} named ${name} registered; got ${registered.map((x) => `${x.type}/${x.name}`).join(", ")}`);
  return r;
}

/** Waits until the engine mock has seen the registrations of this turn. */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe("BacklogLaunchTemplate", () => {
  test("a launch template with the user data (gzipped script) and the user's own arguments", async () => {
    const lt = new BacklogLaunchTemplate("web", {
      profile: INCIDENT,
      launchTemplate: {
        imageId: "ami-0123456789abcdef0",
        instanceType: "t3.small",
        iamInstanceProfile: { name: "web-ssm" },
        tagSpecifications: [{ resourceType: "instance", tags: { Role: "web", Backlog: "web" } }],
      },
    });
    const userData = await value(lt.launchTemplate.userData as pulumi.Output<string>);
    const text = gunzipSync(Buffer.from(userData, "base64")).toString("utf8");
    expect(text).toBe(backlogUserData(INCIDENT));
    expect(lt.userDataText).toBe(text);
    expect(lt.userDataCompressed).toBe(true);
    expect(lt.userDataBytes).toBe(Buffer.from(userData, "base64").length);
    // The contents that matter, in the script itself.
    expect(text).toContain("net.core.somaxconn");
    // applyScript names each file on its pb_put line (it no longer writes a "# path" comment).
    expect(text).toContain("pb_put /etc/php/8.2/fpm/pool.d/www.conf ");
    expect(text).toContain("pb_put /etc/nginx/conf.d/pulumi-backlog.conf ");
    expect(text).toContain("sysctl -p /etc/sysctl.d/zz-pulumi-backlog.conf");
    expect(text).toContain('pb_say "OK: all $pb_total settings verified');
    expect(text).toContain('pb_say "MISMATCH: $pb_bad of $pb_total settings differ');
    await settle();
    const child = byType("aws:ec2/launchTemplate:LaunchTemplate", "web");
    expect(child.inputs.imageId).toBe("ami-0123456789abcdef0");
    expect(child.inputs.instanceType).toBe("t3.small");
    expect(child.inputs.iamInstanceProfile).toEqual({ name: "web-ssm" });
    expect(child.inputs.tagSpecifications).toEqual([{ resourceType: "instance", tags: { Role: "web", Backlog: "web" } }]);
    expect(await value(lt.latestVersion)).toBe(1);
  });

  test("records the validated profile in its inputs (for the policy pack), and no user data", async () => {
    const kernelOnly = { name: "kernel", backlog: 4096 };
    // Since the transactional host scripts (lock, journal, rollback, relisten programs), even a
    // kernel-only profile's script is over EC2's 16384 bytes as text (about 26 KB), so it is
    // compressed by default and compress: false is refused, naming the sizes.
    expect(() => new BacklogLaunchTemplate("uncompressed", { profile: kernelOnly, compress: false })).toThrow(
      /^user data is \d+ bytes \(\d+ as text\): EC2 takes at most 16384; let it be compressed/,
    );
    new BacklogLaunchTemplate("recorded", { profile: kernelOnly, precedingUserData: "#cloud-config\npackages: [nginx]\n" });
    await settle();
    const component = byType("backlog:index:BacklogLaunchTemplate", "recorded");
    expect(component.custom).toBe(false);
    expect(component.inputs.profile).toEqual(JSON.parse(JSON.stringify(defineProfile(kernelOnly))));
    expect(component.inputs.stateName).toBe("standalone");
    expect(component.inputs.precedingUserData).toBe(true);
    expect(component.inputs.userDataCompressed).toBe(true);
    expect(JSON.stringify(component.inputs)).not.toContain("PULUMI_BACKLOG_B64");
    // Multipart user data (compressed), mine first.
    const text = gunzipSync(Buffer.from(byType("aws:ec2/launchTemplate:LaunchTemplate", "recorded").inputs.userData, "base64")).toString();
    expect(text.indexOf("#cloud-config")).toBeLessThan(text.indexOf("#!/bin/sh"));
  });

  test("refuses bad input before registering anything", () => {
    const before = registered.length;
    expect(() => new BacklogLaunchTemplate("bad", { profile: { ...INCIDENT, backlog: 70000 } })).toThrow(/backlog/);
    expect(() => new BacklogLaunchTemplate("bad2", { profile: INCIDENT, launchTemplate: { userData: "x" } as never })).toThrow(/precedingUserData/);
    expect(() => new BacklogLaunchTemplate("bad3", { profile: INCIDENT, compress: false, precedingUserData: "#cloud-config\n" + "x".repeat(20000) })).toThrow(
      /16384/,
    );
    expect(registered.length).toBe(before);
  });
});

describe("BacklogSsmAssociation", () => {
  test("a Command document carrying the script and an association by tag, with documented defaults", async () => {
    const a = new BacklogSsmAssociation("fleet", { profile: INCIDENT, targetTags: { Role: "web", Env: "prod" } });
    await settle();
    const doc = byType("aws:ssm/document:Document", "fleet");
    expect(doc.inputs.documentType).toBe("Command");
    expect(doc.inputs.documentFormat).toBe("JSON");
    expect(doc.inputs.targetType).toBe("/AWS::EC2::Instance");
    expect(doc.inputs.content).toBe(ssmDocumentContent(INCIDENT));
    const content = JSON.parse(doc.inputs.content);
    expect(content.schemaVersion).toBe("2.2");
    expect(content.mainSteps[0].action).toBe("aws:runShellScript");
    const assoc = byType("aws:ssm/association:Association", "fleet");
    expect(assoc.inputs.name).toBe("fleet-doc");
    expect(assoc.inputs.documentVersion).toBe("3");
    expect(assoc.inputs.targets).toEqual([
      { key: "tag:Role", values: ["web"] },
      { key: "tag:Env", values: ["prod"] },
    ]);
    expect(assoc.inputs.maxConcurrency).toBe("10%");
    expect(assoc.inputs.maxErrors).toBe("0");
    expect(assoc.inputs.scheduleExpression).toBe("rate(30 minutes)");
    expect(assoc.inputs.outputLocation).toBeUndefined();
    expect(await value(a.associationId)).toBe("fleet-assoc-id");
    expect(await value(a.documentName)).toBe("fleet-doc");
    const component = byType("backlog:index:BacklogSsmAssociation", "fleet");
    expect(component.inputs.profile).toEqual(JSON.parse(JSON.stringify(defineProfile(INCIDENT))));
    expect(component.inputs).toMatchObject({
      targetTags: { Role: "web", Env: "prod" },
      maxConcurrency: "10%",
      maxErrors: "0",
      scheduleExpression: "rate(30 minutes)",
      conflicts: "report",
    });
  });

  test("conflicts is passed to the script and recorded: neutralize in the document, none leaves the check out", async () => {
    new BacklogSsmAssociation("neutral", { profile: INCIDENT, targetTags: { Role: "web" }, conflicts: "neutralize" });
    new BacklogSsmAssociation("nocheck", { profile: INCIDENT, targetTags: { Role: "web" }, conflicts: "none" });
    new BacklogSsmAssociation("bydefault", { profile: INCIDENT, targetTags: { Role: "web" } });
    new BacklogLaunchTemplate("lt-default", { profile: { name: "kernel", backlog: 4096 } });
    new BacklogLaunchTemplate("lt-report", { profile: { name: "kernel", backlog: 4096 }, conflicts: "report" });
    await settle();
    expect(byType("backlog:index:BacklogSsmAssociation", "neutral").inputs.conflicts).toBe("neutralize");
    expect(byType("backlog:index:BacklogSsmAssociation", "nocheck").inputs.conflicts).toBe("none");
    const doc = (n: string) => String(byType("aws:ssm/document:Document", n).inputs.content);
    // The check's functions ride gzipped in the document (about 1.5 KB of it); "none" leaves them out.
    expect(doc("bydefault").length).toBeGreaterThan(doc("nocheck").length + 1000);
    expect(doc("neutral")).not.toEqual(doc("bydefault"));
    expect(byType("backlog:index:BacklogLaunchTemplate", "lt-default").inputs.conflicts).toBe("none");
    expect(byType("backlog:index:BacklogLaunchTemplate", "lt-report").inputs.conflicts).toBe("report");
    const userData = (n: string) => gunzipSync(Buffer.from(byType("aws:ec2/launchTemplate:LaunchTemplate", n).inputs.userData, "base64")).toString();
    expect(userData("lt-report").length).toBeGreaterThan(userData("lt-default").length);
    expect(() => new BacklogSsmAssociation("bad", { profile: INCIDENT, targetTags: { Role: "web" }, conflicts: "off" as never })).toThrow(/conflicts "off"/);
  });

  test("concurrency, errors, schedule, S3 output, severity, tags and timeout as given", async () => {
    new BacklogSsmAssociation("custom", {
      profile: { ...INCIDENT, mode: "exact" },
      targetTags: { Backlog: "web" },
      maxConcurrency: "2",
      maxErrors: "5%",
      scheduleExpression: "cron(0 */2 * * ? *)",
      outputLocation: { s3BucketName: "ops-logs", s3KeyPrefix: "backlog/" },
      complianceSeverity: "HIGH",
      timeoutSeconds: 300,
      tags: { team: "ops" },
    });
    await settle();
    const assoc = byType("aws:ssm/association:Association", "custom");
    expect(assoc.inputs).toMatchObject({
      maxConcurrency: "2",
      maxErrors: "5%",
      scheduleExpression: "cron(0 */2 * * ? *)",
      outputLocation: { s3BucketName: "ops-logs", s3KeyPrefix: "backlog/" },
      complianceSeverity: "HIGH",
      tags: { team: "ops" },
      targets: [{ key: "tag:Backlog", values: ["web"] }],
    });
    const doc = JSON.parse(byType("aws:ssm/document:Document", "custom").inputs.content);
    expect(doc.mainSteps[0].inputs.timeoutSeconds).toBe("300");
    expect(doc.description).toContain("(mode exact)");
    expect(byType("aws:ssm/document:Document", "custom").inputs.tags).toEqual({ team: "ops" });
  });

  test("refuses what AWS would refuse only at deploy time, before registering anything", () => {
    const before = registered.length;
    const make = (extra: object) => () => new BacklogSsmAssociation("bad", { profile: INCIDENT, targetTags: { Role: "web" }, ...extra });
    expect(make({ targetTags: {} })).toThrow(/1 to 5 tags/);
    expect(make({ targetTags: { a: "1", b: "1", c: "1", d: "1", e: "1", f: "1" } })).toThrow(/1 to 5 tags/);
    expect(make({ targetTags: { "aws:x": "1" } })).toThrow(/not a tag key/);
    expect(make({ maxConcurrency: "0" })).toThrow(/maxConcurrency/);
    expect(make({ maxConcurrency: "150%" })).toThrow(/maxConcurrency/);
    expect(make({ maxErrors: "-1" })).toThrow(/maxErrors/);
    expect(make({ scheduleExpression: "rate(5 minutes)" })).toThrow(/at most every 30 minutes/);
    expect(make({ scheduleExpression: "every hour" })).toThrow(/rate\(N/);
    expect(make({ profile: { name: "x" } })).toThrow(/backlog/);
    expect(registered.length).toBe(before);
  });
});
