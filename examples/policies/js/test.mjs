// Native unit tests of seed-matrix.js: `node test.mjs`.
//
// The same checks as the Rust policy's tests, with the exact routes the Rust
// policy gives. The shared table `examples/policies/cases.jsonl` checks the
// built component through the host.
import assert from "node:assert/strict";
import test from "node:test";

import { classify, decide, routing } from "./seed-matrix.js";

const CONTEXT = {
  "claude-opus-4.5": 200000,
  "deepseek-v3.2": 164000,
  "deepseek-v3.2-exp": 164000,
  "glm-4.7": 128000,
};

/** The seed catalog, with the models of `down` unavailable. */
function catalog(...down) {
  return Object.entries(CONTEXT).map(([id, contextWindow]) => ({
    id,
    roles: [],
    inputUsdPerMtok: 1,
    outputUsdPerMtok: 2,
    contextWindow,
    capabilities: { vision: id === "claude-opus-4.5", tools: true, jsonOutput: true, reasoning: true },
    tags: [],
    available: !down.includes(id),
    successRate: 1,
    p50LatencyMs: 0,
  }));
}

/** A chat request whose one user message is `text` (about four bytes a token). */
function request(text, fields = {}) {
  return {
    id: "test",
    api: "openai-chat",
    requestedModel: "auto",
    messages: [{ role: "user", content: text }],
    messageCount: 1,
    inputTokens: Math.floor(Buffer.byteLength(text) / 4) + 1,
    maxOutputTokens: undefined,
    toolCount: 0,
    toolNames: [],
    hasImages: false,
    imageCount: 0,
    stream: false,
    temperature: undefined,
    responseFormat: "text",
    client: undefined,
    remainingBudgetUsd: undefined,
    labels: [],
    session: undefined,
    ...fields,
  };
}

/**
 * The export as the host drives it: `configure` with the catalog's static
 * part, then `route` with its health.
 */
const router = {
  route(req, models, config = []) {
    routing.configure({ generation: 1n, models, config });
    const health = models.map((m) => ({
      available: m.available, successRate: m.successRate, p50LatencyMs: m.p50LatencyMs,
    }));
    return routing.route(req, health);
  },
};

const ALL = ["deepseek-v3.2-exp", "claude-opus-4.5"];

function check(route, tier, executor, fallbacks, planner, reasoning) {
  assert.deepEqual(
    { ...route },
    { tier, executor, fallbacks, planner, reasoning, deadlineMs: undefined, maxCostUsd: undefined,
      maxOutputTokens: undefined, labels: [] },
  );
}

test("critical work is planned and verified", () => {
  const r = router.route(request("Rotate the production database credentials"), catalog());
  check(r, "plan-and-verify", "glm-4.7", ALL, "deepseek-v3.2",
    "critical: keyword:credential, keyword:production");
});

test("new architecture is planned", () => {
  const r = router.route(
    request("Design the architecture of a plugin system across multiple modules"), catalog());
  check(r, "plan", "glm-4.7", ALL, "deepseek-v3.2",
    "high: dependency:across, dependency:multiple, dependency:module, novelty:architect, novelty:design");
});

test("bug fix is medium and direct", () => {
  const r = router.route(request("Fix the off-by-one bug in the parser"), catalog());
  check(r, "direct", "glm-4.7", ALL, undefined, "medium: change:bug, change:fix");
});

test("typo is low", () => {
  const r = router.route(request("fix a typo in the README"), catalog());
  check(r, "direct", "glm-4.7", ALL, undefined, "low: simple:typo, change:fix");
});

test("large context alone makes high", () => {
  const r = router.route(request("continue", { inputTokens: 40000 }), catalog());
  check(r, "plan", "glm-4.7", ALL, "deepseek-v3.2", "high: tokens>=32000");
});

test("author is not auth", () => {
  assert.deepEqual(classify(request("who is the author of this function")), ["low", []]);
  const r = router.route(request("who is the author of this function"), catalog());
  assert.equal(r.reasoning, "low: no signals");
});

test("words split on every non-ASCII character", () => {
  // "prodüction" is the words "prod" and "ction"; "ﬁx" (a ligature) is "x".
  const r = router.route(request("check the prodüction logs"), catalog());
  check(r, "plan-and-verify", "glm-4.7", ALL, "deepseek-v3.2", "critical: keyword:prod");
  assert.equal(router.route(request("a naïve ﬁx for the Ｂug"), catalog()).reasoning,
    "low: no signals");
});

test("phrases and tools count", () => {
  assert.equal(router.route(request("Add support for webhooks"), catalog()).reasoning,
    "medium: novelty:add support");
  const r = router.route(
    request("Refactor the billing service, then rename it", { toolCount: 5 }), catalog());
  assert.equal(r.reasoning,
    "medium: tools>=5, dependency:service, simple:rename, change:refactor");
});

test("the task size is the user's words, not the agent's scaffolding", () => {
  const ask = request("Fix the typo in main.rs", {
    inputTokens: 20000,
    toolCount: 12,
    labels: [["task_tokens", "7"]],
  });
  check(router.route(ask, catalog()), "direct", "glm-4.7", ALL, undefined,
    "low: tools>=5, simple:typo, change:fix");
  const r = router.route(request("Fix the typo in main.rs", { inputTokens: 20000 }), catalog());
  assert.equal(r.reasoning, "medium: tokens>=8000, simple:typo, change:fix");
});

test("the pointsman.threshold label moves the High boundary", () => {
  const text = "Design the cache layer across modules"; // score 4
  const at = (value) => router.route(request(text, { labels: [["pointsman.threshold", value]] }), catalog());
  assert.equal(router.route(request(text), catalog()).tier, "plan");
  assert.equal(at("0.5").tier, "plan");
  assert.equal(at("0.7").tier, "direct"); // 4 < 4.2
  assert.equal(at("0.6").tier, "plan"); // 4 >= 3.6
  assert.ok(at("0.7").reasoning.endsWith("threshold:0.7"), at("0.7").reasoning);
  assert.equal(at("1e-1").tier, "plan"); // not a plain decimal: ignored
  assert.ok(!at("1e-1").reasoning.includes("threshold"));
});

test("tool-result turns keep the tier their task started with", () => {
  const turn = request("Fix the typo in main.rs", { labels: [["task_tier", "plan"]] });
  assert.equal(router.route(turn, catalog()).tier, "direct");
  turn.messages.push({ role: "tool", content: "1\tfn main() {}" }, { role: "system", content: "reminder" });
  check(router.route(turn, catalog()), "plan", "glm-4.7", ALL, "deepseek-v3.2",
    "high: continues a plan task, simple:typo, change:fix");
  const big = request("Design a plugin architecture across modules", {
    inputTokens: 60000,
    labels: [["task_tier", "direct"]],
  });
  big.messages.push({ role: "tool", content: "..." });
  const r = router.route(big, catalog());
  assert.equal(r.tier, "direct");
  assert.ok(r.reasoning.startsWith("medium: continues a direct task"), r.reasoning);
});

test("unavailable executor is skipped", () => {
  const r = router.route(request("fix the bug"), catalog("glm-4.7"));
  check(r, "direct", "deepseek-v3.2-exp", ["claude-opus-4.5"], undefined,
    "medium: change:bug, change:fix; skipped glm-4.7 (unavailable)");
});

test("context window is respected", () => {
  let r = router.route(request("fix the bug", { inputTokens: 150000 }), catalog());
  check(r, "plan", "deepseek-v3.2-exp", ["claude-opus-4.5"], "deepseek-v3.2",
    "high: tokens>=32000, change:bug, change:fix; skipped glm-4.7 (context 128000 < 150000)");
  r = router.route(request("fix the bug", { inputTokens: 180000 }), catalog());
  check(r, "plan", "claude-opus-4.5", [], "claude-opus-4.5",
    "high: tokens>=32000, change:bug, change:fix; skipped glm-4.7 (context 128000 < 180000), " +
      "skipped deepseek-v3.2-exp (context 164000 < 180000), skipped deepseek-v3.2 (context 164000 < 180000)");
  assert.throws(
    () => router.route(request("fix", { inputTokens: 250000 }), catalog()),
    (e) =>
      e ===
      "no executor fits a request of 250000 tokens (skipped glm-4.7 (context 128000 < 250000), " +
        "skipped deepseek-v3.2-exp (context 164000 < 250000), skipped claude-opus-4.5 (context 200000 < 250000))",
  );
});

test("max output tokens count against the context window", () => {
  const r = router.route(
    request("explain this", { inputTokens: 100000, maxOutputTokens: 30000 }), catalog());
  check(r, "plan", "deepseek-v3.2-exp", ["claude-opus-4.5"], "deepseek-v3.2",
    "high: tokens>=32000; skipped glm-4.7 (context 128000 < 130000)");
});

test("planner falls back to premium", () => {
  const r = router.route(request("deploy to production"), catalog("deepseek-v3.2"));
  check(r, "plan-and-verify", "glm-4.7", ALL, "claude-opus-4.5",
    "critical: keyword:deploy, keyword:production; skipped deepseek-v3.2 (unavailable)");
});

test("plan without planner degrades to direct", () => {
  const r = router.route(request("deploy to production"),
    catalog("deepseek-v3.2", "claude-opus-4.5"));
  check(r, "direct", "glm-4.7", ["deepseek-v3.2-exp"], undefined,
    "critical: keyword:deploy, keyword:production; skipped claude-opus-4.5 (unavailable), " +
      "skipped deepseek-v3.2 (unavailable), no planner fits, serving direct");
});

test("unexpected exceptions become error strings", () => {
  assert.throws(
    () => router.route({ messages: null }, catalog()),
    (e) => typeof e === "string" && e.startsWith("internal error: TypeError"),
  );
});

test("images go only to vision models", () => {
  const r = router.route(request("What does this screenshot show?", { hasImages: true, imageCount: 1 }), catalog());
  check(r, "direct", "claude-opus-4.5", [], undefined,
    "low: no signals; skipped glm-4.7 (no vision), skipped deepseek-v3.2-exp (no vision)");
});

test("an agent's dozens of tools do not make a task complex", () => {
  const text = "Rewrite the cache layer";
  assert.equal(router.route(request(text, { toolCount: 6 }), catalog()).tier, "plan");
  assert.equal(router.route(request(text, { toolCount: 40 }), catalog()).tier, "direct");
});

test("the threshold comes from config and the label overrides it", () => {
  const text = "Design the cache layer across modules"; // score 4
  assert.equal(router.route(request(text), catalog(), [["threshold", "0.7"]]).tier, "direct");
  const labelled = request(text, { labels: [["pointsman.threshold", "0.6"]] });
  assert.equal(router.route(labelled, catalog(), [["threshold", "0.7"]]).tier, "plan");
  assert.throws(() => router.route(request(text), catalog(), [["threshold", "high"]]));
  assert.equal(decide(request(text), catalog(), 0.7).tier, "direct");
});
