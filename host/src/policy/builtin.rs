//! The seed policies, compiled into the binary by the build script from this
//! workspace's `policies/` sources.

/// `seed-matrix`: the seed's Route Decision Matrix.
pub const SEED_MATRIX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seed-matrix.wasm"));
/// `seed-planner`: the seed's planner tier.
pub const SEED_PLANNER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seed-planner.wasm"));

/// `premium-only`: every request direct on the premium model (the seed's
/// baseline, as a router to compare against).
pub const PREMIUM_ONLY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/premium-only.wasm"));

/// Every built-in module, by name.
pub const ALL: &[(&str, &[u8])] = &[
    ("seed-matrix", SEED_MATRIX),
    ("seed-planner", SEED_PLANNER),
    ("premium-only", PREMIUM_ONLY),
];
