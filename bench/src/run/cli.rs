//! The benchmark's command line (clap's derive): the options of a run and
//! of `pointsman-bench config`, with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use super::{bench_dir, repo_dir};

/// Routed `direct` by seed-matrix (`medium: change:bug, change:fix`).
const DEFAULT_MESSAGE: &str = "Fix the off-by-one bug in the parser";

/// How a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    /// One JSON answer.
    Plain,
    /// Server-sent events.
    Stream,
}

/// What the load is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(super) enum Target {
    /// The local upstream itself: the floor every gateway adds to.
    Direct,
    /// Pointsman in front of the upstream.
    Pointsman,
    /// Pointsman with glm-4.7 on two endpoints, one of which fails every
    /// `fault_every`th request it gets.
    #[serde(rename = "pointsman-faulty")]
    #[value(name = "pointsman-faulty")]
    Faulty,
    /// LiteLLM's proxy in front of the upstream.
    Litellm,
}

impl Target {
    pub(super) fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pointsman => "pointsman",
            Target::Faulty => "pointsman-faulty",
            Target::Litellm => "litellm",
        }
    }

    pub(super) fn is_pointsman(self) -> bool {
        matches!(self, Target::Pointsman | Target::Faulty)
    }
}

impl Mode {
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Stream => "stream",
        }
    }
}

/// Runs the gateway load benchmark and prints one table; writes it as JSON
/// too. For each target, mode and concurrency: a fixed-duration `oha` run.
#[derive(Debug, Parser)]
#[command(
    name = "pointsman-bench",
    after_help = "Diagnostics (--model, --breaker-window-ms, --shadow, --router-module) change what is measured: the reported table uses their defaults.\n\nOther commands: `pointsman-bench upstream ...` (the local upstream alone), `pointsman-bench config --port P --upstream ADDR` (the benchmark's Pointsman config), `pointsman-bench soak ...` (the soak test)."
)]
struct RunArgs {
    /// Measured time of each run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    duration: u64,
    /// Unmeasured load before each run, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    warmup: u64,
    /// Concurrent connections of each run, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,16,64"
    )]
    concurrency: Vec<u32>,
    /// Answer modes, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "plain,stream"
    )]
    modes: Vec<Mode>,
    /// Targets, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "direct,pointsman,pointsman-faulty"
    )]
    targets: Vec<Target>,
    /// Adds the litellm target (needs bench/.venv: `bench/run --litellm`
    /// installs it).
    #[arg(long)]
    litellm: bool,
    /// pointsman-faulty: glm-4.7's second endpoint fails every Nth request
    /// it gets (5: 20%).
    #[arg(long, value_name = "N", default_value_t = 5)]
    fault_every: u64,
    /// The HTTP status of those failures.
    #[arg(long, value_name = "S", default_value_t = 500)]
    fault_status: u16,
    /// The user message (the default is one the seed matrix routes
    /// `direct`).
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_MESSAGE)]
    message: String,
    /// The daemon binary [default: <target dir>/release/pointsman, the
    /// target dir from POINTSMAN_TARGET_DIR or <repo>/target].
    #[arg(long, value_name = "PATH")]
    pointsman: Option<PathBuf>,
    /// The load generator [default: bench/.tools/bin/oha, else `oha` on
    /// PATH].
    #[arg(long, value_name = "PATH")]
    oha: Option<PathBuf>,
    /// LiteLLM's proxy [default: bench/.venv/bin/litellm].
    #[arg(long = "litellm-bin", value_name = "PATH")]
    litellm_bin: Option<PathBuf>,
    /// Where the JSON table is written [default:
    /// bench/results/latest.json].
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Worker threads of the local upstream [default: the machine's cores].
    #[arg(long, value_name = "N")]
    upstream_threads: Option<usize>,
    /// Diagnostics: the requests' model (`auto`: the policy decides; a
    /// catalog id such as glm-4.7 skips the policy and the catalog health
    /// it is given).
    #[arg(long, value_name = "NAME", default_value = "auto")]
    model: String,
    /// Diagnostics: Pointsman's [resilience.breaker] window_ms [default:
    /// unset, the daemon's 30000].
    #[arg(long, value_name = "N")]
    breaker_window_ms: Option<u64>,
    /// Diagnostic: run Pointsman with a shadow rollout (`premium-only`
    /// decides every request next to `seed-matrix`, recorded, not served),
    /// to measure what shadow mode costs a request.
    #[arg(long)]
    shadow: bool,
    /// Diagnostic: serve this router module (a `.wasm` component, copied
    /// into a watched policy folder of the run) instead of the built-in
    /// seed matrix; for A/B runs of two builds of a router.
    #[arg(long, value_name = "PATH")]
    router_module: Option<PathBuf>,
}

/// A run's options, defaults filled in.
pub(super) struct Options {
    pub(super) duration: u64,
    pub(super) warmup: u64,
    pub(super) concurrency: Vec<u32>,
    pub(super) modes: Vec<Mode>,
    pub(super) targets: Vec<Target>,
    pub(super) message: String,
    pub(super) pointsman: PathBuf,
    pub(super) oha: PathBuf,
    pub(super) litellm: PathBuf,
    pub(super) out: PathBuf,
    pub(super) upstream_threads: Option<usize>,
    pub(super) model: String,
    pub(super) breaker_window_ms: Option<u64>,
    pub(super) shadow: bool,
    pub(super) router_module: Option<PathBuf>,
    pub(super) fault_every: u64,
    pub(super) fault_status: u16,
}

/// The options of a run from `args` (the program's arguments, without its
/// name); `--help` prints the help and exits, a bad argument exits with
/// clap's message.
pub(super) fn parse_options(args: &[String]) -> crate::Result<Options> {
    let a = RunArgs::parse_from(
        std::iter::once("pointsman-bench".to_string()).chain(args.iter().cloned()),
    );
    let target_dir = std::env::var_os("POINTSMAN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target"));
    let mut targets = a.targets;
    if a.litellm && !targets.contains(&Target::Litellm) {
        targets.push(Target::Litellm);
    }
    let mut o = Options {
        duration: a.duration,
        warmup: a.warmup,
        concurrency: a.concurrency,
        modes: a.modes,
        targets,
        message: a.message,
        pointsman: a
            .pointsman
            .unwrap_or_else(|| target_dir.join("release/pointsman")),
        oha: a.oha.unwrap_or_else(|| bench_dir().join(".tools/bin/oha")),
        litellm: a
            .litellm_bin
            .unwrap_or_else(|| bench_dir().join(".venv/bin/litellm")),
        out: a
            .out
            .unwrap_or_else(|| bench_dir().join("results/latest.json")),
        upstream_threads: a.upstream_threads,
        model: a.model,
        breaker_window_ms: a.breaker_window_ms,
        shadow: a.shadow,
        router_module: a.router_module,
        fault_every: a.fault_every,
        fault_status: a.fault_status,
    };
    if !o.oha.exists() {
        // Fall back to an `oha` on PATH.
        o.oha = PathBuf::from("oha");
    }
    if o.duration == 0 || o.concurrency.is_empty() || o.modes.is_empty() || o.targets.is_empty() {
        return Err("nothing to run".into());
    }
    if o.targets.contains(&Target::Faulty) && (o.fault_every < 2 || o.fault_status < 400) {
        return Err("--fault-every must be at least 2 and --fault-status an error status".into());
    }
    Ok(o)
}

/// Prints the benchmark's Pointsman config (used by bench/profile).
#[derive(Debug, Parser)]
#[command(name = "pointsman-bench config")]
pub(super) struct ConfigArgs {
    /// The port Pointsman listens on.
    #[arg(long)]
    pub(super) port: u16,
    /// The address of the local upstream (host:port).
    #[arg(long, value_name = "ADDR")]
    pub(super) upstream: SocketAddr,
    /// Pointsman's [resilience.breaker] window_ms [default: unset].
    #[arg(long, value_name = "N")]
    pub(super) breaker_window_ms: Option<u64>,
}

impl ConfigArgs {
    /// The arguments of `pointsman-bench config` (without the command).
    pub(super) fn parse(args: &[String]) -> Self {
        ConfigArgs::parse_from(
            std::iter::once("pointsman-bench config".to_string()).chain(args.iter().cloned()),
        )
    }
}
