//! Every request direct on the premium model: the baseline the seed
//! architecture compares itself with (Opus for everything), as a router, so
//! that `pointsman simulate` can set it beside another policy.
//!
//! The executor is the first catalog model with the `premium` role that is
//! available and whose context window holds the input tokens plus
//! `max_output_tokens`; the other premium models that fit are its
//! fallbacks. With none, the router answers an error and the host serves
//! its safe route.

use pointsman_sdk::{Config, Model, Request, Route, Router};

/// The role this router sends everything to.
pub const PREMIUM_ROLE: &str = "premium";

/// The premium-only router.
pub struct PremiumOnly;

impl Router for PremiumOnly {
    fn route(request: &Request, models: &[Model], _config: &Config) -> Result<Route, String> {
        let needed = request.input_tokens as u64 + request.max_output_tokens.unwrap_or(0) as u64;
        let fitting: Vec<&Model> = models
            .iter()
            .filter(|m| m.has_role(PREMIUM_ROLE) && m.available)
            .filter(|m| m.context_window as u64 >= needed)
            .collect();
        let Some((first, rest)) = fitting.split_first() else {
            return Err(format!(
                "no available model with the {PREMIUM_ROLE} role fits a request of {needed} tokens"
            ));
        };
        let mut route = Route::direct(
            &first.id,
            "premium-only: every request on the premium model",
        );
        route.fallbacks = rest.iter().map(|m| m.id.clone()).collect();
        Ok(route)
    }
}

pointsman_sdk::register_policy!(router: PremiumOnly);

#[cfg(test)]
mod tests {
    use super::*;
    use pointsman_sdk::Tier;
    use pointsman_sdk::testing::{request, seed_catalog, without};

    #[test]
    fn everything_goes_direct_to_the_premium_model() {
        for text in [
            "Fix the typo",
            "Design a new system across services",
            "Rotate the production secrets",
        ] {
            let r = PremiumOnly::route(&request(text).build(), &seed_catalog(), &Config::default())
                .unwrap();
            assert_eq!(r.tier, Tier::Direct);
            assert_eq!(r.executor, "claude-opus-4.5");
            assert!(r.planner.is_none());
        }
    }

    #[test]
    fn no_premium_model_is_an_error() {
        let catalog = without(seed_catalog(), "claude-opus-4.5");
        assert!(
            PremiumOnly::route(
                &request("Fix the typo").build(),
                &catalog,
                &Config::default()
            )
            .is_err()
        );
    }
}
