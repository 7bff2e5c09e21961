//! Write Pointsman policies in plain Rust.
//!
//! A policy decides; the Pointsman host does everything else. A *router*
//! picks a [`Route`] for each request, a *planner* turns a [`Task`] into a
//! [`Plan`] and judges subtask outputs. Implement [`Router`] or [`Planner`] on
//! a type and register it once:
//!
//! ```ignore
//! use pointsman_sdk::{Capabilities, Config, Model, Request, Route, Router};
//!
//! struct Cheapest;
//!
//! impl Router for Cheapest {
//!     fn route(request: &Request, models: &[Model], _config: &Config) -> Result<Route, String> {
//!         let model = models
//!             .iter()
//!             .filter(|m| m.available && m.context_window >= request.input_tokens)
//!             .filter(|m| !request.has_images || m.capabilities.contains(Capabilities::VISION))
//!             .min_by(|a, b| a.output_usd_per_mtok.total_cmp(&b.output_usd_per_mtok))
//!             .ok_or("no model fits")?;
//!         Ok(Route::direct(&model.id, "cheapest model that fits"))
//!     }
//! }
//!
//! pointsman_sdk::register_policy!(router: Cheapest);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2` and drop the `.wasm` into
//! the host's policies folder. Because the traits take and return plain Rust
//! values, a policy is tested natively with `cargo test`, no wasm runtime
//! involved; [`testing`] has builders for requests, catalogs, tasks and
//! subtasks.
//!
//! # Contract 0.2.0
//!
//! The host sends the catalog (ids, roles, prices, context windows,
//! [`Capabilities`], tags) and the module's [`Config`] (its
//! `[policies.config.<name>]` table) only when they change; each call
//! carries live health alone. The SDK joins the two, so a policy sees whole
//! [`Model`]s. **Policies keep no state between calls**: the host runs
//! several instances of a module and replaces them at will (after a trap,
//! or many calls), so anything a decision depends on must come from its
//! arguments. The frozen 0.1.0 contract stays available in [`v0_1`].

#![warn(missing_docs)]

pub mod alloc;
mod bindings;
mod catalog;
pub mod log;
pub mod testing;

/// Policies against the frozen contract 0.1.0.
pub use pointsman_sdk_v0_1 as v0_1;

/// Every Rust policy's heap: see [`alloc`]. A policy cannot pick another
/// global allocator.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static HEAP: alloc::PolicyAllocator = alloc::PolicyAllocator::new();

pub use bindings::types::{
    Capabilities, ChatRequest, Health, Message, Plan, Request, ResponseFormat, Retry, Review,
    Route, Subtask, SubtaskKind, Task, Tier, WireApi,
};
pub use catalog::{Config, Model};

/// The version of the WIT contract this SDK builds policies against.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// A routing policy: decides how each request is served.
pub trait Router {
    /// Decide how to serve `request` given the catalog `models` (with live
    /// health) and the module's `config`. Return an error to make the host
    /// serve its safe route; the message is logged.
    fn route(request: &Request, models: &[Model], config: &Config) -> Result<Route, String>;

    /// Checks a new catalog and configuration when the host sends them (an
    /// unusable threshold, say). An error makes the host serve its safe
    /// route until the next change. The default accepts.
    fn configure(models: &[Model], config: &Config) -> Result<(), String> {
        let _ = (models, config);
        Ok(())
    }
}

/// A planning policy: turns a task into a plan and judges subtask outputs.
pub trait Planner {
    /// The request the host sends to the planner model for `task`.
    fn plan_request(task: &Task, models: &[Model], config: &Config) -> Result<ChatRequest, String>;

    /// Parse the planner model's `reply` into a plan. Return an error that
    /// says what is wrong: the host asks the planner once more, then falls
    /// back to a direct call.
    fn parse_plan(
        task: &Task,
        reply: &str,
        models: &[Model],
        config: &Config,
    ) -> Result<Plan, String>;

    /// The request that asks a reviewer model to check `output`, or `None`
    /// when `subtask` needs no review. The default reviews nothing.
    fn review_request(
        task: &Task,
        subtask: &Subtask,
        output: &str,
        models: &[Model],
        config: &Config,
    ) -> Result<Option<ChatRequest>, String> {
        let _ = (task, subtask, output, models, config);
        Ok(None)
    }

    /// Judge `output` from the reviewer's reply. The default accepts.
    fn review(
        task: &Task,
        subtask: &Subtask,
        output: &str,
        reviewer_reply: &str,
        models: &[Model],
        config: &Config,
    ) -> Result<Review, String> {
        let _ = (task, subtask, output, reviewer_reply, models, config);
        Ok(Review::Accept)
    }

    /// Checks a new catalog and configuration; the default accepts.
    fn configure(models: &[Model], config: &Config) -> Result<(), String> {
        let _ = (models, config);
        Ok(())
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
            max_output_tokens: None,
            labels: Vec::new(),
        }
    }

    /// A `plan` route: `planner` plans, `executor` runs the subtasks.
    pub fn plan(executor: &str, planner: &str, reasoning: &str) -> Self {
        Route {
            tier: Tier::Plan,
            planner: Some(planner.to_string()),
            ..Route::direct(executor, reasoning)
        }
    }

    /// A `plan-and-verify` route: as [`Route::plan`], then a review of the
    /// critical subtasks.
    pub fn plan_and_verify(executor: &str, planner: &str, reasoning: &str) -> Self {
        Route {
            tier: Tier::PlanAndVerify,
            ..Route::plan(executor, planner, reasoning)
        }
    }

    /// Adds a label (recorded in the ledger with the request).
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
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

/// Registers a type as this component's policy.
///
/// `register_policy!(router: MyRouter)` for a [`Router`],
/// `register_policy!(planner: MyPlanner)` for a [`Planner`]. Use it once per
/// crate; the crate must be a `cdylib` built for `wasm32-wasip2`.
#[macro_export]
macro_rules! register_policy {
    (router: $policy:ty) => {
        // Only a component exports the contract: in native builds (unit
        // tests) the exported names are not valid linker symbols.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        mod __pointsman_router {
        use super::*;
        struct __PointsmanRouter;

        impl $crate::__private::RoutingGuest for __PointsmanRouter {
            fn configure(
                catalog: $crate::__private::Catalog,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::configure(catalog, <$policy as $crate::Router>::configure)
            }

            fn route(
                request: $crate::Request,
                health: ::std::vec::Vec<$crate::Health>,
            ) -> ::std::result::Result<$crate::Route, ::std::string::String> {
                $crate::__private::with_catalog(&health, |models, config| {
                    <$policy as $crate::Router>::route(&request, models, config)
                })
            }
        }

        $crate::__private::router::__export_router!(__PointsmanRouter with_types_in $crate::__private::router);
        }
    };
    (planner: $policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        mod __pointsman_planner {
        use super::*;
        struct __PointsmanPlanner;

        impl $crate::__private::PlanningGuest for __PointsmanPlanner {
            fn configure(
                catalog: $crate::__private::Catalog,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::configure(catalog, <$policy as $crate::Planner>::configure)
            }

            fn plan_request(
                task: $crate::Task,
                health: ::std::vec::Vec<$crate::Health>,
            ) -> ::std::result::Result<$crate::ChatRequest, ::std::string::String> {
                $crate::__private::with_catalog(&health, |models, config| {
                    <$policy as $crate::Planner>::plan_request(&task, models, config)
                })
            }

            fn parse_plan(
                task: $crate::Task,
                reply: ::std::string::String,
                health: ::std::vec::Vec<$crate::Health>,
            ) -> ::std::result::Result<$crate::Plan, ::std::string::String> {
                $crate::__private::with_catalog(&health, |models, config| {
                    <$policy as $crate::Planner>::parse_plan(&task, &reply, models, config)
                })
            }

            fn review_request(
                task: $crate::Task,
                subtask: $crate::Subtask,
                output: ::std::string::String,
                health: ::std::vec::Vec<$crate::Health>,
            ) -> ::std::result::Result<
                ::std::option::Option<$crate::ChatRequest>,
                ::std::string::String,
            > {
                $crate::__private::with_catalog(&health, |models, config| {
                    <$policy as $crate::Planner>::review_request(
                        &task, &subtask, &output, models, config,
                    )
                })
            }

            fn review(
                task: $crate::Task,
                subtask: $crate::Subtask,
                output: ::std::string::String,
                reviewer_reply: ::std::string::String,
                health: ::std::vec::Vec<$crate::Health>,
            ) -> ::std::result::Result<$crate::Review, ::std::string::String> {
                $crate::__private::with_catalog(&health, |models, config| {
                    <$policy as $crate::Planner>::review(
                        &task,
                        &subtask,
                        &output,
                        &reviewer_reply,
                        models,
                        config,
                    )
                })
            }
        }

        $crate::__private::planner::__export_planner!(__PointsmanPlanner with_types_in $crate::__private::planner);
        }
    };
}

/// Used by [`register_policy!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::planner;
    pub use crate::bindings::planner::exports::pointsman::policy::planning::Guest as PlanningGuest;
    pub use crate::bindings::router;
    pub use crate::bindings::router::exports::pointsman::policy::routing::Guest as RoutingGuest;
    pub use crate::bindings::types::Catalog;
    pub use crate::catalog::{configure, with_catalog};
}
