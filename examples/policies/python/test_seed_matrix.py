"""Native unit tests of seed_matrix.py: `python3 test_seed_matrix.py`.

The same checks as the Rust policy's tests, with the exact routes the Rust
policy gives. The shared table `examples/policies/cases.jsonl` checks the
built component through the host. No bindings are needed: the policy reads
the WIT records by attribute, so plain dataclasses stand in for them.
"""

import os
import sys
import unittest
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import seed_matrix  # noqa: E402
from seed_matrix import Decision, RouteError, classify, route  # noqa: E402


@dataclass
class Message:
    role: str
    content: str


@dataclass
class Request:
    messages: List[Message]
    input_tokens: int
    message_count: int = 1
    max_output_tokens: Optional[int] = None
    tool_count: int = 0
    has_images: bool = False
    image_count: int = 0
    id: str = "test"
    api: str = "openai-chat"
    requested_model: str = "auto"
    labels: List[Tuple[str, str]] = field(default_factory=list)
    session: Optional[str] = None


@dataclass
class Model:
    id: str
    context_window: int
    available: bool = True
    vision: bool = False
    tools: bool = True
    roles: List[str] = field(default_factory=list)
    input_usd_per_mtok: float = 1.0
    output_usd_per_mtok: float = 2.0
    success_rate: float = 1.0
    p50_latency_ms: int = 0


CONTEXT = {
    "claude-opus-4.5": 200_000,
    "deepseek-v3.2": 164_000,
    "deepseek-v3.2-exp": 164_000,
    "glm-4.7": 128_000,
}
ALL = ["deepseek-v3.2-exp", "claude-opus-4.5"]


def catalog(*down: str) -> List[Model]:
    """The seed catalog, with the models of `down` unavailable."""
    return [Model(id, cw, available=id not in down, vision=id == "claude-opus-4.5")
            for id, cw in CONTEXT.items()]


def request(text: str, **fields) -> Request:
    """A chat request whose one user message is `text` (about four bytes a token)."""
    fields.setdefault("input_tokens", len(text.encode()) // 4 + 1)
    return Request(messages=[Message("user", text)], **fields)


class SeedMatrixTest(unittest.TestCase):
    def check(self, decision, tier, executor, fallbacks, planner, reasoning):
        self.assertEqual(
            decision,
            Decision(
                tier=tier,
                executor=executor,
                fallbacks=fallbacks,
                planner=planner,
                reasoning=reasoning,
                deadline_ms=None,
                max_cost_usd=None,
            ),
        )

    def test_critical_work_is_planned_and_verified(self):
        r = route(request("Rotate the production database credentials"), catalog())
        self.check(r, "plan-and-verify", "glm-4.7", ALL, "deepseek-v3.2",
                   "critical: keyword:credential, keyword:production")

    def test_new_architecture_is_planned(self):
        r = route(request("Design the architecture of a plugin system across multiple modules"),
                  catalog())
        self.check(r, "plan", "glm-4.7", ALL, "deepseek-v3.2",
                   "high: dependency:across, dependency:multiple, dependency:module, "
                   "novelty:architect, novelty:design")

    def test_bug_fix_is_medium_and_direct(self):
        r = route(request("Fix the off-by-one bug in the parser"), catalog())
        self.check(r, "direct", "glm-4.7", ALL, None, "medium: change:bug, change:fix")

    def test_typo_is_low(self):
        r = route(request("fix a typo in the README"), catalog())
        self.check(r, "direct", "glm-4.7", ALL, None, "low: simple:typo, change:fix")

    def test_large_context_alone_makes_high(self):
        r = route(request("continue", input_tokens=40_000), catalog())
        self.check(r, "plan", "glm-4.7", ALL, "deepseek-v3.2", "high: tokens>=32000")

    def test_author_is_not_auth(self):
        self.assertEqual(classify(request("who is the author of this function")),
                         (seed_matrix.LOW, []))
        r = route(request("who is the author of this function"), catalog())
        self.assertEqual(r.reasoning, "low: no signals")

    def test_words_split_on_every_non_ascii_character(self):
        # "prodüction" is the words "prod" and "ction"; "ﬁx" (a ligature) is "x".
        r = route(request("check the prodüction logs"), catalog())
        self.check(r, "plan-and-verify", "glm-4.7", ALL, "deepseek-v3.2", "critical: keyword:prod")
        r = route(request("a naïve ﬁx for the Ｂug"), catalog())
        self.assertEqual(r.reasoning, "low: no signals")

    def test_phrases_and_tool_count(self):
        r = route(request("Add support for webhooks"), catalog())
        self.assertEqual(r.reasoning, "medium: novelty:add support")
        r = route(request("Refactor the billing service, then rename it", tool_count=5), catalog())
        self.assertEqual(r.reasoning,
                         "medium: tools>=5, dependency:service, simple:rename, change:refactor")

    def test_the_task_size_is_the_users_words_not_the_agents_scaffolding(self):
        ask = request("Fix the typo in main.rs", input_tokens=20_000, tool_count=12,
                      labels=[("task_tokens", "7")])
        r = route(ask, catalog())
        self.check(r, "direct", "glm-4.7", ALL, None,
                   "low: tools>=5, simple:typo, change:fix")
        r = route(request("Fix the typo in main.rs", input_tokens=20_000), catalog())
        self.assertEqual(r.reasoning, "medium: tokens>=8000, simple:typo, change:fix")

    def test_the_threshold_label_moves_the_high_boundary(self):
        text = "Design the cache layer across modules"  # score 4

        def at(value):
            return route(request(text, labels=[("pointsman.threshold", value)]), catalog())

        self.assertEqual(route(request(text), catalog()).tier, "plan")
        self.assertEqual(at("0.5").tier, "plan")
        self.assertEqual(at("0.7").tier, "direct")  # 4 < 4.2
        self.assertEqual(at("0.6").tier, "plan")  # 4 >= 3.6
        self.assertTrue(at("0.7").reasoning.endswith("threshold:0.7"), at("0.7").reasoning)
        self.assertEqual(at("1e-1").tier, "plan")  # not a plain decimal: ignored
        self.assertNotIn("threshold", at("1e-1").reasoning)

    def test_tool_result_turns_keep_the_tier_their_task_started_with(self):
        turn = request("Fix the typo in main.rs", labels=[("task_tier", "plan")])
        self.assertEqual(route(turn, catalog()).tier, "direct")
        turn.messages += [Message("tool", "1\tfn main() {}"), Message("system", "reminder")]
        r = route(turn, catalog())
        self.check(r, "plan", "glm-4.7", ALL, "deepseek-v3.2",
                   "high: continues a plan task, simple:typo, change:fix")
        big = request("Design a plugin architecture across modules", input_tokens=60_000,
                      labels=[("task_tier", "direct")])
        big.messages.append(Message("tool", "..."))
        r = route(big, catalog())
        self.assertEqual(r.tier, "direct")
        self.assertTrue(r.reasoning.startswith("medium: continues a direct task"), r.reasoning)

    def test_unavailable_executor_is_skipped(self):
        r = route(request("fix the bug"), catalog("glm-4.7"))
        self.check(r, "direct", "deepseek-v3.2-exp", ["claude-opus-4.5"], None,
                   "medium: change:bug, change:fix; skipped glm-4.7 (unavailable)")

    def test_context_window_is_respected(self):
        r = route(request("fix the bug", input_tokens=150_000), catalog())
        self.check(r, "plan", "deepseek-v3.2-exp", ["claude-opus-4.5"], "deepseek-v3.2",
                   "high: tokens>=32000, change:bug, change:fix; "
                   "skipped glm-4.7 (context 128000 < 150000)")
        r = route(request("fix the bug", input_tokens=180_000), catalog())
        self.check(r, "plan", "claude-opus-4.5", [], "claude-opus-4.5",
                   "high: tokens>=32000, change:bug, change:fix; "
                   "skipped glm-4.7 (context 128000 < 180000), "
                   "skipped deepseek-v3.2-exp (context 164000 < 180000), "
                   "skipped deepseek-v3.2 (context 164000 < 180000)")
        with self.assertRaises(RouteError) as caught:
            route(request("fix", input_tokens=250_000), catalog())
        self.assertEqual(str(caught.exception),
                         "no executor fits a request of 250000 tokens "
                         "(skipped glm-4.7 (context 128000 < 250000), "
                         "skipped deepseek-v3.2-exp (context 164000 < 250000), "
                         "skipped claude-opus-4.5 (context 200000 < 250000))")

    def test_max_output_tokens_count_against_the_context_window(self):
        r = route(request("explain this", input_tokens=100_000, max_output_tokens=30_000),
                  catalog())
        self.check(r, "plan", "deepseek-v3.2-exp", ["claude-opus-4.5"], "deepseek-v3.2",
                   "high: tokens>=32000; skipped glm-4.7 (context 128000 < 130000)")

    def test_planner_falls_back_to_premium(self):
        r = route(request("deploy to production"), catalog("deepseek-v3.2"))
        self.check(r, "plan-and-verify", "glm-4.7", ALL, "claude-opus-4.5",
                   "critical: keyword:deploy, keyword:production; skipped deepseek-v3.2 (unavailable)")

    def test_plan_without_planner_degrades_to_direct(self):
        r = route(request("deploy to production"), catalog("deepseek-v3.2", "claude-opus-4.5"))
        self.check(r, "direct", "glm-4.7", ["deepseek-v3.2-exp"], None,
                   "critical: keyword:deploy, keyword:production; "
                   "skipped claude-opus-4.5 (unavailable), skipped deepseek-v3.2 (unavailable), "
                   "no planner fits, serving direct")

    def test_images_go_only_to_vision_models(self):
        r = route(request("What does this screenshot show?", has_images=True, image_count=1),
                  catalog())
        self.check(r, "direct", "claude-opus-4.5", [], None,
                   "low: no signals; skipped glm-4.7 (no vision), "
                   "skipped deepseek-v3.2-exp (no vision)")

    def test_an_agents_dozens_of_tools_do_not_make_a_task_complex(self):
        text = "Rewrite the cache layer"
        self.assertEqual(route(request(text, tool_count=6), catalog()).tier, "plan")
        self.assertEqual(route(request(text, tool_count=40), catalog()).tier, "direct")

    def test_the_threshold_comes_from_config_and_the_label_overrides_it(self):
        text = "Design the cache layer across modules"  # score 4
        at = seed_matrix.configured_threshold([("threshold", "0.7")])
        self.assertEqual(route(request(text), catalog(), at).tier, "direct")
        labelled = request(text, labels=[("pointsman.threshold", "0.6")])
        self.assertEqual(route(labelled, catalog(), at).tier, "plan")
        with self.assertRaises(RouteError):
            seed_matrix.configured_threshold([("threshold", "high")])
        self.assertIsNone(seed_matrix.configured_threshold([]))


if __name__ == "__main__":
    unittest.main()
