//! Wire formats of the LLM APIs Pointsman speaks (OpenAI Chat Completions,
//! Anthropic Messages, and OpenAI Responses towards clients), SSE framing,
//! and translation between them, streaming included.

pub mod anthropic;
pub mod openai;
pub mod responses;
pub(crate) mod serde_helpers;
pub mod sse;
pub mod translate;

pub use serde_helpers::Extra;
pub use translate::{TranslateError, Usage};
