//! Client authentication: keys stored as SHA-256 hashes in the config.

use std::collections::HashMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ErrorKind};
use crate::config::Config;
use crate::tenant::{Owner, RESERVED_LABEL_PREFIX};

/// Who made a request.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The key's name from config (`anonymous` when keys are not required).
    pub name: String,
    /// Who owns what this request creates.
    pub owner: Owner,
    /// Labels the key adds to requests.
    pub labels: Vec<(String, String)>,
}

impl Client {
    /// The labels of a request: the key's own, then those the client sent
    /// (`untrusted`: headers, metadata, a task's labels) whose names the key
    /// does not set and that are not under [`RESERVED_LABEL_PREFIX`]. A
    /// key's labels are what budgets, limits and reports trust, so a client
    /// can add labels but never change or forge one.
    pub fn labels_with(
        &self,
        untrusted: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<(String, String)> {
        let mut labels = self.labels.clone();
        for (name, value) in untrusted {
            if name.starts_with(RESERVED_LABEL_PREFIX)
                || labels.iter().any(|(taken, _)| *taken == name)
            {
                continue;
            }
            labels.push((name, value));
        }
        labels
    }
}

/// The configured keys.
pub struct Auth {
    /// By SHA-256 of the key, hex.
    keys: HashMap<String, Client>,
    /// SHA-256 of the admin key, hex, lowercase.
    admin: Option<String>,
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
                        owner: Owner::client(&c.name),
                        labels,
                    },
                )
            })
            .collect();
        Auth {
            keys,
            admin: config
                .admin
                .key_sha256
                .as_ref()
                .map(|k| k.to_ascii_lowercase()),
        }
    }

    /// Whether the request presents the admin key (always true when none
    /// is configured, which the daemon allows only on loopback).
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(admin) = &self.admin else {
            return Ok(());
        };
        let presented = presented_key(headers).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Authentication,
                "this endpoint needs the admin key: send it as `Authorization: Bearer <key>` or `x-api-key`",
            )
        })?;
        if hex::encode(Sha256::digest(presented.as_bytes())) == *admin {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::Authentication,
                "this endpoint needs the admin key, and this is not it",
            ))
        }
    }

    /// Whether an admin key is configured.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether keys are required.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The client presenting `Authorization: Bearer <key>` or `x-api-key`.
    /// Without `[[clients]]` any key is accepted, and what a request
    /// creates belongs to the key it presented (by hash), so two users of
    /// one unauthenticated daemon still cannot see each other's tasks.
    pub fn check(&self, headers: &HeaderMap) -> Result<Client, ApiError> {
        if !self.required() {
            let key = presented_key(headers).unwrap_or_default();
            let hash = hex::encode(Sha256::digest(key.as_bytes()));
            return Ok(Client {
                name: "anonymous".into(),
                owner: Owner::key_hash(&hash),
                labels: Vec::new(),
            });
        }
        let key = presented_key(headers).ok_or_else(|| {
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

/// The key of `Authorization: Bearer <key>` or `x-api-key`, if any.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    headers
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
}
