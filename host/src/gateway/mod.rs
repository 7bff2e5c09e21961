//! The HTTP surface: the wire formats agents speak.

pub mod features;
