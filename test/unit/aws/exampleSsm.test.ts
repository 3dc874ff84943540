/**
 * examples/aws-ssm under Pulumi mocks: the program a user copies builds what its README says.
 */
import * as pulumi from "@pulumi/pulumi";

const registered: { type: string; name: string; inputs: Record<string, any> }[] = [];
pulumi.runtime.setAllConfig({ "backlog-aws-ssm:outputBucket": "ops-logs" });
pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs });
      const extra = args.type === "aws:ssm/document:Document" ? { name: `${args.name}-doc`, latestVersion: "1" } : {};
      return { id: `${args.name}-id`, state: { ...args.inputs, ...extra } };
    },
    call: () => ({}),
  },
  "backlog-aws-ssm",
  "example",
  false,
);

test("examples/aws-ssm: document, association by tag with the documented defaults, S3 output, instance role", async () => {
  const program = require("../../../examples/aws-ssm/index.ts");
  await new Promise((r) => program.documentName.apply(r));
  await new Promise((r) => setTimeout(r, 50));
  const types = registered.map((r) => r.type);
  expect(types).toEqual(
    expect.arrayContaining([
      "backlog:index:BacklogSsmAssociation",
      "aws:ssm/document:Document",
      "aws:ssm/association:Association",
      "aws:iam/role:Role",
      "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
      "aws:iam/rolePolicy:RolePolicy",
      "aws:iam/instanceProfile:InstanceProfile",
    ]),
  );
  const assoc = registered.find((r) => r.type === "aws:ssm/association:Association")!;
  expect(assoc.inputs).toMatchObject({
    name: "web-doc",
    targets: [{ key: "tag:Role", values: ["web"] }],
    maxConcurrency: "10%",
    maxErrors: "0",
    scheduleExpression: "rate(30 minutes)",
    outputLocation: { s3BucketName: "ops-logs", s3KeyPrefix: "pulumi-backlog/" },
  });
  const attach = registered.find((r) => r.type === "aws:iam/rolePolicyAttachment:RolePolicyAttachment")!;
  expect(attach.inputs.policyArn).toBe("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore");
});
