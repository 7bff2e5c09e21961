//! Token and cost accounting.

pub mod cost;

pub use cost::{Cost, Prices};
