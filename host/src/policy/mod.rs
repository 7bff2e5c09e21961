//! The policy engine: WebAssembly components that make Pointsman's
//! decisions, run in a sandbox and swapped without a restart.
//!
//! - [`module`]: one wasmtime engine; compiling (with an on-disk cache keyed by
//!   content hash), identifying and calling components under a deadline and
//!   a memory cap.
//! - [`cache`]: compiled modules on disk, in a folder only the daemon's user
//!   can write.
//! - [`sandbox`]: the store every call runs in: WASI with no capabilities.
//! - [`budget`]: the CPU time a call may use, checked at epoch ticks.
//! - [`registry`]: loaded modules by name, swapped atomically.
//! - [`watcher`]: the hot-reload folder.
//! - [`bounds`]: what a policy's answer may hold; plans checked by the host.
//! - [`decide`]: validating a router's answer, or serving the safe route.
//! - [`types`]: the host's contract-independent types; [`v0_1`] and
//!   [`v0_2`] convert them to contracts 0.1.0 and 0.2.0.
//! - [`rollout`]: a candidate next to the stable policy: shadow, growing
//!   shares, guards and rollback.
//! - [`capabilities`]: correcting a route whose models cannot serve the
//!   request (images, tools, context).

pub mod active;
pub mod bounds;
pub mod budget;
pub mod builtin;
pub mod cache;
pub mod capabilities;
pub mod decide;
pub mod from_config;
pub mod module;
pub mod registry;
pub mod rollout;
pub mod sandbox;
pub mod types;
pub mod v0_1;
pub mod v0_2;
pub mod watcher;

pub use active::ActivePolicies;
pub use decide::{Decision, ShadowSlot, decide};
pub use from_config::{cache_dir, catalog, limits, safe_route};
pub use module::{Limits, ModuleInfo, PolicyEngine, PolicyError, PolicyModule, World};
pub use registry::Registry;
