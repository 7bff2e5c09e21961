//! What a model can do besides text: a configuration type, so that the
//! configuration imports nothing above it (policies see it re-exported
//! from `policy::types`).

use serde::{Deserialize, Serialize};

/// What a model can do besides reading and writing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capabilities {
    /// Reads images.
    pub vision: bool,
    /// Calls tools.
    pub tools: bool,
    /// Returns JSON when asked.
    pub json_output: bool,
    /// Reasons before answering.
    pub reasoning: bool,
}

impl Capabilities {
    /// Every capability: what a model whose config lists none is assumed
    /// to have, so that configs written before capabilities existed keep
    /// routing as they did.
    pub const ALL: Capabilities = Capabilities {
        vision: true,
        tools: true,
        json_output: true,
        reasoning: true,
    };
    /// No capability.
    pub const NONE: Capabilities = Capabilities {
        vision: false,
        tools: false,
        json_output: false,
        reasoning: false,
    };
    /// The names config uses, in order.
    pub const NAMES: [&'static str; 4] = ["vision", "tools", "json", "reasoning"];

    /// Adds the capability called `name` in config; `false` for an unknown
    /// name.
    pub fn add(&mut self, name: &str) -> bool {
        match name {
            "vision" => self.vision = true,
            "tools" => self.tools = true,
            "json" => self.json_output = true,
            "reasoning" => self.reasoning = true,
            _ => return false,
        }
        true
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::ALL
    }
}
