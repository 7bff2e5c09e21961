//! Pointsman: a gateway daemon between coding agents and LLM providers.
//!
//! A request's path through the crate:
//! [`gateway`] (wire formats, features) → [`policy`] (a WebAssembly
//! component decides the route) → orchestrator → resilience → provider →
//! ledger. The [`cli`] module wires the pieces into the `pointsman` binary;
//! [`offline`] runs policies over recorded or labelled requests.

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
