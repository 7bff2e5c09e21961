//! Capabilities enforced by the host: a route whose executor cannot serve
//! the request (images to a text-only model, tools to a model without
//! tools, JSON asked of a model that cannot promise it, more tokens than its
//! window) is corrected to the next capable fallback, or to the safe route,
//! and says why.
//!
//! Pure: the caller looks models up in its own catalog, so the gateway and
//! the offline commands share the rule.

use super::types::{Capabilities, Features, ResponseFormat, Route};

/// What a request needs from the model that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// The conversation holds images.
    pub images: bool,
    /// The client offered tools.
    pub tools: bool,
    /// The client asked for JSON output.
    pub json: bool,
    /// Input tokens plus the output limit.
    pub tokens: u64,
}

impl Needs {
    /// What `features` need.
    pub fn of(features: &Features) -> Needs {
        Needs {
            images: features.image_count > 0,
            tools: features.tool_count > 0,
            json: features.response_format != ResponseFormat::Text,
            tokens: features.input_tokens as u64 + features.max_output_tokens.unwrap_or(0) as u64,
        }
    }

    /// Why a model with `capabilities` and `context_window` cannot serve
    /// these needs, or `None` when it can.
    pub fn unmet(&self, capabilities: Capabilities, context_window: u32) -> Option<String> {
        if self.images && !capabilities.vision {
            Some("cannot read images".into())
        } else if self.tools && !capabilities.tools {
            Some("cannot call tools".into())
        } else if self.json && !capabilities.json_output {
            Some("cannot return JSON".into())
        } else if (context_window as u64) < self.tokens {
            Some(format!(
                "its context of {context_window} tokens is under the {} needed",
                self.tokens
            ))
        } else {
            None
        }
    }
}

/// A model as this rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Abilities {
    /// What the model can do.
    pub capabilities: Capabilities,
    /// Its context window in tokens.
    pub context_window: u32,
}

/// What [`correct`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Correction {
    /// Every model of the route can serve the request.
    Unchanged,
    /// Some models were dropped: the route to serve, and why.
    Corrected(Route, String),
    /// Neither the route nor the safe route has a model that can serve the
    /// request: why.
    Impossible(String),
}

/// Checks the executor and fallbacks of `route` against `needs`, dropping
/// models that cannot serve the request: the first capable fallback becomes
/// the executor; when none is capable, the capable models of `safe` serve.
/// Models `lookup` does not know are left alone (the caller skips them).
pub fn correct(
    route: &Route,
    needs: &Needs,
    lookup: impl Fn(&str) -> Option<Abilities>,
    safe: &Route,
) -> Correction {
    let why = |id: &str| lookup(id).and_then(|a| needs.unmet(a.capabilities, a.context_window));
    let models = std::iter::once(&route.executor).chain(&route.fallbacks);
    let mut dropped: Vec<String> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    for id in models {
        match why(id) {
            Some(reason) => dropped.push(format!("{id} {reason}")),
            None => kept.push(id.clone()),
        }
    }
    if dropped.is_empty() {
        return Correction::Unchanged;
    }
    let executor_dropped = why(&route.executor).is_some();
    if let Some((executor, fallbacks)) = kept.split_first() {
        let mut corrected = route.clone();
        corrected.executor = executor.clone();
        corrected.fallbacks = fallbacks.to_vec();
        let reason = if executor_dropped {
            format!(
                "capabilities: {}; serving {executor}, the next capable fallback",
                dropped.join(", ")
            )
        } else {
            format!("capabilities: dropped fallback {}", dropped.join(", "))
        };
        return Correction::Corrected(corrected, reason);
    }
    let capable: Vec<&String> = std::iter::once(&safe.executor)
        .chain(&safe.fallbacks)
        .filter(|id| lookup(id).is_some() && why(id).is_none())
        .collect();
    let Some((executor, fallbacks)) = capable.split_first() else {
        return Correction::Impossible(format!(
            "no model of the route or the safe route can serve this request: {}",
            dropped.join(", ")
        ));
    };
    let mut corrected = safe.clone();
    corrected.executor = (*executor).clone();
    corrected.fallbacks = fallbacks.iter().map(|s| (*s).clone()).collect();
    // The policy's caps and labels still apply to whichever model serves.
    corrected.max_output_tokens = route.max_output_tokens;
    corrected.labels = route.labels.clone();
    corrected.deadline_ms = route.deadline_ms;
    corrected.max_cost_usd = route.max_cost_usd;
    Correction::Corrected(
        corrected,
        format!(
            "capabilities: {}; no capable fallback, serving the safe route on {executor}",
            dropped.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::Tier;

    fn route(executor: &str, fallbacks: &[&str]) -> Route {
        Route {
            tier: Tier::Direct,
            executor: executor.into(),
            fallbacks: fallbacks.iter().map(|s| s.to_string()).collect(),
            planner: None,
            reasoning: "test".into(),
            deadline_ms: None,
            max_cost_usd: None,
            max_output_tokens: None,
            labels: Vec::new(),
        }
    }

    fn text_only() -> Capabilities {
        Capabilities {
            tools: true,
            json_output: true,
            ..Capabilities::NONE
        }
    }

    fn lookup(id: &str) -> Option<Abilities> {
        match id {
            "text" => Some(Abilities {
                capabilities: text_only(),
                context_window: 100_000,
            }),
            "small-vision" => Some(Abilities {
                capabilities: Capabilities::ALL,
                context_window: 1_000,
            }),
            "vision" => Some(Abilities {
                capabilities: Capabilities::ALL,
                context_window: 200_000,
            }),
            "bare" => Some(Abilities {
                capabilities: Capabilities::NONE,
                context_window: 200_000,
            }),
            _ => None,
        }
    }

    const IMAGE: Needs = Needs {
        images: true,
        tools: false,
        json: false,
        tokens: 2_000,
    };

    #[test]
    fn a_capable_route_is_left_alone() {
        let plain = Needs {
            tokens: 10,
            ..Needs::default()
        };
        let r = route("text", &["vision"]);
        assert_eq!(correct(&r, &plain, lookup, &r), Correction::Unchanged);
    }

    #[test]
    fn images_move_to_the_next_capable_fallback() {
        let r = route("text", &["small-vision", "vision"]);
        let Correction::Corrected(c, why) = correct(&r, &IMAGE, lookup, &route("text", &[])) else {
            panic!("not corrected");
        };
        assert_eq!(c.executor, "vision");
        assert!(c.fallbacks.is_empty());
        assert!(why.contains("text cannot read images"), "{why}");
        assert!(why.contains("small-vision its context of 1000"), "{why}");
        assert!(why.contains("serving vision"), "{why}");
    }

    #[test]
    fn a_route_with_no_capable_model_gets_the_safe_route() {
        let mut r = route("text", &[]);
        r.labels = vec![("arm".into(), "b".into())];
        let safe = route("bare", &["vision"]);
        let Correction::Corrected(c, why) = correct(&r, &IMAGE, lookup, &safe) else {
            panic!("not corrected");
        };
        assert_eq!(c.executor, "vision");
        assert_eq!(c.labels, r.labels);
        assert!(why.contains("safe route"), "{why}");
        let tools = Needs {
            tools: true,
            ..Needs::default()
        };
        assert!(matches!(
            correct(&route("bare", &[]), &tools, lookup, &route("bare", &[])),
            Correction::Impossible(why) if why.contains("bare cannot call tools")
        ));
    }

    #[test]
    fn an_incapable_fallback_is_dropped_and_said() {
        let r = route("vision", &["text"]);
        let Correction::Corrected(c, why) = correct(&r, &IMAGE, lookup, &r) else {
            panic!("not corrected");
        };
        assert_eq!(c.executor, "vision");
        assert!(c.fallbacks.is_empty());
        assert!(why.contains("dropped fallback text"), "{why}");
    }
}
