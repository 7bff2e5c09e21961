//! The `pointsman` command line.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod rollout;
use serde_json::{Value, json};

use crate::config::Config;
use crate::features::{self, RequestContext};
use crate::offline::routing::Router;
use crate::offline::sweep::Sweep;
use crate::offline::{OutputFormat, eval, simulate};
use crate::policy::types::{ModelInfo, Route};
use crate::policy::{PolicyEngine, PolicyModule, Registry, builtin, decide, decide::validate};

/// Pointsman: routes coding agents' LLM traffic between planner and executor
/// models, with decisions made by WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "pointsman", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text` (coloured only on a
    /// terminal) or `json` (one object a line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway daemon (the built-in demo when no --config is given).
    Serve {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overriding the configuration.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Work with policy modules.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Roll a candidate router or planner out on a running daemon: shadow,
    /// growing shares, guards, promote, abort (the admin key, when one is
    /// set, is read from POINTSMAN_ADMIN_KEY).
    Rollout(rollout::RolloutArgs),
    /// Ask a running daemon to reload its config file (as SIGHUP does); the
    /// admin key, when one is set, is read from POINTSMAN_ADMIN_KEY.
    Reload {
        /// The daemon's address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Print the route a policy picks for an OpenAI chat-completions body.
    Route {
        /// The router module (a `.wasm` file, or a built-in name such as
        /// `seed-matrix`).
        #[arg(long)]
        policy: PathBuf,
        /// Configuration supplying the catalog and the safe route (default:
        /// the built-in demo).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A JSON file with the request body (`-` for standard input).
        request: PathBuf,
    },
    /// Score a router on labelled prompts: strong-call share, quality, PGR,
    /// against the random router and the oracle (no upstream call).
    Eval {
        /// The router module (a `.wasm` file, or a built-in name such as
        /// `seed-matrix`).
        #[arg(long)]
        policy: PathBuf,
        /// Labelled prompts, JSON lines (gzip or plain):
        /// `{"prompt": "...", "outcomes": {"<key>": true|false|score}}`.
        #[arg(long)]
        data: PathBuf,
        /// The outcome key of the strong model.
        #[arg(long)]
        strong: String,
        /// The outcome key of the weak model.
        #[arg(long)]
        weak: String,
        /// Configuration supplying the catalog and the safe route (default:
        /// the built-in demo).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// Refuse the data if any line is malformed.
        #[arg(long)]
        strict: bool,
        /// Set a label on every request to each value of a range and print
        /// the quality–cost curve: `pointsman.threshold=0:1:0.05`.
        #[arg(long)]
        sweep: Option<Sweep>,
    },
    /// What the ledger holds: requests, tokens, spend, savings against the
    /// baseline model and projections, per day, model, tier, client,
    /// policy or label (read-only; a running daemon may share the ledger).
    Report {
        #[command(flatten)]
        args: crate::ledger::report::ReportArgs,
        /// Configuration naming the ledger (`[ledger] url`) when --ledger
        /// is not given (default: the built-in demo's, the default file).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// What one or more routers cost on a workload, with savings against
    /// the baseline model and, for two or more, how their routes differ.
    Simulate {
        /// A router module, a `.wasm` file or a built-in name (repeat to
        /// compare).
        #[arg(long = "policy", required = true)]
        policies: Vec<PathBuf>,
        /// The workload, JSON lines (gzip or plain).
        #[arg(long)]
        workload: PathBuf,
        /// Configuration supplying the catalog, prices, the baseline model
        /// and the planner policy (default: the built-in demo).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Requests a day, for daily, monthly and yearly projections.
        #[arg(long)]
        per_day: Option<f64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file: print every problem with its file, line and key
    /// (exit 1), or what the daemon would serve (exit 0).
    Check {
        /// The file (default: the built-in demo).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load a module in the sandbox and print its identity.
    Check {
        /// The module.
        module: PathBuf,
        /// Configuration supplying the catalog for the self-check.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run table-driven cases (one JSON object a line) against a router.
    Test {
        /// The router module (a `.wasm` file, or a built-in name such as
        /// `seed-matrix`).
        module: PathBuf,
        /// The cases.
        cases: PathBuf,
        /// Configuration supplying the catalog (default: the built-in demo).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. });
    init_tracing(if serving { "info" } else { "warn" }, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Threads for blocking work: large request bodies parsed, SQLite ledger
/// reads, policy modules read and compiled. All of it is CPU work or short
/// reads from the page cache, which more threads than a few per core do
/// not speed up. Tokio's default (512) let a burst of large requests
/// start hundreds of threads, each with its stack and its allocator heap,
/// kept for 10 s after the burst (the soak in BENCHMARKS.md saw one such
/// thread add 16 MiB that stayed); past this bound, work waits its turn.
fn blocking_threads() -> usize {
    std::thread::available_parallelism().map_or(8, |n| (4 * n.get()).max(8))
}

fn init_tracing(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("POINTSMAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only help a terminal: in a file or a journal they
        // are noise.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, listen } => {
            let mut config = load_config(config.as_deref())?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            crate::gateway::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { args, config } => {
            let config = load_config(config.as_deref())?;
            report(&args, &config).await
        }
        Command::Rollout(args) => rollout::run(args).await,
        Command::Reload { url } => {
            let mut request = reqwest::Client::new()
                .post(format!("{}/v1/admin/reload", url.trim_end_matches('/')));
            if let Ok(key) = std::env::var("POINTSMAN_ADMIN_KEY") {
                request = request.bearer_auth(key);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach the daemon at {url}"))?;
            let ok = response.status().is_success();
            let body = response.text().await.unwrap_or_default();
            println!("{body}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let builtins: Vec<&str> = crate::policy::builtin::ALL
                .iter()
                .map(|(name, _)| *name)
                .collect();
            let report = match &file {
                Some(path) => crate::config::check::check(path, &builtins),
                None => crate::config::check::check_text(
                    crate::config::DEMO_TOML,
                    "(built-in demo)",
                    Path::new("."),
                    &builtins,
                ),
            };
            for problem in &report.problems {
                println!("error: {problem}");
            }
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            match &report.summary {
                Some(summary) => {
                    print!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!("{} problem(s)", report.problems.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Policy {
            command: PolicyCommand::Check { module, config },
        } => {
            let config = load_config(config.as_deref())?;
            match load_module(&config, &module).await {
                Ok(m) => {
                    println!("name:    {}", m.info.name);
                    println!("world:   {}", m.info.world);
                    println!("version: {}", m.info.version);
                    println!("hash:    {}", m.info.hash);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{}: {}", module.display(), one_line(&e));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Policy {
            command:
                PolicyCommand::Test {
                    module,
                    cases,
                    config,
                },
        } => {
            let config = load_config(config.as_deref())?;
            let module = load_module(&config, &module).await?;
            policy_test(&module, &config, &cases).await
        }
        Command::Route {
            policy,
            config,
            request,
        } => {
            let config = load_config(config.as_deref())?;
            let module = load_module(&config, &policy).await?;
            let body = read_json(&request)?;
            let features =
                features::from_json(crate::provider::Format::OpenAi, &body, request_context())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", request.display()))?;
            let decision = decide(
                Some(&module),
                &features,
                &crate::policy::catalog(&config),
                &crate::policy::safe_route(&config),
            )
            .await;
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            policy,
            data,
            strong,
            weak,
            config,
            format,
            strict,
            sweep,
        } => {
            let config = load_config(config.as_deref())?;
            let router = offline_router(&config, &policy).await?;
            let opts = eval::EvalOptions {
                data,
                strong,
                weak,
                strict,
                sweep,
                format,
            };
            print!("{}", eval::run(&router, &opts).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            policies,
            workload,
            config,
            per_day,
            format,
        } => {
            let config = load_config(config.as_deref())?;
            let mut routers = Vec::new();
            for path in &policies {
                routers.push(offline_router(&config, path).await?);
            }
            let opts = simulate::SimulateOptions {
                workload,
                per_day,
                format,
            };
            print!("{}", simulate::run(&config, &routers, &opts).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A router module for the offline commands, with the catalog (every model
/// available) and the safe route of `config`.
async fn offline_router(config: &Config, path: &Path) -> anyhow::Result<Router> {
    Ok(Router {
        module: load_module(config, path).await?,
        catalog: Arc::new(crate::policy::catalog(config)),
        safe: crate::policy::safe_route(config),
        max_instances: config.policies.max_instances,
    })
}

/// `pointsman report`: reads the window's calls, prints the report and,
/// if asked, writes the kept policy views as a `simulate` workload.
async fn report(
    args: &crate::ledger::report::ReportArgs,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    use crate::ledger::report::{ReportQuery, add_feedback, aggregate, export_workload, render};
    use crate::ledger::store::{LedgerOptions, system_now_ms};
    use crate::ledger::{CallFilter, Ledger};
    let query = ReportQuery::from_args(args, system_now_ms())?;
    let url = args
        .ledger
        .clone()
        .unwrap_or_else(|| config.ledger.url_or_default());
    // Opening creates a missing SQLite file; a report of a ledger that was
    // never written is a mistyped path, so say so instead.
    if let Some(path) = url.strip_prefix("sqlite:")
        && !Path::new(path).exists()
    {
        anyhow::bail!(
            "no ledger at {path}: the daemon creates it when it starts; pass --ledger sqlite:PATH or postgres://… (or --config naming [ledger] url)"
        );
    }
    let options = LedgerOptions {
        // A report only reads: retention is the daemon's job.
        prune_every: None,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open_with(&url, &config.ledger, options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let filter = CallFilter {
        since_ms: query.since_ms,
        until_ms: query.until_ms,
        client: query.client.clone(),
    };
    let read = async {
        let calls = ledger.calls(&filter).await?;
        let feedback = ledger.feedback(&filter).await?;
        Ok::<_, crate::ledger::LedgerError>((calls, feedback))
    }
    .await
    .map_err(|e| anyhow::anyhow!("{e}"));
    ledger.close().await;
    let (calls, feedback) = read?;
    let mut report = aggregate(&calls, &query);
    add_feedback(&mut report, &calls, &feedback, &query.by);
    print!("{}", render(&report, args.format));
    if let Some(path) = &args.export_workload {
        let workload = export_workload(&calls);
        std::fs::write(path, &workload)
            .with_context(|| format!("cannot write the workload to {}", path.display()))?;
        eprintln!(
            "wrote {} requests to {}",
            workload.lines().count(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::demo()),
    }
}

fn request_context() -> RequestContext {
    RequestContext {
        id: "cli".into(),
        ..RequestContext::default()
    }
}

/// Loads one module file (or, for a bare name that is no file, the
/// built-in policy of that name) with the sandbox and self-check the
/// daemon uses.
async fn load_module(config: &Config, path: &Path) -> anyhow::Result<Arc<PolicyModule>> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the module path has no file name")?;
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        // A bare name that is no file names a built-in policy.
        Err(e) => match builtin::ALL.iter().find(|(n, _)| Path::new(n) == path) {
            Some((_, bytes)) => bytes.to_vec(),
            None => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        },
    };
    let engine = PolicyEngine::new(
        crate::policy::limits(config),
        crate::policy::cache_dir(config),
    )?;
    engine.set_module_config(config.policy_config());
    Registry::new(engine)
        .load(name, bytes, &crate::policy::catalog(config))
        .await
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// `pointsman policy test`: each line of `cases` is
/// `{"name", "api"?, "request", "headers"?, "task_tier"?, "unavailable"?,
/// "context_windows"?, "expect"}`: `request` is an OpenAI chat body, or an
/// Anthropic messages body with `"api": "anthropic"`; `task_tier` is the
/// tier the gateway would pass on a session's tool-result turn; and `expect` holds any of `tier`, `executor`, `fallbacks`, `planner`
/// (null for none), `reasoning_contains` (a list) or `error` (a substring of
/// the policy's error, or of the 400 the gateway answers a request it
/// cannot parse, before any policy). A case with `"contract": "0.2.0"` applies only to
/// modules built against that contract version (it tests a field older
/// versions do not have); others skip it.
async fn policy_test(
    module: &PolicyModule,
    config: &Config,
    cases: &Path,
) -> anyhow::Result<ExitCode> {
    let file =
        std::fs::File::open(cases).with_context(|| format!("cannot read {}", cases.display()))?;
    let (mut passed, mut failed) = (0, 0);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() || line.trim_start().starts_with("//") {
            continue;
        }
        let case: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", cases.display(), i + 1))?;
        let name = case["name"].as_str().unwrap_or("unnamed").to_string();
        if let Some(contract) = case["contract"].as_str()
            && contract != module.info.version
        {
            println!("skip {name} (contract {contract} only)");
            continue;
        }
        let problems = run_case(module, config, &case).await;
        if problems.is_empty() {
            passed += 1;
            println!("ok   {name}");
        } else {
            failed += 1;
            println!("FAIL {name} (line {}): {}", i + 1, problems.join("; "));
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_case(module: &PolicyModule, config: &Config, case: &Value) -> Vec<String> {
    let mut catalog = crate::policy::catalog(config);
    adjust_catalog(&mut catalog, case);
    let mut ctx = request_context();
    if let Some(headers) = case["headers"].as_object() {
        let mut map = axum::http::HeaderMap::new();
        for (k, v) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::try_from(k.as_str()),
                v.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                map.insert(name, value);
            }
        }
        ctx.labels = features::header_labels(&map);
        ctx.session = features::header_session(&map);
    }
    let format = match case["api"].as_str() {
        Some("anthropic") => crate::provider::Format::Anthropic,
        _ => crate::provider::Format::OpenAi,
    };
    let mut features = match features::from_json(format, &case["request"], ctx) {
        Ok(features) => features,
        // As the gateway would answer it: a 400, before any policy. A case
        // may expect that.
        Err(e) => {
            return match case["expect"]["error"].as_str() {
                Some(wanted) if e.contains(wanted) => Vec::new(),
                _ => vec![format!("the request is refused before routing: {e}")],
            };
        }
    };
    if let Some(tier) = case["task_tier"].as_str() {
        features::set_label(
            &mut features.labels,
            features::TASK_TIER_LABEL,
            tier.to_string(),
        );
    }
    let expect = &case["expect"];
    let result = module
        .route(&features, &catalog)
        .await
        .and_then(|r| validate(r, &catalog));
    match (result, expect["error"].as_str()) {
        (Err(e), Some(wanted)) if e.to_string().contains(wanted) => Vec::new(),
        (Err(e), _) => vec![format!("policy failed: {e}")],
        (Ok(route), Some(wanted)) => vec![format!(
            "expected an error containing {wanted:?}, got a route to {}",
            route.executor
        )],
        (Ok(route), None) => compare(&route, expect),
    }
}

/// Applies a case's `unavailable` and `context_windows` to the catalog.
fn adjust_catalog(catalog: &mut [ModelInfo], case: &Value) {
    for model in catalog.iter_mut() {
        if let Some(list) = case["unavailable"].as_array()
            && list.iter().any(|id| id.as_str() == Some(&model.id))
        {
            model.available = false;
        }
        if let Some(window) = case["context_windows"][&model.id].as_u64() {
            model.context_window = window as u32;
        }
    }
}

fn compare(route: &Route, expect: &Value) -> Vec<String> {
    let actual = json!({
        "tier": route.tier.as_str(),
        "executor": route.executor,
        "fallbacks": route.fallbacks,
        "planner": route.planner,
    });
    let mut problems = Vec::new();
    for field in ["tier", "executor", "fallbacks", "planner"] {
        if let Some(wanted) = expect.get(field)
            && wanted != &actual[field]
        {
            problems.push(format!("{field}: expected {wanted}, got {}", actual[field]));
        }
    }
    if let Some(parts) = expect["reasoning_contains"].as_array() {
        for part in parts.iter().filter_map(Value::as_str) {
            if !route.reasoning.contains(part) {
                problems.push(format!("reasoning {:?} lacks {part:?}", route.reasoning));
            }
        }
    }
    problems
}
