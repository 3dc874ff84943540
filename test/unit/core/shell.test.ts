import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { chain, command, quote } from "../../../src/core/shell";

/** Run `sh -c SCRIPT` and return stdout as UTF-8. */
function sh(script: string): string {
  const r = spawnSync("/bin/sh", ["-c", script], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`sh exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Any string without NUL, including quotes, newlines, $, `, \, non-ASCII. */
const shellString = fc.string({ unit: "binary", maxLength: 40 }).filter((s) => !s.includes("\0"));
const asciiShellString = fc.string({ unit: "binary-ascii", maxLength: 40 }).filter((s) => !s.includes("\0"));

describe("quote", () => {
  it.each([
    ["", "''"],
    ["plain", "plain"],
    ["/etc/sysctl.d/zz-pulumi-backlog.conf", "/etc/sysctl.d/zz-pulumi-backlog.conf"],
    ["0644", "0644"],
    ["root:root", "root:root"],
    ["a b", "'a b'"],
    ["it's", "'it'\\''s'"],
    ["'", "''\\'''"],
    ["$HOME", "'$HOME'"],
    ["`id`", "'`id`'"],
    ["a;rm -rf /", "'a;rm -rf /'"],
    ["x=1", "'x=1'"],
    ["~", "'~'"],
    ["*", "'*'"],
    ["if", "'if'"],
    ["!", "'!'"],
    ["line\nbreak", "'line\nbreak'"],
  ])("quote(%j) = %j", (input, expected) => {
    expect(quote(input)).toBe(expected);
  });

  it("rejects a NUL character", () => {
    expect(() => quote("a\0b")).toThrow(/NUL/);
  });

  it("rejects a non-string", () => {
    expect(() => quote(42 as unknown as string)).toThrow(/expected a string/);
  });

  it("round-trips fixed nasty strings through sh", () => {
    for (const s of ["", "'", "''", '"', "\\", "$(id)", "`id`", "a\nb", " lead", "trail ", "*", "-n", "%s", "ü✓", "a'b\"c$d`e\\f"]) {
      expect(sh(`printf %s ${quote(s)}`)).toBe(s);
    }
  });

  it('round-trips arbitrary strings through sh -c "printf %s <quoted>" (property)', () => {
    fc.assert(
      fc.property(shellString, (s) => sh(`printf %s ${quote(s)}`) === s),
      { numRuns: 150 },
    );
  });

  it("round-trips arbitrary bytes 1-255 through sh (property)", () => {
    fc.assert(
      fc.property(asciiShellString, (s) => sh(`printf %s ${quote(s)}`) === s),
      { numRuns: 150 },
    );
  });

  it("always yields exactly one shell word (property)", () => {
    fc.assert(
      fc.property(shellString, (s) => {
        const out = sh(`set -- ${quote(s)} ${quote("end")}; printf %s "$#"`);
        return out === "2";
      }),
      { numRuns: 60 },
    );
  });
});

describe("command", () => {
  it("quotes every word and joins with single spaces", () => {
    expect(command(["sysctl", "-p", "/etc/sysctl.d/zz-pulumi-backlog.conf"])).toBe("sysctl -p /etc/sysctl.d/zz-pulumi-backlog.conf");
    expect(command(["echo", "a b", "it's"])).toBe("echo 'a b' 'it'\\''s'");
  });

  it("rejects an empty argv", () => {
    expect(() => command([])).toThrow(/at least the program name/);
  });

  it("passes every argument through unchanged (property)", () => {
    fc.assert(
      fc.property(fc.array(shellString, { maxLength: 5 }), (args) => {
        const out = sh(command(["printf", "%s\\000", ...args]));
        const parts = args.length === 0 ? [""] : args;
        return out === parts.map((a) => `${a}\0`).join("");
      }),
      { numRuns: 80 },
    );
  });
});

describe("chain", () => {
  it("joins commands with the operator", () => {
    expect(chain([["true"], ["echo", "a b"]], "&&")).toBe("true && echo 'a b'");
    expect(
      sh(
        chain(
          [
            ["printf", "%s", "x;y"],
            ["printf", "%s", "$z"],
          ],
          ";",
        ),
      ),
    ).toBe("x;y$z");
  });

  it("rejects unknown operators and empty lists", () => {
    expect(() => chain([["true"]], "&" as never)).toThrow(/unknown operator/);
    expect(() => chain([], "&&")).toThrow(/at least one command/);
  });
});
