/** The pure parts of the SSH transport: host key parsing and connection names. */
import { parseHostKey, sshTarget } from "../../components/ssh";

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4Gg4rD+B/RoFavrJXOmlAiMKiC5EyU7hiPf8omSLLJ";

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

test("sshTarget names user, host, port and the bastion", () => {
  expect(sshTarget({ host: "10.0.0.5" })).toBe("root@10.0.0.5:22");
  expect(sshTarget({ host: "10.0.0.5", port: 2222, user: "deploy", proxy: { host: "bastion", privateKey: "" } }))
    .toBe("deploy@10.0.0.5:2222 via root@bastion:22");
});
