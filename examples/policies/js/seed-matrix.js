// The seed architecture's Route Decision Matrix as a router policy, in JavaScript.
//
// | Complexity | Tier              | Models                        |
// |------------|-------------------|-------------------------------|
// | Critical   | `plan-and-verify` | deepseek-v3.2 → glm-4.7       |
// | High       | `plan`            | deepseek-v3.2 → glm-4.7       |
// | Medium     | `direct`          | glm-4.7                       |
// | Low        | `direct`          | glm-4.7                       |
//
// A port of the Rust policy in `policies/seed-matrix/src/lib.rs`: the same
// rules, word lists and texts, so that the three implementations route every
// request identically. They are checked against the same table
// (`examples/policies/cases.jsonl`); a change there must be made here too.
//
// Built into a component of the `router` world of `wit/0.1.0/policy.wit` by
// `build.sh`. componentize-js maps the WIT types as follows: record fields are
// camelCase (`inputTokens`, `maxOutputTokens`, `toolCount`, `contextWindow`),
// enums are their kebab-case strings (`"plan-and-verify"`), options are
// `undefined` or the value. A `result<decision, string>` is returned by
// returning the decision (ok) or throwing a string (err). The module imports
// nothing, so `node test.mjs` can load it as is.

/** Words whose presence makes a task critical, matched as stems. */
export const CRITICAL_STEMS = [
  "secur",
  "authent",
  "authoriz",
  "credential",
  "secret",
  "vulnerab",
  "deploy",
  "production",
  "migrat",
  "payment",
  "password",
  "encrypt",
  "exploit",
];
/** Short critical words, matched exactly (as stems they would match too much). */
export const CRITICAL_WORDS = ["auth", "oauth", "cve", "prod"];
/** Signals that the work spans several parts of a system. */
export const DEPENDENCY_STEMS = [
  "across",
  "multiple",
  "several",
  "component",
  "module",
  "service",
  "integrat",
  "pipeline",
  "dependenc",
  "subsystem",
];
/** Signals of new design work, matched as stems. */
export const NOVELTY_STEMS = [
  "architect",
  "design",
  "scaffold",
  "greenfield",
  "rewrite",
  "framework",
  "prototype",
];
/** Signals of new design work, matched as phrases. */
export const NOVELTY_PHRASES = ["new feature", "from scratch", "new system", "add support"];
/** Signals of a small change. */
export const SIMPLE_STEMS = [
  "typo",
  "rename",
  "comment",
  "format",
  "lint",
  "spelling",
  "whitespace",
  "trivial",
  "simple",
  "tiny",
];
/** Signals of a refactor or a bug fix. */
export const CHANGE_STEMS = [
  "refactor",
  "bug",
  "fix",
  "error",
  "fail",
  "broken",
  "crash",
  "regress",
  "debug",
];

/** Executors in order of preference: the primary, the backup, the premium fallback. */
export const EXECUTORS = ["glm-4.7", "deepseek-v3.2-exp", "claude-opus-4.5"];
/** Planners in order of preference. */
export const PLANNERS = ["deepseek-v3.2", "claude-opus-4.5"];

/**
 * The lower-cased ASCII words of every user message: split on anything that
 * is not an ASCII letter or digit (every UTF-16 unit of a non-ASCII character
 * is a separator, as every non-ASCII `char` is in Rust).
 */
function taskWords(request) {
  const words = [];
  for (const message of request.messages) {
    if (message.role !== "user") continue;
    for (const word of message.content.split(/[^A-Za-z0-9]/)) {
      // The word is pure ASCII, so toLowerCase only touches A-Z.
      if (word !== "") words.push(word.toLowerCase());
    }
  }
  return words;
}

/** The stems of `stems` that start some word of `words`, in list order. */
function stemsIn(words, stems) {
  return stems.filter((stem) => words.some((word) => word.startsWith(stem)));
}

/**
 * Classifies `request`: returns `[complexity, signals]`, the complexity being
 * one of "critical", "high", "medium", "low".
 */
export function classify(request) {
  const words = taskWords(request);
  const critical = [
    ...stemsIn(words, CRITICAL_STEMS),
    ...CRITICAL_WORDS.filter((w) => words.includes(w)),
  ].map((k) => `keyword:${k}`);
  if (critical.length > 0) {
    return ["critical", critical];
  }

  let score = 0;
  const signals = [];
  const tokens = request.inputTokens;
  for (const [threshold, points] of [
    [32000, 3],
    [8000, 2],
    [2000, 1],
  ]) {
    if (tokens >= threshold) {
      score += points;
      signals.push(`tokens>=${threshold}`);
      break;
    }
  }
  if (request.messageCount >= 16) {
    score += 1;
    signals.push("messages>=16");
  }
  if (request.toolCount >= 5) {
    score += 1;
    signals.push("tools>=5");
  }
  const dependencies = stemsIn(words, DEPENDENCY_STEMS);
  score += Math.min(dependencies.length, 2);
  signals.push(...dependencies.map((s) => `dependency:${s}`));
  const phraseText = ` ${words.join(" ")} `;
  const novelty = [
    ...stemsIn(words, NOVELTY_STEMS),
    ...NOVELTY_PHRASES.filter((p) => phraseText.includes(` ${p} `)),
  ];
  if (novelty.length > 0) {
    score += 2;
  }
  signals.push(...novelty.map((s) => `novelty:${s}`));
  const simple = stemsIn(words, SIMPLE_STEMS);
  if (simple.length > 0) {
    score -= 1;
  }
  signals.push(...simple.map((s) => `simple:${s}`));
  const change = stemsIn(words, CHANGE_STEMS);
  signals.push(...change.map((s) => `change:${s}`));

  let complexity;
  if (score >= 3) {
    complexity = "high";
  } else if (score >= 1 || (change.length > 0 && simple.length === 0)) {
    complexity = "medium";
  } else {
    complexity = "low";
  }
  return [complexity, signals];
}

function describe(signals) {
  return signals.length === 0 ? "no signals" : signals.join(", ");
}

function pushOnce(notes, note) {
  if (!notes.includes(note)) notes.push(note);
}

/**
 * The models of `preference` that the catalog has, available and large
 * enough, in order; notes why others were skipped.
 */
function candidates(preference, models, needed, notes) {
  const out = [];
  for (const id of preference) {
    const model = models.find((m) => m.id === id);
    if (model === undefined) continue;
    if (!model.available) {
      pushOnce(notes, `skipped ${id} (unavailable)`);
    } else if (model.contextWindow < needed) {
      pushOnce(notes, `skipped ${id} (context ${model.contextWindow} < ${needed})`);
    } else {
      out.push(id);
    }
  }
  return out;
}

/** Decides how to serve `request` given the catalog `models`; throws a string on error. */
function route(request, models) {
  const [complexity, signals] = classify(request);
  // u32 + u32 stays well inside a double's exact integers.
  const needed = request.inputTokens + (request.maxOutputTokens ?? 0);
  const notes = [];
  const executors = candidates(EXECUTORS, models, needed, notes);
  if (executors.length === 0) {
    throw `no executor fits a request of ${needed} tokens (${notes.join(", ")})`;
  }
  const [executor, ...fallbacks] = executors;
  let tier =
    complexity === "critical" ? "plan-and-verify" : complexity === "high" ? "plan" : "direct";
  let planner = undefined;
  if (tier !== "direct") {
    planner = candidates(PLANNERS, models, needed, notes)[0];
    if (planner === undefined) {
      tier = "direct";
      notes.push("no planner fits, serving direct");
    }
  }
  let reasoning = `${complexity}: ${describe(signals)}`;
  if (notes.length > 0) {
    reasoning += "; " + notes.join(", ");
  }
  return {
    tier,
    executor,
    fallbacks,
    planner,
    reasoning,
    deadlineMs: undefined,
    maxCostUsd: undefined,
  };
}

/** The `switchyard:policy/routing@0.1.0` export. */
export const routing = {
  route(request, models) {
    try {
      return route(request, models);
    } catch (error) {
      // componentize-js lowers only a thrown string into the `err` case; any
      // other thrown value (an `Error`) would trap the instance instead.
      throw typeof error === "string" ? error : `internal error: ${error}`;
    }
  },
};
