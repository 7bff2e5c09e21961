//! The benchmark driver: starts the upstream and each gateway, drives `oha`
//! against them, measures the gateway process, prints the table, writes JSON.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proc::{self, Guard};

mod cli;
mod gateways;
mod report;

use cli::{Mode, Options, Target, parse_options};
pub(crate) use gateways::pointsman_config;
use gateways::*;
use report::*;

/// The key every request carries: the upstream and Pointsman (no
/// `[[clients]]`) accept any, LiteLLM is started with this as its master key.
pub const API_KEY: &str = "sk-pointsman-bench-7f3a9c1e5b2d8046";

pub(crate) fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn repo_dir() -> PathBuf {
    bench_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn main(args: &[String]) -> crate::Result<()> {
    let mut o = parse_options(args)?;
    let started = Instant::now();
    let work = bench_dir().join(".work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("logs"))?;
    check_tools(&o)?;
    // The path as given, for the report: `o.pointsman` becomes the pinned copy.
    let daemon = o.pointsman.clone();
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
            // Which daemon and router served, so a run's file says what
            // it measured (bench/ab compares builds and modules).
            "pointsman": daemon,
            "router_module": o.router_module,
            "shadow": o.shadow,
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
    let args = cli::ConfigArgs::parse(args);
    let mut text = pointsman_config(args.port, args.upstream, None);
    if let Some(ms) = args.breaker_window_ms {
        text.push_str(&format!("\n[resilience.breaker]\nwindow_ms = {ms}\n"));
    }
    print!("{text}");
    Ok(())
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
