//! Policies against the frozen contract 0.1.0.
//!
//! New policies use `pointsman-sdk`'s top level (contract 0.2.0). This crate
//! keeps building modules against `wit/0.1.0`, unchanged, for hosts that
//! only speak 0.1.0 and for the tests that check a 0.2.0 host still serves
//! them: implement [`Router`] or [`Planner`] and register it with
//! [`register_policy_v0_1!`](crate::register_policy_v0_1).
//!
//! A separate crate from `pointsman-sdk` because wit-bindgen names its
//! export macros after the world (`router`, `planner`), which both contract
//! versions share; `pointsman-sdk` re-exports it as `pointsman_sdk::v0_1`.

#![warn(missing_docs)]

mod bindings;
pub mod testing;

pub use bindings::types::{
    ChatRequest, Message, Model, Plan, Request, Review, Route, Subtask, SubtaskKind, Task, Tier,
    WireApi,
};

/// The version of the WIT contract this SDK builds policies against.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// A routing policy: decides how each request is served.
pub trait Router {
    /// Decide how to serve `request` given the catalog `models` (with live
    /// health). Return an error to make the host serve its safe route; the
    /// message is logged.
    fn route(request: &Request, models: &[Model]) -> Result<Route, String>;
}

/// A planning policy: turns a task into a plan and judges subtask outputs.
pub trait Planner {
    /// The request the host sends to the planner model for `task`.
    fn plan_request(task: &Task, models: &[Model]) -> Result<ChatRequest, String>;

    /// Parse the planner model's `reply` into a plan. Return an error that
    /// says what is wrong: the host asks the planner once more, then falls
    /// back to a direct call.
    fn parse_plan(task: &Task, reply: &str, models: &[Model]) -> Result<Plan, String>;

    /// The request that asks a reviewer model to check `output`, or `None`
    /// when `subtask` needs no review. The default reviews nothing.
    fn review_request(
        task: &Task,
        subtask: &Subtask,
        output: &str,
        models: &[Model],
    ) -> Result<Option<ChatRequest>, String> {
        let _ = (task, subtask, output, models);
        Ok(None)
    }

    /// Judge `output` from the reviewer's reply. The default accepts.
    fn review(
        task: &Task,
        subtask: &Subtask,
        output: &str,
        reviewer_reply: &str,
        models: &[Model],
    ) -> Result<Review, String> {
        let _ = (task, subtask, output, reviewer_reply, models);
        Ok(Review::Accept)
    }
}

impl Route {
    /// A `direct` route on `executor`, with no fallbacks.
    pub fn direct(executor: &str, reasoning: &str) -> Self {
        Route {
            tier: Tier::Direct,
            executor: executor.to_string(),
            fallbacks: Vec::new(),
            planner: None,
            reasoning: reasoning.to_string(),
            deadline_ms: None,
            max_cost_usd: None,
        }
    }
}

impl Request {
    /// The value of label `key`, if the request carries it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The text of the last user message, or `""`.
    pub fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.content.as_str())
    }
}

impl Model {
    /// Whether the model has `role` (for example `planner` or `executor`).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Registers a type as this component's contract 0.1.0 policy.
///
/// `register_policy_v0_1!(router: MyRouter)` for a [`Router`],
/// `register_policy_v0_1!(planner: MyPlanner)` for a [`Planner`]. Use it once per
/// crate; the crate must be a `cdylib` built for `wasm32-wasip2`.
#[macro_export]
macro_rules! register_policy_v0_1 {
    (router: $policy:ty) => {
        // Only a component exports the contract: in native builds (unit
        // tests) the exported names are not valid linker symbols.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        mod __pointsman_router_v0_1 {
        use super::*;
        struct __PointsmanRouter;

        impl $crate::__private::RoutingGuest for __PointsmanRouter {
            fn route(
                request: $crate::Request,
                models: ::std::vec::Vec<$crate::Model>,
            ) -> ::std::result::Result<$crate::Route, ::std::string::String> {
                <$policy as $crate::Router>::route(&request, &models)
            }
        }

        $crate::__private::router::__export_router_v0_1!(__PointsmanRouter with_types_in $crate::__private::router);
        }
    };
    (planner: $policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        mod __pointsman_planner_v0_1 {
        use super::*;
        struct __PointsmanPlanner;

        impl $crate::__private::PlanningGuest for __PointsmanPlanner {
            fn plan_request(
                task: $crate::Task,
                models: ::std::vec::Vec<$crate::Model>,
            ) -> ::std::result::Result<$crate::ChatRequest, ::std::string::String> {
                <$policy as $crate::Planner>::plan_request(&task, &models)
            }

            fn parse_plan(
                task: $crate::Task,
                reply: ::std::string::String,
                models: ::std::vec::Vec<$crate::Model>,
            ) -> ::std::result::Result<$crate::Plan, ::std::string::String> {
                <$policy as $crate::Planner>::parse_plan(&task, &reply, &models)
            }

            fn review_request(
                task: $crate::Task,
                subtask: $crate::Subtask,
                output: ::std::string::String,
                models: ::std::vec::Vec<$crate::Model>,
            ) -> ::std::result::Result<
                ::std::option::Option<$crate::ChatRequest>,
                ::std::string::String,
            > {
                <$policy as $crate::Planner>::review_request(&task, &subtask, &output, &models)
            }

            fn review(
                task: $crate::Task,
                subtask: $crate::Subtask,
                output: ::std::string::String,
                reviewer_reply: ::std::string::String,
                models: ::std::vec::Vec<$crate::Model>,
            ) -> ::std::result::Result<$crate::Review, ::std::string::String> {
                <$policy as $crate::Planner>::review(
                    &task,
                    &subtask,
                    &output,
                    &reviewer_reply,
                    &models,
                )
            }
        }

        $crate::__private::planner::__export_planner_v0_1!(__PointsmanPlanner with_types_in $crate::__private::planner);
        }
    };
}

/// Used by [`register_policy_v0_1!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::planner;
    pub use crate::bindings::planner::exports::pointsman::policy::planning::Guest as PlanningGuest;
    pub use crate::bindings::router;
    pub use crate::bindings::router::exports::pointsman::policy::routing::Guest as RoutingGuest;
}
