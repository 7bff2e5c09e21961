//! Starting what the load is sent to: the local upstream, Pointsman (and
//! its config) and LiteLLM, each on a free port, waited for until ready.

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// Starts `pointsman-bench upstream` with `extra` arguments; returns it,
/// its address and its start-up time (spawn to the first 200).
pub(super) fn start_upstream(
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
pub(super) fn upstream_stats(addr: SocketAddr) -> crate::Result<(u64, u64)> {
    let answer = proc::get(addr, "/stats", Duration::from_secs(10))?;
    let stats: Value = serde_json::from_str(&answer.body)?;
    match (stats["requests"].as_u64(), stats["failed"].as_u64()) {
        (Some(requests), Some(failed)) => Ok((requests, failed)),
        _ => Err(format!("bad /stats answer: {}", answer.body).into()),
    }
}

pub(super) fn free_port() -> crate::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A started gateway.
pub(super) struct Started {
    pub(super) guard: Guard,
    pub(super) addr: SocketAddr,
    pub(super) startup: Duration,
    pub(super) probe: proc::Answer,
}

/// Polls with the probe request until it gets a 200; returns the answer.
pub(super) fn wait_ready(
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
pub(super) fn start_pointsman(
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
    // Each run records into a fresh ledger of its own: never the user's,
    // and no rollout state carried from one run into the next.
    let ledger = work.join(format!("ledger-{label}.db"));
    // The record journal too, or the last run's rows would be replayed
    // into this one's ledger.
    for suffix in [
        "",
        "-wal",
        "-shm",
        "-records",
        "-records.1",
        "-records.lock",
    ] {
        let _ = std::fs::remove_file(format!("{}{suffix}", ledger.display()));
    }
    text.push_str(&format!(
        "\n[ledger]\nurl = \"sqlite:{}\"\n",
        ledger.display()
    ));
    if let Some(module) = &o.router_module {
        // The module under a name of its own in a folder of this run; the
        // [policies] table the config already has gains its folder and
        // names it the router.
        let dir = work.join("policies");
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(module, dir.join("bench-router.wasm"))?;
        text = text.replacen(
            "router = \"seed-matrix\"",
            &format!("router = \"bench-router\"\ndir = \"{}\"", dir.display()),
            1,
        );
        if !text.contains("bench-router") {
            return Err("the benchmark's config names no router to replace".into());
        }
    }
    if o.shadow {
        text.push_str("\n[rollouts.router]\ncandidate = \"premium-only\"\nshadow = true\n");
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

pub(super) fn start_litellm(
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
