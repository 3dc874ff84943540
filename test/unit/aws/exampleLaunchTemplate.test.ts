/**
 * examples/aws-launch-template under Pulumi mocks: the program a user copies builds what its README says.
 */
import * as pulumi from "@pulumi/pulumi";
import { gunzipSync } from "node:zlib";

const registered: { type: string; name: string; inputs: Record<string, any> }[] = [];
const invokes: { token: string; inputs: Record<string, any> }[] = [];
pulumi.runtime.setAllConfig({ "backlog-aws-launch-template:launchInstance": "true" });
pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs });
      const extra = args.type === "aws:ec2/launchTemplate:LaunchTemplate" ? { latestVersion: 1 } : {};
      return { id: `${args.name}-id`, state: { ...args.inputs, ...extra } };
    },
    call: (args) => {
      invokes.push({ token: args.token, inputs: args.inputs });
      return args.token === "aws:ec2/getAmi:getAmi" ? { id: "ami-0debian12", name: "debian-12-amd64-20250101-1", imageId: "ami-0debian12" } : {};
    },
  },
  "backlog-aws-launch-template",
  "example",
  false,
);

test("examples/aws-launch-template: Debian 12 image, packages first, then the backlog script; two instances", async () => {
  const program = require("../../../examples/aws-launch-template/index.ts");
  await new Promise((r) => program.launchTemplateId.apply(r));
  await new Promise((r) => setTimeout(r, 100));
  const ami = invokes.find((i) => i.token === "aws:ec2/getAmi:getAmi")!;
  expect(ami.inputs).toMatchObject({ owners: ["136693071363"], mostRecent: true });
  const lt = registered.find((r) => r.type === "aws:ec2/launchTemplate:LaunchTemplate")!;
  expect(lt.inputs.imageId).toBe("ami-0debian12");
  expect(lt.inputs.tagSpecifications).toEqual([{ resourceType: "instance", tags: { Role: "web", "backlog-profile": "web" } }]);
  const text = gunzipSync(Buffer.from(lt.inputs.userData, "base64")).toString();
  expect(text).toMatch(/^Content-Type: multipart\/mixed/);
  expect(text.indexOf("packages:\n  - php8.2-fpm")).toBeLessThan(text.indexOf("#!/bin/sh"));
  const instances = registered.filter((r) => r.type === "aws:ec2/instance:Instance");
  expect(instances.map((i) => i.name).sort()).toEqual(["web-1", "web-2"]);
  const direct = instances.find((i) => i.name === "web-2")!;
  expect(gunzipSync(Buffer.from(direct.inputs.userDataBase64, "base64")).toString()).toBe(text);
  expect(instances.find((i) => i.name === "web-1")!.inputs.launchTemplate).toEqual({ id: "web-id", version: "1" });
}, 60_000); // the require above compiles the example and the library under ts-jest: 4.7 s alone, 15 s on a loaded machine
