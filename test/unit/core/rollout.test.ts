/**
 * The rollout of a fleet (pure): validation of `rollout`, batch sizes, batches, the default policy.
 */
import fc from "fast-check";
import {
  DEFAULT_MAX_PARALLEL,
  RolloutError,
  batchIndex,
  batchSize,
  checkMaxParallel,
  describeRollout,
  hostPlaces,
  isDisruptive,
  planRollout,
  rolloutNote,
  stopReason,
  toBatches,
  toRollout,
  worstAction,
} from "../../../src/core/rollout";

describe("toRollout", () => {
  test("nothing given: adaptive maxParallel, maxFailedHosts 0", () => {
    expect(toRollout(undefined)).toEqual({ maxParallel: undefined, maxFailedHosts: 0 });
    expect(toRollout(null)).toEqual({ maxParallel: undefined, maxFailedHosts: 0 });
    expect(toRollout({})).toEqual({ maxParallel: undefined, maxFailedHosts: 0 });
  });

  test.each<[unknown, unknown]>([
    [1, 1],
    [7, 7],
    [1000, 1000],
    ["1%", "1%"],
    ["25%", "25%"],
    ["100%", "100%"],
    ["050%", "50%"],
  ])("maxParallel %j is valid (%j)", (given, kept) => {
    expect(toRollout({ maxParallel: given }).maxParallel).toBe(kept);
  });

  test.each<[unknown, RegExp]>([
    [0, /^rollout\.maxParallel 0: must be a whole number of hosts, at least 1/],
    [-2, /^rollout\.maxParallel -2: must be a whole number of hosts, at least 1/],
    [1.5, /^rollout\.maxParallel 1\.5: must be a whole number of hosts, at least 1/],
    [Number.NaN, /^rollout\.maxParallel NaN: must be a whole number/],
    [Number.POSITIVE_INFINITY, /^rollout\.maxParallel Infinity: must be a whole number/],
    ["0%", /^rollout\.maxParallel "0%": a percentage of the hosts must be from 1% to 100%$/],
    ["101%", /^rollout\.maxParallel "101%": a percentage of the hosts must be from 1% to 100%$/],
    ["1000%", /^rollout\.maxParallel "1000%": a percentage of the hosts must be from 1% to 100%$/],
    ["2.5%", /^rollout\.maxParallel "2\.5%": must be a whole number of hosts \(at least 1\) or a whole percentage/],
    ["25", /^rollout\.maxParallel "25": must be a whole number of hosts \(at least 1\) or a whole percentage of the hosts written "N%"/],
    [" 25%", /^rollout\.maxParallel " 25%": must be/],
    ["%", /^rollout\.maxParallel "%": must be/],
    [true, /^rollout\.maxParallel true: must be a whole number of hosts \(at least 1\) or a percentage string "N%"/],
    [null, /^rollout\.maxParallel null: must be/],
  ])("maxParallel %j is refused with field, value and rule", (value, message) => {
    expect(() => toRollout({ maxParallel: value })).toThrow(RolloutError);
    expect(() => toRollout({ maxParallel: value })).toThrow(message);
  });

  test.each<[unknown, RegExp]>([
    [-1, /^rollout\.maxFailedHosts -1: must be a whole number of hosts, 0 or more/],
    [0.5, /^rollout\.maxFailedHosts 0\.5: must be a whole number of hosts, 0 or more/],
    ["1", /^rollout\.maxFailedHosts "1": must be a whole number of hosts, 0 or more/],
    [null, /^rollout\.maxFailedHosts null: must be/],
  ])("maxFailedHosts %j is refused", (value, message) => {
    expect(() => toRollout({ maxFailedHosts: value })).toThrow(message);
  });

  test("maxFailedHosts 0 and more are kept", () => {
    expect(toRollout({ maxFailedHosts: 0 }).maxFailedHosts).toBe(0);
    expect(toRollout({ maxFailedHosts: 3, maxParallel: 2 })).toEqual({ maxParallel: 2, maxFailedHosts: 3 });
  });

  test("a typo is an unknown field, not ignored", () => {
    expect(() => toRollout({ maxParalel: 2 })).toThrow(/^rollout\.maxParalel 2: unknown field; a rollout has maxParallel and maxFailedHosts$/);
  });

  test.each<[unknown]>([[5], ["25%"], [[1, 2]], [true]])("a rollout that is not an object (%j) is refused", (value) => {
    expect(() => toRollout(value)).toThrow(/^rollout .*: must be an object \{ maxParallel\?, maxFailedHosts\? \}$/);
  });

  test("the field name in messages can be chosen (stack configuration)", () => {
    expect(() => toRollout({ maxParallel: "0%" }, "backlog:rollout")).toThrow(/^backlog:rollout\.maxParallel "0%"/);
  });

  test("the error carries field, value and rule", () => {
    try {
      toRollout({ maxParallel: 0 });
      throw new Error("not thrown");
    } catch (e) {
      expect(e).toBeInstanceOf(RolloutError);
      expect(e).toMatchObject({ field: "rollout.maxParallel", value: 0, rule: expect.stringContaining("at least 1") });
    }
  });

  test("any whole number ≥ 1 and any N% with N in 1..100 are accepted; everything else in range is refused", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 1_000_000 }), (n) => checkMaxParallel(n) === n));
    fc.assert(fc.property(fc.integer({ min: 1, max: 100 }), (n) => checkMaxParallel(`${n}%`) === `${n}%`));
    fc.assert(
      fc.property(fc.integer({ min: -1000, max: 0 }), (n) => {
        expect(() => checkMaxParallel(n)).toThrow(RolloutError);
        expect(() => checkMaxParallel(`${n}%`)).toThrow(RolloutError);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 101, max: 100_000 }), (n) => {
        expect(() => checkMaxParallel(`${n}%`)).toThrow(/must be from 1% to 100%/);
      }),
    );
  });
});

describe("batchSize", () => {
  test.each<[number | `${number}%`, number, number]>([
    [1, 10, 1],
    [3, 10, 3],
    [50, 10, 10], // capped at the fleet
    ["25%", 4, 1],
    ["25%", 10, 3], // 2.5 rounded up
    ["25%", 30, 8], // 7.5 rounded up
    ["25%", 100, 25],
    ["1%", 3, 1], // at least one host
    ["10%", 10, 1],
    ["33%", 3, 1], // 0.99 rounded up
    ["34%", 3, 2], // 1.02 rounded up
    ["100%", 7, 7],
    ["50%", 1, 1],
    [2, 0, 0],
    ["25%", 0, 0],
  ])("maxParallel %j of %d hosts: %d per batch", (maxParallel, hosts, size) => {
    expect(batchSize(maxParallel, hosts)).toBe(size);
  });

  test("N% is ceil(N * hosts / 100), at least 1, at most the hosts", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 5000 }), (p, n) => {
        const size = batchSize(`${p}%`, n);
        expect(size).toBeGreaterThanOrEqual(1);
        expect(size).toBeLessThanOrEqual(n);
        expect(size * 100).toBeGreaterThanOrEqual(p * n); // covers N% of the hosts
        expect((size - 1) * 100).toBeLessThan(p * n); // and not one host more
      }),
    );
  });

  test("an invalid maxParallel or host count is refused", () => {
    expect(() => batchSize(0, 3)).toThrow(/rollout\.maxParallel 0/);
    expect(() => batchSize("0%" as `${number}%`, 3)).toThrow(/rollout\.maxParallel "0%"/);
    expect(() => batchSize(2, -1)).toThrow(/hostCount -1/);
  });
});

describe("toBatches", () => {
  test("consecutive batches in the given order, the last one smaller", () => {
    expect(toBatches(["a", "b", "c", "d", "e"], 2)).toEqual([["a", "b"], ["c", "d"], ["e"]]);
    expect(toBatches(["c", "a", "b"], 3)).toEqual([["c", "a", "b"]]);
    expect(toBatches(["a"], 5)).toEqual([["a"]]);
    expect(toBatches([], 2)).toEqual([]);
  });

  test("every host exactly once, in order, no batch over the size", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string(), { maxLength: 60 }), fc.integer({ min: 1, max: 70 }), (hosts, size) => {
        const batches = toBatches(hosts, size);
        expect(batches.flat()).toEqual(hosts);
        expect(batches.every((b) => b.length >= 1 && b.length <= size)).toBe(true);
        expect(batches.slice(0, -1).every((b) => b.length === size)).toBe(true);
        expect(batches.length).toBe(Math.ceil(hosts.length / size));
      }),
    );
  });

  test("a size below 1 is refused", () => {
    expect(() => toBatches(["a"], 0)).toThrow(/batch size 0/);
  });
});

describe("actions", () => {
  test("worstAction orders none < relisten < reload < restart", () => {
    expect(worstAction([])).toBe("none");
    expect(worstAction(["none", "relisten"])).toBe("relisten");
    expect(worstAction(["relisten", "reload", "none"])).toBe("reload");
    expect(worstAction(["restart", "relisten"])).toBe("restart");
    expect(worstAction(["something new"])).toBe("restart"); // unknown: the worst case
  });

  test("only reload and restart are disruptive", () => {
    expect([isDisruptive("none"), isDisruptive("relisten"), isDisruptive("reload"), isDisruptive("restart")]).toEqual([false, false, true, true]);
  });
});

describe("planRollout", () => {
  const hosts = ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9", "h10"];
  const all = (action: string) => Object.fromEntries(hosts.map((h) => [h, { "php8.2-fpm": action, nginx: "none" }]));
  const adaptive = toRollout({});

  test("default: all hosts at once when no host needs more than relisten", () => {
    const plan = planRollout(hosts, { ...all("relisten"), h3: { "php8.2-fpm": "none", nginx: "none" } }, adaptive);
    expect(plan.batches).toEqual([hosts]);
    expect(plan.batchSize).toBe(10);
    expect(plan.maxParallel).toBeUndefined();
    expect(plan.reason).toBe('no host needs more than "relisten" (no request is dropped)');
    expect(describeRollout(plan, adaptive)).toBe('rollout: all 10 host(s) at once (no host needs more than "relisten" (no request is dropped))');
  });

  test(`default: ${DEFAULT_MAX_PARALLEL} of the hosts at a time when one host reloads or restarts`, () => {
    const plan = planRollout(hosts, { ...all("relisten"), h7: { "php8.2-fpm": "relisten", nginx: "reload" } }, adaptive);
    expect(plan.batches).toEqual([["h1", "h2", "h3"], ["h4", "h5", "h6"], ["h7", "h8", "h9"], ["h10"]]);
    expect(plan.maxParallel).toBe("25%");
    expect(plan.worst.h7).toBe("reload");
    expect(plan.reason).toBe("default maxParallel 25%: h7 (reload) must reload or restart a service");
    expect(describeRollout(plan, adaptive)).toBe(
      "rollout: 4 batches of up to 3 host(s) (default maxParallel 25%: h7 (reload) must reload or restart a service); " +
        "stops after the first batch with a failed host",
    );
    expect(describeRollout(plan, toRollout({ maxFailedHosts: 2 }))).toMatch(
      /stops after the batch in which more than 2 host\(s\) have failed \(needs pulumi up --continue-on-error\)$/,
    );
  });

  test("default with restarts everywhere names a few hosts and the count", () => {
    const plan = planRollout(hosts, all("restart"), adaptive);
    expect(plan.batches.length).toBe(4);
    expect(plan.reason).toMatch(/h1 \(restart\), h2 \(restart\), h3 \(restart\), … \(10 hosts\)/);
  });

  test("a host without actions (not probed) counts as none", () => {
    expect(planRollout(["a", "b"], { a: { nginx: "relisten" } }, adaptive).batches).toEqual([["a", "b"]]);
  });

  test("a configured maxParallel is used whatever the actions", () => {
    expect(planRollout(hosts, all("none"), toRollout({ maxParallel: 4 })).batches).toEqual([
      ["h1", "h2", "h3", "h4"],
      ["h5", "h6", "h7", "h8"],
      ["h9", "h10"],
    ]);
    expect(planRollout(hosts, all("restart"), toRollout({ maxParallel: "100%" })).batches).toEqual([hosts]);
    expect(planRollout(hosts, {}, toRollout({ maxParallel: 1 })).batches).toEqual(hosts.map((h) => [h]));
  });

  test("no hosts: no batches", () => {
    expect(planRollout([], {}, adaptive).batches).toEqual([]);
    expect(planRollout([], {}, toRollout({ maxParallel: "50%" })).batches).toEqual([]);
  });

  test("unprobed hosts go last, in batches of their own of the same size, counted in the fleet's size", () => {
    const plan = planRollout(hosts, all("relisten"), toRollout({ maxParallel: "25%" }), ["h2", "h5", "h9"]);
    // 25% of 10 hosts: 3 per batch; the 7 probed hosts first, then the 3 that could not be probed.
    expect(plan.batches).toEqual([["h1", "h3", "h4"], ["h6", "h7", "h8"], ["h10"], ["h2", "h5", "h9"]]);
    expect(plan.unprobed).toEqual(["h2", "h5", "h9"]);
    expect(planRollout(["a", "b", "c"], {}, toRollout({ maxParallel: 1 }), ["a", "b"]).batches).toEqual([["c"], ["a"], ["b"]]);
  });

  test("adaptive: the probed hosts at once, the unprobed ones after them; their (unknown) actions do not shrink the batches", () => {
    const plan = planRollout(["a", "b", "c"], { a: { nginx: "relisten" }, b: { nginx: "restart" }, c: {} }, adaptive, ["b"]);
    expect(plan.batches).toEqual([["a", "c"], ["b"]]);
    expect(plan.maxParallel).toBeUndefined();
    expect(plan.worst.b).toBe("none");
    expect(describeRollout(plan, adaptive)).toBe(
      'rollout: 2 batches of up to 3 host(s) (no host needs more than "relisten" (no request is dropped)); ' +
        "last, in batch(es) of their own: b, which could not be probed (each is probed again when its batch starts), so that their failure " +
        "cannot stop the hosts that can be deployed; stops after the first batch with a failed host",
    );
    // A disruptive probed host still gives the default batch size, counted over the whole fleet.
    const disrupted = planRollout(hosts, { ...all("none"), h1: { nginx: "restart" } }, adaptive, ["h10"]);
    expect(disrupted.batches).toEqual([["h1", "h2", "h3"], ["h4", "h5", "h6"], ["h7", "h8", "h9"], ["h10"]]);
  });

  test("no host probed, or an unknown name in unprobed", () => {
    const plan = planRollout(["a", "b"], {}, adaptive, ["a", "b", "zz"]);
    expect(plan.batches).toEqual([["a", "b"]]);
    expect(plan.unprobed).toEqual(["a", "b"]);
    expect(describeRollout(plan, adaptive)).toBe(
      'rollout: all 2 host(s) at once (no host needs more than "relisten" (no request is dropped)); no host could be probed (a, b)',
    );
    expect(planRollout(["a", "b"], {}, adaptive, ["zz"]).batches).toEqual([["a", "b"]]);
  });

  test("every host exactly once; every unprobed host after every probed one; no batch over the size", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 4 }), { maxLength: 40 }),
        fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
        fc.integer({ min: 1, max: 12 }),
        (names, failedFlags, size) => {
          const unprobed = names.filter((_, i) => failedFlags[i]);
          const plan = planRollout(names, {}, toRollout({ maxParallel: size }), unprobed);
          expect([...plan.batches.flat()].sort()).toEqual([...names].sort());
          const at = batchIndex(plan.batches);
          const probed = names.filter((n) => !unprobed.includes(n));
          for (const u of unprobed) for (const p of probed) expect(at[u]).toBeGreaterThan(at[p]);
          expect(plan.batches.every((b) => b.length >= 1 && b.length <= size)).toBe(true);
        },
      ),
    );
  });

  test("batchIndex maps each host to its batch", () => {
    expect(batchIndex([["a", "b"], ["c"]])).toEqual({ a: 0, b: 0, c: 1 });
  });
});

describe("hostPlaces and rolloutNote", () => {
  test("each host's batch and the hosts after it; none for a plan of one batch", () => {
    const plan = { batches: [["a", "b"], ["c"], ["d", "e"]] };
    expect(hostPlaces(plan, toRollout({}))).toEqual({
      a: { batch: 1, batches: 3, later: ["c", "d", "e"], laterCount: 3, maxFailedHosts: 0 },
      b: { batch: 1, batches: 3, later: ["c", "d", "e"], laterCount: 3, maxFailedHosts: 0 },
      c: { batch: 2, batches: 3, later: ["d", "e"], laterCount: 2, maxFailedHosts: 0 },
      d: { batch: 3, batches: 3, later: [], laterCount: 0, maxFailedHosts: 0 },
      e: { batch: 3, batches: 3, later: [], laterCount: 0, maxFailedHosts: 0 },
    });
    expect(hostPlaces({ batches: [["a", "b"]] }, toRollout({}))).toEqual({});
    expect(hostPlaces({ batches: [] }, toRollout({}))).toEqual({});
  });

  test("a long tail is cut to the first names and the count", () => {
    const tail = Array.from({ length: 45 }, (_, i) => `t${i}`);
    const place = hostPlaces({ batches: [["a"], tail] }, toRollout({})).a;
    expect(place.later).toEqual(tail.slice(0, 20));
    expect(place.laterCount).toBe(45);
    expect(rolloutNote(place)).toBe(
      `rollout stopped at this host's batch 1 of 2: not touched: ${tail.slice(0, 20).join(", ")}, … (45 hosts) (rollout.maxFailedHosts 0)`,
    );
  });

  test("maxFailedHosts 0: the rollout stops at the host's batch; more: only with --continue-on-error; nothing after it: no note", () => {
    const places = hostPlaces({ batches: [["h1"], ["h2"], ["h3"]] }, toRollout({}));
    expect(rolloutNote(places.h2)).toBe("rollout stopped at this host's batch 2 of 3: not touched: h3 (rollout.maxFailedHosts 0)");
    expect(rolloutNote(places.h3)).toBeUndefined();
    expect(rolloutNote(undefined)).toBeUndefined();
    const tolerant = hostPlaces({ batches: [["h1"], ["h2"], ["h3"]] }, toRollout({ maxFailedHosts: 1 }));
    expect(rolloutNote(tolerant.h1)).toBe(
      "rollout: this host is in batch 1 of 3; the later batches (h2, h3) go on only with pulumi up --continue-on-error, " +
        "until more than 1 host(s) have failed (rollout.maxFailedHosts 1); without it they are not touched",
    );
  });
});

describe("stopReason", () => {
  test("stops once more hosts failed than maxFailedHosts", () => {
    expect(stopReason([], toRollout({}))).toBeUndefined();
    expect(stopReason(["a"], toRollout({}))).toBe("1 host(s) failed (a), more than rollout.maxFailedHosts 0");
    expect(stopReason(["a"], toRollout({ maxFailedHosts: 1 }))).toBeUndefined();
    expect(stopReason(["a", "b"], toRollout({ maxFailedHosts: 1 }))).toBe("2 host(s) failed (a, b), more than rollout.maxFailedHosts 1");
  });
});
