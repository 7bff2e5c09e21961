//! The benchmark driver: starts the upstream and each gateway, drives `oha`
//! against them, measures the gateway process, prints the table, writes JSON.

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::proc::{self, Guard};

const USAGE: &str = "\
usage: pointsman-bench [OPTIONS]

Runs the gateway load benchmark and prints one table; writes it as JSON too.

  --duration SECS       measured time of each run (default 10)
  --warmup SECS         unmeasured load before each run (default 1)
  --concurrency LIST    comma-separated (default 1,16,64)
  --modes LIST          plain,stream (default both)
  --targets LIST        direct,pointsman,pointsman-faulty,litellm
                        (default direct,pointsman,pointsman-faulty)
  --litellm             add the litellm target (needs bench/.venv, see bench/run)
  --fault-every N       pointsman-faulty: glm-4.7's second endpoint fails every
                        Nth request it gets (default 5: 20%)
  --fault-status S      the status of those failures (default 500)
  --message TEXT        the user message (default: one the seed matrix routes `direct`)
  --pointsman PATH     the daemon binary (default <repo>/target/release/pointsman)
  --oha PATH            the load generator (default bench/.tools/bin/oha, then PATH)
  --litellm-bin PATH    default bench/.venv/bin/litellm
  --out PATH            JSON output (default bench/results/latest.json)
  --upstream-threads N  worker threads of the local upstream (default: cores)

diagnostics (the reported table uses the defaults):
  --model NAME          the request's model (default auto: the policy decides;
                        a catalog id such as glm-4.7 skips the policy and the
                        catalog health it is given)
  --breaker-window-ms N Pointsman's [resilience.breaker] window_ms (default:
                        unset, the daemon's 30000)
";

/// The key every request carries: the upstream and Pointsman (no
/// `[[clients]]`) accept any, LiteLLM is started with this as its master key.
pub const API_KEY: &str = "sk-pointsman-bench-7f3a9c1e5b2d8046";

/// Routed `direct` by seed-matrix (`medium: change:bug, change:fix`).
const DEFAULT_MESSAGE: &str = "Fix the off-by-one bug in the parser";

struct Options {
    duration: u64,
    warmup: u64,
    concurrency: Vec<u32>,
    modes: Vec<Mode>,
    targets: Vec<Target>,
    message: String,
    pointsman: PathBuf,
    oha: PathBuf,
    litellm: PathBuf,
    out: PathBuf,
    upstream_threads: Option<usize>,
    model: String,
    breaker_window_ms: Option<u64>,
    fault_every: u64,
    fault_status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Plain,
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Target {
    Direct,
    Pointsman,
    /// Pointsman with glm-4.7 on two endpoints, one of which fails every
    /// `fault_every`th request it gets.
    #[serde(rename = "pointsman-faulty")]
    Faulty,
    Litellm,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pointsman => "pointsman",
            Target::Faulty => "pointsman-faulty",
            Target::Litellm => "litellm",
        }
    }

    fn is_pointsman(self) -> bool {
        matches!(self, Target::Pointsman | Target::Faulty)
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Stream => "stream",
        }
    }
}

pub(crate) fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn repo_dir() -> PathBuf {
    bench_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn parse_options(args: &[String]) -> crate::Result<Options> {
    let target_dir = std::env::var_os("POINTSMAN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target"));
    let mut o = Options {
        duration: 10,
        warmup: 1,
        concurrency: vec![1, 16, 64],
        modes: vec![Mode::Plain, Mode::Stream],
        targets: vec![Target::Direct, Target::Pointsman, Target::Faulty],
        message: DEFAULT_MESSAGE.into(),
        pointsman: target_dir.join("release/pointsman"),
        oha: bench_dir().join(".tools/bin/oha"),
        litellm: bench_dir().join(".venv/bin/litellm"),
        out: bench_dir().join("results/latest.json"),
        upstream_threads: None,
        model: "auto".into(),
        breaker_window_ms: None,
        fault_every: 5,
        fault_status: 500,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--duration" => o.duration = value()?.parse()?,
            "--warmup" => o.warmup = value()?.parse()?,
            "--concurrency" => {
                o.concurrency = value()?
                    .split(',')
                    .map(|c| c.trim().parse::<u32>())
                    .collect::<Result<_, _>>()?
            }
            "--modes" => {
                o.modes = value()?
                    .split(',')
                    .map(|m| match m.trim() {
                        "plain" => Ok(Mode::Plain),
                        "stream" => Ok(Mode::Stream),
                        other => Err(format!("unknown mode {other}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--targets" => {
                o.targets = value()?
                    .split(',')
                    .map(|t| match t.trim() {
                        "direct" => Ok(Target::Direct),
                        "pointsman" => Ok(Target::Pointsman),
                        "pointsman-faulty" => Ok(Target::Faulty),
                        "litellm" => Ok(Target::Litellm),
                        other => Err(format!("unknown target {other}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--litellm" => {
                if !o.targets.contains(&Target::Litellm) {
                    o.targets.push(Target::Litellm);
                }
            }
            "--message" => o.message = value()?,
            "--pointsman" => o.pointsman = value()?.into(),
            "--oha" => o.oha = value()?.into(),
            "--litellm-bin" => o.litellm = value()?.into(),
            "--out" => o.out = value()?.into(),
            "--upstream-threads" => o.upstream_threads = Some(value()?.parse()?),
            "--model" => o.model = value()?,
            "--breaker-window-ms" => o.breaker_window_ms = Some(value()?.parse()?),
            "--fault-every" => o.fault_every = value()?.parse()?,
            "--fault-status" => o.fault_status = value()?.parse()?,
            other => return Err(format!("unknown argument {other}\n\n{USAGE}").into()),
        }
    }
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

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    target: Target,
    mode: Mode,
    concurrency: u32,
    /// Successful (2xx) answers per second.
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Time to the first byte of the answer, median.
    ttfb_p50_ms: f64,
    /// Successful answers in the measured run.
    ok: u64,
    /// Non-2xx answers plus transport errors.
    errors: u64,
    error_kinds: Value,
    /// CPU time (user + system) of the measured process per successful
    /// answer; for `direct` that process is the upstream itself.
    cpu_us_per_req: f64,
    /// The upstream's CPU per answer in the same run (both upstreams for
    /// `pointsman-faulty`).
    upstream_cpu_us_per_req: f64,
    /// oha's CPU per answer in the same run.
    loadgen_cpu_us_per_req: f64,
    /// VmHWM of the measured process at the end of the run.
    peak_rss_mib: f64,
    /// Spawn to the first 200 on a probe request.
    startup_ms: f64,
    /// From the probe: the route's tier and model (Pointsman only).
    tier: Option<String>,
    model: Option<String>,
    /// `pointsman-faulty`: requests the failing endpoint received during
    /// the measured run, and how many of them it failed (each one an
    /// attempt the gateway had to make again, on a retry or a fallback).
    faulty_endpoint_requests: Option<u64>,
    failed_attempts: Option<u64>,
    /// The failing endpoint's share of all upstream attempts (successful
    /// answers plus failed attempts): about half with round-robin, less
    /// while its breaker is open.
    faulty_endpoint_share: Option<f64>,
    wall_s: f64,
}

pub fn main(args: &[String]) -> crate::Result<()> {
    let mut o = parse_options(args)?;
    let started = Instant::now();
    let work = bench_dir().join(".work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("logs"))?;
    check_tools(&o)?;
    if o.targets.iter().any(|t| t.is_pointsman()) {
        // Every row runs the same binary, even if the workspace is rebuilt
        // meanwhile: a hard link keeps this build's file.
        let pinned = work.join("pointsman");
        if std::fs::hard_link(&o.pointsman, &pinned).is_err() {
            std::fs::copy(&o.pointsman, &pinned)?;
        }
        o.pointsman = pinned;
    }

    let machine = machine(&o);
    eprintln!(
        "machine: {} cores, {}; {} s per run after {} s warm-up",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        o.duration,
        o.warmup
    );

    // The upstreams run for the whole benchmark.
    let (upstream, upstream_addr, upstream_startup) = start_upstream(&o, &[], "upstream")?;
    eprintln!(
        "upstream on {upstream_addr} (ready in {:.1} ms)",
        ms(upstream_startup)
    );
    let faulty_upstream = match o.targets.contains(&Target::Faulty) {
        true => {
            let args = [
                "--fail-every".to_string(),
                o.fault_every.to_string(),
                "--fail-status".to_string(),
                o.fault_status.to_string(),
            ];
            let (guard, addr, _) = start_upstream(&o, &args, "faulty upstream")?;
            eprintln!(
                "faulty upstream on {addr} (fails 1 in {} with HTTP {})",
                o.fault_every, o.fault_status
            );
            Some((guard, addr))
        }
        false => None,
    };
    let faulty = faulty_upstream.as_ref().map(|(guard, addr)| (guard, *addr));

    let mut rows = Vec::new();
    let mut cold_start_ms = None;
    for &target in &o.targets {
        if target == Target::Pointsman {
            // First start with an empty compile cache: Cranelift compiles the
            // built-in policies. The rows below start with a warm cache.
            let cold = start_pointsman(&o, &work, upstream_addr, None, "cold-start")?;
            eprintln!(
                "pointsman cold start (empty policy cache): {:.0} ms",
                ms(cold.startup)
            );
            cold_start_ms = Some(ms(cold.startup));
        }
        for &mode in &o.modes {
            for &c in &o.concurrency {
                let row = run_row(
                    &o,
                    &work,
                    target,
                    mode,
                    c,
                    &upstream,
                    upstream_addr,
                    upstream_startup,
                    faulty,
                )?;
                eprintln!("{}", format_row(&row));
                rows.push(row);
            }
        }
    }
    drop(faulty_upstream);
    drop(upstream);

    let checks = checks(&rows, o.fault_every);
    println!();
    println!("{}", header_line());
    for row in &rows {
        println!("{}", format_row(row));
    }
    if let Some(cold) = cold_start_ms {
        println!("pointsman cold start (empty policy compile cache): {cold:.0} ms");
    }
    if !checks.is_empty() {
        println!();
        println!("issue targets (Pointsman, seed-matrix deciding every request):");
        for check in &checks {
            println!(
                "  {}  {}",
                if check["pass"].as_bool() == Some(true) {
                    "PASS"
                } else {
                    "MISS"
                },
                check["text"].as_str().unwrap_or("")
            );
        }
    }
    let total = started.elapsed();
    println!("benchmark wall time: {:.0} s", total.as_secs_f64());

    let report = json!({
        "generated_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "machine": machine,
        "settings": {
            "duration_s": o.duration,
            "warmup_s": o.warmup,
            "concurrency": o.concurrency,
            "modes": o.modes,
            "targets": o.targets,
            "message": o.message,
            "model": o.model,
            "breaker_window_ms": o.breaker_window_ms,
            "fault_every": o.fault_every,
            "fault_status": o.fault_status,
            "request_plain": body(&o, Mode::Plain),
            "request_stream": body(&o, Mode::Stream),
        },
        "pointsman_cold_start_ms": cold_start_ms,
        "rows": rows,
        "checks": checks,
        "wall_s": total.as_secs_f64(),
    });
    if let Some(dir) = o.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&o.out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("wrote {}", o.out.display());
    Ok(())
}

/// Starts `pointsman-bench upstream` with `extra` arguments; returns it,
/// its address and its start-up time (spawn to the first 200).
fn start_upstream(
    o: &Options,
    extra: &[String],
    name: &str,
) -> crate::Result<(Guard, SocketAddr, Duration)> {
    let spawned = Instant::now();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("upstream")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(extra);
    if let Some(n) = o.upstream_threads {
        command.arg("--threads").arg(n.to_string());
    }
    let mut child = proc::spawn(command.stdout(Stdio::piped()).stderr(Stdio::inherit()))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let guard = Guard {
        child,
        name: name.into(),
    };
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("the {name} said {line:?}"))?
        .parse()?;
    wait_ready(None, addr, &body(o, Mode::Plain), Duration::from_secs(10))?;
    Ok((guard, addr, spawned.elapsed()))
}

/// `(requests, failed)` so far, from a failing upstream's `GET /stats`.
fn upstream_stats(addr: SocketAddr) -> crate::Result<(u64, u64)> {
    let answer = proc::get(addr, "/stats", Duration::from_secs(10))?;
    let stats: Value = serde_json::from_str(&answer.body)?;
    match (stats["requests"].as_u64(), stats["failed"].as_u64()) {
        (Some(requests), Some(failed)) => Ok((requests, failed)),
        _ => Err(format!("bad /stats answer: {}", answer.body).into()),
    }
}

fn check_tools(o: &Options) -> crate::Result<()> {
    let oha = Command::new(&o.oha).arg("--version").output();
    if !matches!(&oha, Ok(out) if out.status.success()) {
        return Err(format!(
            "cannot run oha ({}); bench/run installs it into bench/.tools",
            o.oha.display()
        )
        .into());
    }
    if o.targets.iter().any(|t| t.is_pointsman()) && !o.pointsman.exists() {
        return Err(format!(
            "no daemon at {}: run `cargo build --release -p pointsman` (bench/run does)",
            o.pointsman.display()
        )
        .into());
    }
    if o.targets.contains(&Target::Litellm) && !o.litellm.exists() {
        return Err(format!(
            "no LiteLLM at {}: run `bench/run --litellm`, which installs it",
            o.litellm.display()
        )
        .into());
    }
    Ok(())
}

fn body(o: &Options, mode: Mode) -> String {
    let mut body = json!({
        "model": o.model,
        "messages": [{"role": "user", "content": o.message}],
    });
    if mode == Mode::Stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

/// `pointsman-bench config --port P --upstream ADDR [--breaker-window-ms N]`:
/// prints the benchmark's Pointsman config (used by bench/profile).
pub fn print_config(args: &[String]) -> crate::Result<()> {
    let (mut port, mut upstream, mut window) = (None, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--port" => port = Some(value.parse::<u16>()?),
            "--upstream" => upstream = Some(value.parse::<SocketAddr>()?),
            "--breaker-window-ms" => window = Some(value.parse::<u64>()?),
            other => return Err(format!("config: unknown argument {other}").into()),
        }
    }
    let mut text = pointsman_config(
        port.ok_or("config: --port is required")?,
        upstream.ok_or("config: --upstream is required")?,
        None,
    );
    if let Some(ms) = window {
        text.push_str(&format!("\n[resilience.breaker]\nwindow_ms = {ms}\n"));
    }
    print!("{text}");
    Ok(())
}

fn free_port() -> crate::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A started gateway.
struct Started {
    guard: Guard,
    addr: SocketAddr,
    startup: Duration,
    probe: proc::Answer,
}

/// Polls with the probe request until it gets a 200; returns the answer.
fn wait_ready(
    mut child: Option<&mut Guard>,
    addr: SocketAddr,
    body: &str,
    timeout: Duration,
) -> crate::Result<proc::Answer> {
    let until = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < until {
        if let Some(child) = child.as_deref_mut()
            && let Some(status) = child.exited()
        {
            return Err(format!("{} exited during start-up ({status})", child.name).into());
        }
        match proc::post(addr, "/v1/chat/completions", body, Duration::from_secs(30)) {
            Ok(answer) if answer.status == 200 => return Ok(answer),
            Ok(answer) => {
                last = format!(
                    "HTTP {}: {}",
                    answer.status,
                    answer.body.chars().take(300).collect::<String>()
                );
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!("not ready on {addr} after {timeout:?}: {last}").into())
}

/// Starts the daemon on `upstream`; with `faulty`, glm-4.7 gets a second
/// endpoint there.
fn start_pointsman(
    o: &Options,
    work: &Path,
    upstream: SocketAddr,
    faulty: Option<SocketAddr>,
    label: &str,
) -> crate::Result<Started> {
    let port = free_port()?;
    let config = work.join("pointsman.toml");
    let mut text = pointsman_config(port, upstream, faulty);
    if let Some(ms) = o.breaker_window_ms {
        text.push_str(&format!("\n[resilience.breaker]\nwindow_ms = {ms}\n"));
    }
    std::fs::write(&config, text)?;
    let log = std::fs::File::create(work.join("logs").join(format!("pointsman-{label}.log")))?;
    let spawned = Instant::now();
    let child = proc::spawn(
        Command::new(&o.pointsman)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    let mut guard = Guard {
        child,
        name: "pointsman".into(),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = wait_ready(
        Some(&mut guard),
        addr,
        &body(o, Mode::Plain),
        Duration::from_secs(120),
    )?;
    let startup = spawned.elapsed();
    if o.model == "auto" && probe.header("x-pointsman-tier") != Some("direct") {
        eprintln!(
            "  warning: the probe was routed {:?} ({:?}), not direct",
            probe.header("x-pointsman-tier"),
            probe.header("x-pointsman-reason")
        );
    }
    Ok(Started {
        guard,
        addr,
        startup,
        probe,
    })
}

/// The seed catalog (host/src/demo.toml, examples/seed.toml) with every
/// provider pointed at the local upstream. With `faulty`, glm-4.7 has a
/// second endpoint, provider `zhipu-faulty` on that address, shared
/// round-robin (the default strategy) with the healthy one.
pub(crate) fn pointsman_config(
    port: u16,
    upstream: SocketAddr,
    faulty: Option<SocketAddr>,
) -> String {
    let (faulty_provider, faulty_endpoint) = match faulty {
        Some(addr) => (
            format!(
                "\n[providers.zhipu-faulty]\nkind = \"openai\"\nbase_url = \"http://{addr}/v1\"\n"
            ),
            "\n[[models.endpoints]]\nprovider = \"zhipu-faulty\"\n".to_string(),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"# Written by pointsman-bench: the seed catalog on the local upstream.
listen = "127.0.0.1:{port}"
baseline_model = "claude-opus-4.5"

[policies]
router = "seed-matrix"
planner = "seed-planner"
cache_dir = "cache"

[resilience]
escalation_model = "claude-opus-4.5"

[safe_route]
executor = "glm-4.7"
fallbacks = ["deepseek-v3.2-exp", "claude-opus-4.5"]

[providers.anthropic]
kind = "openai"
base_url = "http://{upstream}/v1"

[providers.deepseek]
kind = "openai"
base_url = "http://{upstream}/v1"

[providers.zhipu]
kind = "openai"
base_url = "http://{upstream}/v1"
{faulty_provider}
[[models]]
id = "claude-opus-4.5"
provider = "anthropic"
upstream = "claude-opus-4-5"
roles = ["premium", "planner"]
input_usd_per_mtok = 5.0
output_usd_per_mtok = 25.0
cached_usd_per_mtok = 0.5
context_window = 200000

[[models]]
id = "deepseek-v3.2"
provider = "deepseek"
upstream = "deepseek-reasoner"
roles = ["planner"]
input_usd_per_mtok = 0.25
output_usd_per_mtok = 0.38
cached_usd_per_mtok = 0.025
context_window = 164000

[[models]]
id = "deepseek-v3.2-exp"
provider = "deepseek"
upstream = "deepseek-chat"
roles = ["executor"]
input_usd_per_mtok = 0.21
output_usd_per_mtok = 0.32
cached_usd_per_mtok = 0.021
context_window = 164000

[[models]]
id = "glm-4.7"
provider = "zhipu"
upstream = "glm-4.7"
roles = ["executor"]
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
cached_usd_per_mtok = 0.2
context_window = 128000
{faulty_endpoint}"#
    )
}

fn start_litellm(
    o: &Options,
    work: &Path,
    upstream: SocketAddr,
    label: &str,
) -> crate::Result<Started> {
    let port = free_port()?;
    let config = work.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            r#"# Written by pointsman-bench: one model on the local upstream.
model_list:
  - model_name: auto
    litellm_params:
      model: openai/glm-4.7
      api_base: http://{upstream}/v1
      api_key: bench
litellm_settings:
  telemetry: false
general_settings:
  master_key: {API_KEY}
"#
        ),
    )?;
    let log = std::fs::File::create(work.join("logs").join(format!("litellm-{label}.log")))?;
    let spawned = Instant::now();
    let child = proc::spawn(
        Command::new(&o.litellm)
            .arg("--config")
            .arg(&config)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .env("LITELLM_LOG", "ERROR")
            .env("LITELLM_TELEMETRY", "False")
            .env("NO_DOCS", "True")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    let mut guard = Guard {
        child,
        name: "litellm".into(),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = wait_ready(
        Some(&mut guard),
        addr,
        &body(o, Mode::Plain),
        Duration::from_secs(300),
    )?;
    Ok(Started {
        guard,
        addr,
        startup: spawned.elapsed(),
        probe,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_row(
    o: &Options,
    work: &Path,
    target: Target,
    mode: Mode,
    c: u32,
    upstream: &Guard,
    upstream_addr: SocketAddr,
    upstream_startup: Duration,
    faulty: Option<(&Guard, SocketAddr)>,
) -> crate::Result<Row> {
    let label = match target {
        Target::Faulty => format!("faulty-{}-c{c}", mode.name()),
        _ => format!("{}-c{c}", mode.name()),
    };
    let faulty = faulty.filter(|_| target == Target::Faulty);
    // Each gateway row gets a fresh process: its peak RSS and start-up are
    // its own.
    let started = match target {
        Target::Direct => None,
        Target::Pointsman => Some(start_pointsman(o, work, upstream_addr, None, &label)?),
        Target::Faulty => {
            let addr = faulty.map(|(_, addr)| addr);
            Some(start_pointsman(o, work, upstream_addr, addr, &label)?)
        }
        Target::Litellm => Some(start_litellm(o, work, upstream_addr, &label)?),
    };
    let (addr, pid, startup) = match &started {
        Some(s) => (s.addr, s.guard.pid(), s.startup),
        None => (upstream_addr, upstream.pid(), upstream_startup),
    };
    if mode == Mode::Stream {
        // The probe above is plain; check the stream once, with usage.
        let answer = proc::post(
            addr,
            "/v1/chat/completions",
            &body(o, mode),
            Duration::from_secs(30),
        )?;
        if answer.status != 200
            || !answer.body.contains("\"usage\"")
            || !answer.body.contains("[DONE]")
        {
            eprintln!(
                "  warning: {} stream probe: HTTP {}, body {:?}",
                target.name(),
                answer.status,
                answer.body.chars().take(300).collect::<String>()
            );
        }
    }
    let url = format!("http://{addr}/v1/chat/completions");
    let body = body(o, mode);
    if o.warmup > 0 {
        oha(o, &url, &body, c, o.warmup)?;
    }
    let upstreams_cpu = || {
        proc::cpu_seconds(upstream.pid())
            + faulty.map_or(0.0, |(guard, _)| proc::cpu_seconds(guard.pid()))
    };
    let stats = || faulty.map(|(_, addr)| upstream_stats(addr)).transpose();
    let stats0 = stats()?;
    let cpu0 = proc::cpu_seconds(pid);
    let up0 = upstreams_cpu();
    let gen0 = proc::children_cpu_seconds();
    let t0 = Instant::now();
    let report = oha(o, &url, &body, c, o.duration)?;
    let wall = t0.elapsed().as_secs_f64();
    let gen1 = proc::children_cpu_seconds();
    let cpu1 = proc::cpu_seconds(pid);
    let up1 = upstreams_cpu();
    let peak = proc::peak_rss_bytes(pid);
    let stats1 = stats()?;
    let faulty_delta = stats0.zip(stats1).map(|(a, b)| (b.0 - a.0, b.1 - a.1));

    let codes = report["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut ok = 0u64;
    let mut errors = 0u64;
    let mut kinds = serde_json::Map::new();
    for (code, n) in &codes {
        let n = n.as_u64().unwrap_or(0);
        if code.starts_with('2') {
            ok += n;
        } else {
            errors += n;
            kinds.insert(format!("HTTP {code}"), json!(n));
        }
    }
    if let Some(map) = report["errorDistribution"].as_object() {
        for (kind, n) in map {
            errors += n.as_u64().unwrap_or(0);
            kinds.insert(kind.clone(), n.clone());
        }
    }
    let total_s = report["summary"]["total"].as_f64().unwrap_or(wall);
    let per_req = |seconds: f64| {
        if ok > 0 {
            seconds * 1e6 / ok as f64
        } else {
            f64::NAN
        }
    };
    let secs = |v: &Value| v.as_f64().map_or(f64::NAN, |s| s * 1000.0);
    let row = Row {
        target,
        mode,
        concurrency: c,
        requests_per_sec: ok as f64 / total_s,
        p50_ms: secs(&report["latencyPercentiles"]["p50"]),
        p99_ms: secs(&report["latencyPercentiles"]["p99"]),
        ttfb_p50_ms: secs(&report["firstBytePercentiles"]["p50"]),
        ok,
        errors,
        error_kinds: Value::Object(kinds),
        cpu_us_per_req: per_req(cpu1 - cpu0),
        upstream_cpu_us_per_req: per_req(up1 - up0),
        loadgen_cpu_us_per_req: per_req(gen1 - gen0),
        peak_rss_mib: peak as f64 / (1024.0 * 1024.0),
        startup_ms: ms(startup),
        tier: started
            .as_ref()
            .and_then(|s| s.probe.header("x-pointsman-tier").map(str::to_string)),
        model: started
            .as_ref()
            .and_then(|s| s.probe.header("x-pointsman-model").map(str::to_string)),
        faulty_endpoint_requests: faulty_delta.map(|d| d.0),
        failed_attempts: faulty_delta.map(|d| d.1),
        faulty_endpoint_share: faulty_delta
            .filter(|_| ok > 0)
            .map(|(requests, failed)| requests as f64 / (ok + failed) as f64),
        wall_s: wall,
    };
    if let Some(share) = row.faulty_endpoint_share
        && share < 0.25
    {
        eprintln!(
            "  warning: the failing endpoint got only {:.1}% of the attempts: its circuit \
             breaker was open for part of the run (bench/.work/logs/pointsman-{label}.log \
             says when)",
            share * 100.0
        );
    }
    drop(started);
    Ok(row)
}

/// Runs oha for `seconds` and returns its JSON report.
fn oha(o: &Options, url: &str, body: &str, c: u32, seconds: u64) -> crate::Result<Value> {
    let output = Command::new(&o.oha)
        .args(["--no-tui", "--output-format", "json"])
        .args(["-z", &format!("{seconds}s")])
        // Requests in flight at the deadline finish and count, rather than
        // being reported as errors.
        .arg("--wait-ongoing-requests-after-deadline")
        .args(["-c", &c.to_string()])
        .args(["-m", "POST"])
        .args(["-H", "content-type: application/json"])
        .args(["-H", &format!("authorization: Bearer {API_KEY}")])
        .args(["-d", body])
        .arg(url)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "oha failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn header_line() -> String {
    format!(
        "{:<17} {:<6} {:>4} {:>9} {:>8} {:>8} {:>6} {:>7} {:>10} {:>8} {:>9}",
        "target",
        "mode",
        "conc",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "retries",
        "CPU µs/req",
        "peak MiB",
        "start ms"
    )
}

fn format_row(r: &Row) -> String {
    let retries = r.failed_attempts.map_or("-".to_string(), |n| n.to_string());
    format!(
        "{:<17} {:<6} {:>4} {:>9.0} {:>8.3} {:>8.3} {:>6} {:>7} {:>10.1} {:>8.1} {:>9.1}",
        r.target.name(),
        r.mode.name(),
        r.concurrency,
        r.requests_per_sec,
        r.p50_ms,
        r.p99_ms,
        r.errors,
        retries,
        r.cpu_us_per_req,
        r.peak_rss_mib,
        r.startup_ms
    )
}

/// The issue's targets, checked on this run's Pointsman rows against the
/// direct rows; streaming gets twice the slack. With one endpoint failing,
/// the client must still see no errors.
fn checks(rows: &[Row], fault_every: u64) -> Vec<Value> {
    let find = |t: Target, m: Mode, c: u32| {
        rows.iter()
            .find(|r| r.target == t && r.mode == m && r.concurrency == c)
    };
    let mut out = Vec::new();
    let mut push = |pass: bool, text: String| out.push(json!({"pass": pass, "text": text}));
    for mode in [Mode::Plain, Mode::Stream] {
        let sy: Vec<&Row> = rows
            .iter()
            .filter(|r| r.target == Target::Pointsman && r.mode == mode)
            .collect();
        if sy.is_empty() {
            continue;
        }
        let k = if mode == Mode::Plain { 1.0 } else { 2.0 };
        let m = mode.name();
        let worst_cpu = sy.iter().map(|r| r.cpu_us_per_req).fold(0.0, f64::max);
        // Each row beside direct's at the same concurrency: at c=1 every
        // process pays for being woken, direct included.
        let per_row: Vec<String> = sy
            .iter()
            .map(|r| match find(Target::Direct, mode, r.concurrency) {
                Some(d) => format!(
                    "c={} {:.1} (direct {:.1})",
                    r.concurrency, r.cpu_us_per_req, d.cpu_us_per_req
                ),
                None => format!("c={} {:.1}", r.concurrency, r.cpu_us_per_req),
            })
            .collect();
        push(
            worst_cpu < 50.0 * k,
            format!(
                "{m}: gateway CPU per request < {:.0} µs (worst row {worst_cpu:.1} µs; {})",
                50.0 * k,
                per_row.join(", ")
            ),
        );
        if let (Some(s), Some(d)) = (
            find(Target::Pointsman, mode, 1),
            find(Target::Direct, mode, 1),
        ) {
            let added = s.p50_ms - d.p50_ms;
            push(
                added < 0.2 * k,
                format!(
                    "{m}: added p50 latency at c=1 < {:.1} ms ({added:.3} ms: {:.3} vs {:.3} direct)",
                    0.2 * k,
                    s.p50_ms,
                    d.p50_ms
                ),
            );
            push(
                s.p50_ms < 20.0,
                format!(
                    "{m}: no Nagle stall at c=1 (p50 {:.3} ms, a 40 ms p50 would mean Nagle)",
                    s.p50_ms
                ),
            );
        }
        if let (Some(s), Some(d)) = (
            find(Target::Pointsman, mode, 64),
            find(Target::Direct, mode, 64),
        ) {
            let share = s.requests_per_sec / d.requests_per_sec;
            push(
                share >= 0.15 / k,
                format!(
                    "{m}: req/s at c=64 >= {:.1}% of direct ({:.1}%: {:.0} vs {:.0})",
                    15.0 / k,
                    share * 100.0,
                    s.requests_per_sec,
                    d.requests_per_sec
                ),
            );
        }
        let errors: u64 = sy.iter().map(|r| r.errors).sum();
        push(errors == 0, format!("{m}: no errors ({errors})"));
        let rss = sy.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
        push(
            rss < 100.0,
            format!("{m}: peak RSS under load < 100 MB ({rss:.1} MiB)"),
        );
    }
    for mode in [Mode::Plain, Mode::Stream] {
        let faulty: Vec<&Row> = rows
            .iter()
            .filter(|r| r.target == Target::Faulty && r.mode == mode)
            .collect();
        if faulty.is_empty() {
            continue;
        }
        let errors: u64 = faulty.iter().map(|r| r.errors).sum();
        let failed: u64 = faulty.iter().filter_map(|r| r.failed_attempts).sum();
        let sent: u64 = faulty
            .iter()
            .filter_map(|r| r.faulty_endpoint_requests)
            .sum();
        // Without failures injected, the rows would prove nothing.
        push(
            errors == 0 && failed > 0,
            format!(
                "{}: no errors with one of glm-4.7's two endpoints failing 1 in {fault_every} \
                 ({errors} errors; {failed} of the {sent} requests it got failed, every one \
                 absorbed by a retry or fallback)",
                mode.name()
            ),
        );
    }
    out
}

fn machine(o: &Options) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
    let text = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let dirty = text(Command::new("git").arg("-C").arg(repo_dir()).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .map(|s| !s.is_empty());
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu_model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "pointsman": text(Command::new(&o.pointsman).arg("--version")),
        "oha": text(Command::new(&o.oha).arg("--version")),
        "git_commit": text(Command::new("git").arg("-C").arg(repo_dir()).args(["rev-parse", "--short", "HEAD"])),
        "git_dirty": dirty,
    })
}
