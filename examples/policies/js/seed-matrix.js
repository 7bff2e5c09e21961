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
// Built into a component of the `router` world of `wit/0.2.0/policy.wit` by
// `build.sh`. componentize-js maps the WIT types as follows: record fields are
// camelCase (`inputTokens`, `maxOutputTokens`, `toolCount`, `contextWindow`),
// enums are their kebab-case strings (`"plan-and-verify"`), flags are objects
// of booleans (`capabilities.vision`), options are `undefined` or the value,
// a u64 is a BigInt.
//
// The host calls `configure` with the catalog and this module's config before
// the first `route` and after every change; `route` gets live health by
// catalog position. The catalog is kept below between calls: it is the
// host's, delivered again to any fresh instance, not the policy's own state. A `result<decision, string>` is returned by
// returning the decision (ok) or throwing a string (err). The module imports
// nothing, so `node test.mjs` can load it as is.
//
// Written for speed inside the component, where SpiderMonkey *interprets*
// this code (there is no JIT in WebAssembly) but runs built-ins such as
// `String.prototype.includes`, `toLowerCase` and regular-expression matching
// as compiled code. So the text is scanned by built-ins, once per signal,
// and never word by word in JavaScript; everything that can be computed once
// is computed when the module is initialised (componentize-js snapshots the
// initialised module, so that costs nothing per call); and the per-call code
// uses indexed `for` loops and no iterators: `for...of`, spreading, array
// destructuring, `map` and `filter` cost about 0.5 to 1.5 µs per element in
// the interpreter, against under 0.1 µs for an indexed loop.

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
 * One signal of a list: how the reasoning names it (`prefix` and the stem,
 * word or phrase), a substring the task text must contain for it to match (a
 * cheap native pre-check), and the exact test.
 */
function signal(prefix, name, whole) {
  // Signal words must be lower-case ASCII letters and digits, with single
  // spaces between the words of a phrase: they are pasted into a regular
  // expression, and matched against lower-cased text.
  if (!/^[a-z0-9]+( [a-z0-9]+)*$/.test(name)) throw new Error(`bad signal word ${name}`);
  const words = name.split(" ");
  // A word starts at a word boundary (`\b`; the task text has no `_`, so
  // `\b` separates ASCII letters and digits from anything else), the words of
  // a phrase are separated by anything that is not a letter or digit, and a
  // whole word or phrase ends at a boundary too.
  const pattern = `\\b${words.join("[^a-z0-9]+")}${whole ? "\\b" : ""}`;
  return { label: prefix + name, literal: words[0], pattern: new RegExp(pattern) };
}

/** A list of signals, compiled once, in the order the reasoning names them. */
function signals(prefix, stems, whole = []) {
  const out = [];
  for (let i = 0; i < stems.length; i++) out.push(signal(prefix, stems[i], false));
  for (let i = 0; i < whole.length; i++) out.push(signal(prefix, whole[i], true));
  return out;
}

const CRITICAL = signals("keyword:", CRITICAL_STEMS, CRITICAL_WORDS);
const DEPENDENCY = signals("dependency:", DEPENDENCY_STEMS);
const NOVELTY = signals("novelty:", NOVELTY_STEMS, NOVELTY_PHRASES);
const SIMPLE = signals("simple:", SIMPLE_STEMS);
const CHANGE = signals("change:", CHANGE_STEMS);

/**
 * The task text: every user message, lower-cased, separated by spaces.
 *
 * Words are the runs of ASCII letters and digits; everything else, including
 * each UTF-16 unit of a non-ASCII character, separates them (as every
 * non-ASCII `char` does in Rust). The signals' regular expressions use `\b`
 * for the edges of words, which counts `_` as a letter: so `_` becomes a
 * space. `toLowerCase` maps exactly two non-ASCII characters to ASCII letters
 * (U+0130 "İ" to "i̇" and U+212A KELVIN SIGN to "k"), which would turn a
 * separator into a letter: so they become spaces first. Every step is one
 * native pass over the text.
 */
function taskText(request) {
  const messages = request.messages;
  let text = "";
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (message.role === "user") text += ` ${message.content}`;
  }
  return text.replaceAll("_", " ").replaceAll("\u0130", " ").replaceAll("\u212a", " ").toLowerCase();
}

/**
 * Appends the label of each signal of `list` found in `text`, in list order,
 * to `out`; returns how many were found.
 */
function find(text, list, out) {
  let found = 0;
  for (let i = 0; i < list.length; i++) {
    const s = list[i];
    if (text.includes(s.literal) && s.pattern.test(text)) {
      out.push(s.label);
      found++;
    }
  }
  return found;
}

/** The host's label with the tokens of what the user asked. */
export const TASK_TOKENS_LABEL = "task_tokens";
/** The host's label with the tier the session's current task started with. */
export const TASK_TIER_LABEL = "task_tier";
/**
 * The operator's label with the complexity threshold (0 to 1): a scored task
 * is high from a score of SCORE_SCALE * threshold (default 0.5, a score of 3).
 */
export const THRESHOLD_LABEL = "pointsman.threshold";
const DEFAULT_THRESHOLD = 0.5;
/** The module's config key with the threshold (the label overrides it). */
export const THRESHOLD_CONFIG = "threshold";
/** More tools than this is an agent's whole kit, not a sign of the task. */
export const TASK_TOOLS_MAX = 16;
const SCORE_SCALE = 6;

/** The `pointsman.threshold` label when it is a plain decimal, as written. */
export function thresholdLabel(request) {
  const value = label(request, THRESHOLD_LABEL);
  return value !== undefined && /^[0-9]{1,16}(\.[0-9]{1,16})?$/.test(value) ? value : undefined;
}

/** The complexity a continued task of each tier keeps. */
const TASK_TIERS = { "plan-and-verify": "critical", plan: "high", direct: "medium" };

function label(request, key) {
  const labels = request.labels;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i][0] === key) return labels[i][1];
  }
  return undefined;
}

/**
 * The host's `task_tokens` label (the user messages' tokens, without an
 * agent's system prompt and tool schemas), or the input tokens without it.
 */
export function taskTokens(request) {
  const value = label(request, TASK_TOKENS_LABEL);
  if (value !== undefined && /^[0-9]+$/.test(value) && Number(value) < 2 ** 32) {
    return Number(value);
  }
  return request.inputTokens;
}

/**
 * The tier name of the task a turn answering tool calls carries on (its
 * latest message, system messages aside, is a `tool` message), when the host
 * gives it in `task_tier`; else undefined.
 */
export function continuedTask(request) {
  const messages = request.messages;
  for (let i = messages.length - 1; i >= 0; i--) {
    const role = messages[i].role;
    if (role === "system") continue;
    if (role !== "tool") return undefined;
    const tier = label(request, TASK_TIER_LABEL);
    return tier === "direct" || tier === "plan" || tier === "plan-and-verify" ? tier : undefined;
  }
  return undefined;
}

/**
 * Classifies `request`: returns `[complexity, signals]`, the complexity being
 * one of "critical", "high", "medium", "low".
 */
export function classify(request, configured = DEFAULT_THRESHOLD) {
  const text = taskText(request);
  const critical = [];
  if (find(text, CRITICAL, critical) > 0) {
    return ["critical", critical];
  }

  let score = 0;
  const signals = [];
  const tokens = taskTokens(request);
  if (tokens >= 32000) {
    score += 3;
    signals.push("tokens>=32000");
  } else if (tokens >= 8000) {
    score += 2;
    signals.push("tokens>=8000");
  } else if (tokens >= 2000) {
    score += 1;
    signals.push("tokens>=2000");
  }
  if (request.messageCount >= 16) {
    score += 1;
    signals.push("messages>=16");
  }
  if (request.toolCount >= 5 && request.toolCount <= TASK_TOOLS_MAX) {
    score += 1;
    signals.push("tools>=5");
  }
  const dependencies = find(text, DEPENDENCY, signals);
  score += Math.min(dependencies, 2);
  if (find(text, NOVELTY, signals) > 0) {
    score += 2;
  }
  const simple = find(text, SIMPLE, signals);
  if (simple > 0) {
    score -= 1;
  }
  const change = find(text, CHANGE, signals);

  let threshold = configured;
  const raw = thresholdLabel(request);
  if (raw !== undefined) {
    signals.push("threshold:" + raw);
    threshold = Number(raw);
  }
  let complexity;
  if (score >= SCORE_SCALE * threshold) {
    complexity = "high";
  } else if (score >= 1 || (change > 0 && simple === 0)) {
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
 * The models of `preference` that the catalog has, available, large enough,
 * and reading images and calling tools when `vision` and `tools` ask it, in
 * order; notes why others were skipped.
 */
function candidates(preference, models, needed, vision, tools, notes) {
  const out = [];
  for (let i = 0; i < preference.length; i++) {
    const id = preference[i];
    let model;
    for (let j = 0; j < models.length; j++) {
      if (models[j].id === id) {
        model = models[j];
        break;
      }
    }
    if (model === undefined) continue;
    if (!model.available) {
      pushOnce(notes, `skipped ${id} (unavailable)`);
    } else if (vision && !model.capabilities.vision) {
      pushOnce(notes, `skipped ${id} (no vision)`);
    } else if (tools && !model.capabilities.tools) {
      pushOnce(notes, `skipped ${id} (no tools)`);
    } else if (model.contextWindow < needed) {
      pushOnce(notes, `skipped ${id} (context ${model.contextWindow} < ${needed})`);
    } else {
      out.push(id);
    }
  }
  return out;
}

/** The `threshold` config as a number from 0 to 1, if set; throws a string otherwise. */
export function configuredThreshold(config) {
  for (let i = 0; i < config.length; i++) {
    if (config[i][0] !== THRESHOLD_CONFIG) continue;
    const raw = config[i][1];
    const value = Number(raw);
    if (raw.trim() === "" || Number.isNaN(value)) {
      throw `config ${THRESHOLD_CONFIG} = ${JSON.stringify(raw)} is not a valid value`;
    }
    if (value < 0 || value > 1) {
      throw `config ${THRESHOLD_CONFIG} = ${value} is outside 0 to 1`;
    }
    return value;
  }
  return undefined;
}

/**
 * Decides how to serve `request` given the catalog `models` (with health)
 * and the configured `threshold`; throws a string on error.
 */
export function decide(request, models, threshold = DEFAULT_THRESHOLD) {
  const classified = classify(request, threshold);
  let complexity = classified[0];
  const taskTier = continuedTask(request);
  if (taskTier !== undefined) {
    classified[1].unshift(`continues a ${taskTier} task`);
    const kept = TASK_TIERS[taskTier];
    // A direct task stays direct: at most medium.
    if (kept !== "medium" || complexity === "high" || complexity === "critical") {
      complexity = kept;
    }
  }
  // u32 + u32 stays well inside a double's exact integers.
  const needed = request.inputTokens + (request.maxOutputTokens ?? 0);
  const notes = [];
  // Only the executor sees the images and the tools; a planner plans from the text.
  const executors = candidates(
    EXECUTORS, models, needed, request.hasImages, request.toolCount > 0, notes);
  if (executors.length === 0) {
    throw `no executor fits a request of ${needed} tokens (${notes.join(", ")})`;
  }
  let tier =
    complexity === "critical" ? "plan-and-verify" : complexity === "high" ? "plan" : "direct";
  let planner = undefined;
  if (tier !== "direct") {
    planner = candidates(PLANNERS, models, needed, false, false, notes)[0];
    if (planner === undefined) {
      tier = "direct";
      notes.push("no planner fits, serving direct");
    }
  }
  let reasoning = `${complexity}: ${describe(classified[1])}`;
  if (notes.length > 0) {
    reasoning += `; ${notes.join(", ")}`;
  }
  return {
    tier,
    executor: executors[0],
    fallbacks: executors.slice(1),
    planner,
    reasoning,
    deadlineMs: undefined,
    maxCostUsd: undefined,
    maxOutputTokens: undefined,
    labels: [],
  };
}

/** What `configure` delivered: the catalog's models (health filled per call). */
let models = undefined;
let threshold = DEFAULT_THRESHOLD;

/** The `pointsman:policy/routing@0.2.0` export. */
export const routing = {
  configure(catalog) {
    const configured = configuredThreshold(catalog.config);
    const delivered = [];
    for (let i = 0; i < catalog.models.length; i++) {
      const m = catalog.models[i];
      delivered.push({
        id: m.id,
        roles: m.roles,
        inputUsdPerMtok: m.inputUsdPerMtok,
        outputUsdPerMtok: m.outputUsdPerMtok,
        contextWindow: m.contextWindow,
        capabilities: m.capabilities,
        tags: m.tags,
        available: true,
        successRate: 1,
        p50LatencyMs: 0,
      });
    }
    models = delivered;
    threshold = configured ?? DEFAULT_THRESHOLD;
  },

  route(request, health) {
    try {
      if (models === undefined) throw "called before configure";
      if (health.length !== models.length) {
        throw `health for ${health.length} models, but the catalog has ${models.length}`;
      }
      for (let i = 0; i < health.length; i++) {
        models[i].available = health[i].available;
        models[i].successRate = health[i].successRate;
        models[i].p50LatencyMs = health[i].p50LatencyMs;
      }
      return decide(request, models, threshold);
    } catch (error) {
      // componentize-js lowers only a thrown string into the `err` case; any
      // other thrown value (an `Error`) would trap the instance instead.
      throw typeof error === "string" ? error : `internal error: ${error}`;
    }
  },
};
