/**
 * The rendered files are accepted by the real programs on a lab host (Debian 12): the drop-in by
 * `sysctl -p` (values read back from /proc/sys), pools by `php-fpm8.2 -t`, nginx by `nginx -t`.
 */
import { type BacklogProfile, type ProfileInput, defineProfile, render } from "../../src";
import { applyScript, reportToken } from "../../src/core/plan";
import { quote } from "../../src/core/shell";
import { EXACT, KERNEL_ONLY, WEB } from "../unit/fixtures";
import { Lab, requireLabMachine } from "./harness";

jest.setTimeout(300_000);

const lab = new Lab("render");
let host = "";

beforeAll(() => {
  requireLabMachine();
  host = lab.up(1)[0].name;
  // EXACT's pool runs as user app; WEB listens on port 80 as default_server, which Debian's default site also claims.
  lab.sh(host, "useradd --system --no-create-home app && rm /etc/nginx/sites-enabled/default && mkdir -p /srv/www/app");
});

afterAll(() => lab.down());

/** Writes the files of a profile onto the host, runs `check`, and removes them again. */
function withFiles(profile: BacklogProfile, check: string): string {
  const files = render(profile);
  const write = files.map((f) => `printf %s ${quote(f.content)} > ${quote(f.path)}`).join(" && ");
  const cleanup = files.map((f) => `rm -f ${quote(f.path)}`).join("; ");
  return lab.sh(host, `${write} && { ${check}; } 2>&1; rc=$?; ${cleanup}; exit $rc`);
}

test.each<[string, ProfileInput]>([
  ["web (unix and TCP pools, IPv4 and IPv6 listeners, extra directives)", WEB],
  ["kernel-only", KERNEL_ONLY],
  // netdev_max_backlog is machine-global: a lab host must not set it, so this case leaves it out.
  ["exact (static pool on a TCP port, [::1] listener)", { ...EXACT, netdevMaxBacklog: undefined }],
])("%s: sysctl -p, php-fpm8.2 -t and nginx -t accept the files; /proc/sys has the values", (_name, input) => {
  const profile = defineProfile(input);
  const dropIn = render(profile)[0].path;
  const out = withFiles(
    profile,
    `sysctl -p ${quote(dropIn)} && php-fpm8.2 -t && nginx -t && cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_max_syn_backlog`,
  );
  expect(out).toMatch(/configuration file \/etc\/php\/8\.2\/fpm\/php-fpm\.conf test is successful/);
  expect(out).toMatch(/nginx: configuration file \/etc\/nginx\/nginx\.conf test is successful/);
  const values = out.trim().split("\n").slice(-2).map(Number);
  expect(values).toEqual([profile.sysctls["net.core.somaxconn"], profile.sysctls["net.ipv4.tcp_max_syn_backlog"]]);
});

test("six applies in a row that restart php-fpm leave it running: systemd's start limit does not refuse a deploy", () => {
  const script = applyScript(
    {
      stateDir: "/var/lib/pulumi-backlog",
      owner: "start-limit",
      files: [],
      sysctlKeys: [],
      services: [{ unit: "php8.2-fpm", test: ["php-fpm8.2", "-t"], action: "restart" }],
      sockets: { unixPaths: [], tcpPorts: [] },
    },
    { token: reportToken() },
  );
  // Without the reset, the fifth restart within 10 s fails with start-limit-hit and php-fpm stays down.
  const out = lab.sh(
    host,
    `for i in 1 2 3 4 5 6; do sh -s <<'PLAN' >/dev/null || echo "apply $i failed"\n${script}\nPLAN\ndone; systemctl is-active php8.2-fpm`,
  );
  expect(out.trim()).toBe("active");
});
