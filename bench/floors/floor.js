// A JavaScript router with no logic: `route` answers a constant. Built with
// the same toolchain and options as the seed matrix (examples/policies/js),
// it costs what componentize-js's bindings and the interpreter cost per call
// and nothing of a policy: the floor of `route/js` (see BENCHMARKS.md).
//
// FLOOR_ANSWER picks the answer: "full" (the seed matrix's answer to the
// one-message benchmark request: direct on glm-4.7, two fallbacks, its
// reasoning) or "minimal" (one-letter reasoning, no fallbacks), so that the
// difference shows what lowering an answer costs. build.sh substitutes it.

const FULL = {
  tier: "direct",
  executor: "glm-4.7",
  fallbacks: ["deepseek-v3.2-exp", "claude-opus-4.5"],
  planner: undefined,
  reasoning: "medium: dependency:module, change:fix, change:fail",
  deadlineMs: undefined,
  maxCostUsd: undefined,
  maxOutputTokens: undefined,
  labels: [],
};

const MINIMAL = {
  tier: "direct",
  executor: "glm-4.7",
  fallbacks: [],
  planner: undefined,
  reasoning: "m",
  deadlineMs: undefined,
  maxCostUsd: undefined,
  maxOutputTokens: undefined,
  labels: [],
};

const ANSWER = "FLOOR_ANSWER" === "minimal" ? MINIMAL : FULL;

/** The `pointsman:policy/routing@0.2.0` export. */
export const routing = {
  // The catalog is lifted by the bindings before this runs; it is kept, as
  // a policy would keep it, but not read.
  configure(catalog) {
    globalThis.catalog = catalog;
  },
  route(_request, _health) {
    return ANSWER;
  },
};
