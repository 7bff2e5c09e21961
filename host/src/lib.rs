//! Pointsman: a gateway daemon between coding agents and LLM providers.
//!
//! A request's path through the crate, top to bottom (no module imports one
//! above it; `tests/layering.rs` checks):
//!
//! - [`gateway`]: the HTTP surface and the wire formats agents speak; it
//!   reads a request, asks a policy, and hands the call to dispatch.
//!   [`app`] builds its state from one config and rebuilds it on a reload.
//! - [`orchestrator`]: tasks and plan mode, the two tiers (planner,
//!   executors, review, escalation), over policy and dispatch.
//! - [`policy`]: WebAssembly components decide routes and plans, from the
//!   [`features`] of a request; `policy::rollout` runs shadows and staged
//!   rollouts of a new module.
//! - [`dispatch`]: the one place a model call is sent, priced and settled
//!   (budget reservations included).
//! - [`resilience`] (balancing, breakers, retries, fallbacks) over
//!   [`provider`] (upstream adapters and translation between formats);
//!   the [`ledger`] records what dispatch settles; [`tenant`] says who owns
//!   what.
//! - [`tokens`], [`metrics`], [`config`] at the bottom.
//!
//! The [`cli`] module wires the pieces into the `pointsman` binary;
//! [`offline`] runs policies over recorded or labelled requests.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod features;
pub mod gateway;
pub mod ledger;
pub mod metrics;
pub mod offline;
pub mod orchestrator;
pub mod policy;
pub mod provider;
pub mod resilience;
pub mod tenant;
pub mod tokens;
