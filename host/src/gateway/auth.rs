//! Client authentication: keys stored as SHA-256 hashes in the config.

use std::collections::HashMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ErrorKind};
use crate::config::Config;

/// Who made a request.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The key's name from config (`anonymous` when keys are not required).
    pub name: String,
    /// Labels the key adds to requests.
    pub labels: Vec<(String, String)>,
}

/// The configured keys.
pub struct Auth {
    /// By SHA-256 of the key, hex.
    keys: HashMap<String, Client>,
}

impl Auth {
    /// From `[[clients]]`; with none, any request is accepted.
    pub fn new(config: &Config) -> Self {
        let keys = config
            .clients
            .iter()
            .map(|c| {
                let mut labels: Vec<(String, String)> = c
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.push(("client".into(), c.name.clone()));
                (
                    c.key_sha256.to_ascii_lowercase(),
                    Client {
                        name: c.name.clone(),
                        labels,
                    },
                )
            })
            .collect();
        Auth { keys }
    }

    /// Whether keys are required.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The client presenting `Authorization: Bearer <key>` or `x-api-key`.
    pub fn check(&self, headers: &HeaderMap) -> Result<Client, ApiError> {
        if !self.required() {
            return Ok(Client {
                name: "anonymous".into(),
                labels: Vec::new(),
            });
        }
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
            })
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Authentication,
                    "missing API key: send it as `Authorization: Bearer <key>` or `x-api-key`",
                )
            })?;
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        self.keys
            .get(&hash)
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorKind::Authentication, "invalid API key"))
    }
}
