//! Wire formats of the two LLM APIs Pointsman speaks (OpenAI Chat
//! Completions and Anthropic Messages), SSE framing, and translation
//! between them, streaming included.

pub mod anthropic;
pub mod openai;
mod serde_helpers;
pub mod sse;
pub mod translate;

pub use serde_helpers::Extra;
pub use translate::{TranslateError, Usage};
