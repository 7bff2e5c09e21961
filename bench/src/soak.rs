//! The soak test: the daemon under steady load for a long time, watched for
//! leaks.
//!
//! `pointsman-bench soak [--minutes 60] [--sample-seconds 60]
//! [--window-minutes 40] [--clients 4] [--pace-ms 20] [--swap-seconds 5]
//! [--pointsman PATH] [--policy PATH]` starts the local upstream and a
//! failing one (every 5th request a 500), and the daemon on the seed
//! catalog with glm-4.7 on both (so the healthy endpoint can serve every
//! request the failing one drops). Then, for the whole run:
//!
//! - `--clients` threads each send a request every `--pace-ms`, in turn:
//!   OpenAI plain and streamed, Anthropic plain and streamed (routed
//!   direct), a chat request routed to the plan tier (eight in a row share
//!   an agent session, so one plan is made and seven are served from the
//!   plan cache; one served without a plan counts as failed), and a task
//!   (direct) submitted and followed to its end;
//! - every `--swap-seconds` the router policy is replaced by publishing a
//!   new `seed-matrix.wasm` in the watched folder (one of four variants of
//!   the seed router, differing by a custom section, so each swap loads);
//! - every `--sample-seconds` the daemon's RSS, open file descriptors and
//!   live Tokio tasks (`pointsman_runtime_alive_tasks`) are sampled, each
//!   the median of five reads 100 ms apart.
//!
//! At the end, for each of the three, the least-squares slope over the last
//! `--window-minutes` must be under 1% of its mean level per 10 minutes,
//! and no request may have failed (a failure the healthy fallback could
//! have served). The samples, slopes and verdict go to
//! `bench/results/soak.json` and a plot to `bench/results/soak.svg`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proc::{self, Guard};
use crate::run::{bench_dir, pointsman_config, repo_dir};

const USAGE: &str = "pointsman-bench soak [OPTIONS]

  --minutes M          how long to run (default 60)
  --sample-seconds S   sampling interval (default 60)
  --window-minutes W   the slope is fitted over the last W minutes (default 40;
                       at most the run's last two thirds)
  --clients N          client threads (default 4)
  --pace-ms P          pause of each client between requests (default 20)
  --swap-seconds S     router policy hot-swap interval (default 5)
  --pointsman PATH     the daemon binary (default: <target>/release/pointsman)
  --policy PATH        the seed-matrix.wasm to swap in (default: found in the
                       daemon's build output)
";

struct Options {
    minutes: f64,
    sample: Duration,
    window_minutes: f64,
    clients: usize,
    pace: Duration,
    swap: Duration,
    pointsman: PathBuf,
    policy: Option<PathBuf>,
}

fn options(args: &[String]) -> crate::Result<Options> {
    let target_dir = std::env::var_os("POINTSMAN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target"));
    let mut o = Options {
        minutes: 60.0,
        sample: Duration::from_secs(60),
        window_minutes: 40.0,
        clients: 4,
        pace: Duration::from_millis(20),
        swap: Duration::from_secs(5),
        pointsman: target_dir.join("release/pointsman"),
        policy: None,
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
            "--minutes" => o.minutes = value()?.parse()?,
            "--sample-seconds" => o.sample = Duration::from_secs_f64(value()?.parse()?),
            "--window-minutes" => o.window_minutes = value()?.parse()?,
            "--clients" => o.clients = value()?.parse()?,
            "--pace-ms" => o.pace = Duration::from_millis(value()?.parse()?),
            "--swap-seconds" => o.swap = Duration::from_secs_f64(value()?.parse()?),
            "--pointsman" => o.pointsman = value()?.into(),
            "--policy" => o.policy = Some(value()?.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}").into()),
        }
    }
    Ok(o)
}

/// The seed router's module as the daemon's build wrote it.
fn find_policy(o: &Options) -> crate::Result<PathBuf> {
    if let Some(p) = &o.policy {
        return Ok(p.clone());
    }
    let profile = o.pointsman.parent().ok_or("no daemon folder")?;
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(profile.join("build"))? {
        let dir = entry?.path();
        let wasm = dir.join("out/seed-matrix.wasm");
        if dir.to_string_lossy().contains("pointsman-") && wasm.exists() {
            found.push((wasm.metadata()?.modified()?, wasm));
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| "no seed-matrix.wasm in the daemon's build output: pass --policy".into())
}

/// `module` with a custom section telling variant `n` apart: a distinct
/// module (hash) with the same behaviour.
fn variant(module: &[u8], n: u8) -> Vec<u8> {
    let name = b"pointsman-soak";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.push(n);
    let mut out = module.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128 size (< 128)
    out.extend_from_slice(&section);
    out
}

fn spawn_upstream(extra: &[&str]) -> crate::Result<(Guard, SocketAddr)> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["upstream", "--listen", "127.0.0.1:0"])
        .args(extra);
    let mut child = proc::spawn(command.stdout(Stdio::piped()).stderr(Stdio::inherit()))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("the upstream said {line:?}"))?
        .parse()?;
    Ok((
        Guard {
            child,
            name: "upstream".into(),
        },
        addr,
    ))
}

/// One kind of request of the mix.
#[derive(Clone, Copy, Debug)]
enum Kind {
    OpenAiPlain,
    OpenAiStream,
    AnthropicPlain,
    AnthropicStream,
    Planned,
    Task,
}

const MIX: [Kind; 10] = [
    Kind::OpenAiPlain,
    Kind::OpenAiStream,
    Kind::AnthropicPlain,
    Kind::AnthropicStream,
    Kind::OpenAiPlain,
    Kind::OpenAiStream,
    Kind::AnthropicPlain,
    Kind::AnthropicStream,
    Kind::Planned,
    Kind::Task,
];

const DIRECT: &str = "Fix the off-by-one bug in the parser";
const PLANNED: &str = "Design the architecture of a plugin system across multiple modules";

/// Planned requests sent so far: each run of [`PLANS_PER_SESSION`] shares
/// one agent session, so the daemon makes a plan for the first and serves
/// the cached one to the rest, and sessions keep coming (the plan cache's
/// bounds are under test too).
static PLANNED_SENT: AtomicU64 = AtomicU64::new(0);
const PLANS_PER_SESSION: u64 = 8;

/// Sends one request of `kind`; `Err` says how it failed.
fn one(addr: SocketAddr, kind: Kind) -> Result<(), String> {
    let timeout = Duration::from_secs(30);
    let (path, body, stream_end) = match kind {
        Kind::OpenAiPlain | Kind::Planned => (
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user",
                "content": if matches!(kind, Kind::Planned) { PLANNED } else { DIRECT }}]}),
            None,
        ),
        Kind::OpenAiStream => (
            "/v1/chat/completions",
            json!({"model": "auto", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": DIRECT}]}),
            Some("[DONE]"),
        ),
        Kind::AnthropicPlain | Kind::AnthropicStream => (
            "/v1/messages",
            json!({"model": "auto", "max_tokens": 128,
                   "stream": matches!(kind, Kind::AnthropicStream),
                   "messages": [{"role": "user", "content": DIRECT}]}),
            matches!(kind, Kind::AnthropicStream).then_some("event: message_stop"),
        ),
        Kind::Task => return task(addr),
    };
    let session = matches!(kind, Kind::Planned).then(|| {
        let n = PLANNED_SENT.fetch_add(1, Ordering::Relaxed);
        format!("soak-{}", n / PLANS_PER_SESSION)
    });
    let headers: Vec<(&str, &str)> = session
        .iter()
        .map(|s| ("x-pointsman-session", s.as_str()))
        .collect();
    let answer = proc::post_with(addr, path, &body.to_string(), &headers, timeout)
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!(
            "{kind:?}: HTTP {}: {}",
            answer.status,
            cut(&answer.body)
        ));
    }
    if let Some(end) = stream_end
        && (!answer.body.contains(end) || answer.body.contains("\"error\""))
    {
        return Err(format!(
            "{kind:?}: the stream did not end well: {}",
            cut(&answer.body)
        ));
    }
    // The upstream answers the planner with a valid plan: a planned request
    // served without one is a failure of the plan path.
    if matches!(kind, Kind::Planned)
        && !matches!(answer.header("x-pointsman-plan"), Some("new" | "cached"))
    {
        return Err(format!(
            "{kind:?}: served without a plan ({:?}: {:?})",
            answer.header("x-pointsman-plan"),
            answer.header("x-pointsman-plan-error")
        ));
    }
    Ok(())
}

/// Submits a task routed direct and follows it to its end.
fn task(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(30);
    let body = json!({"title": "Parser", "description": DIRECT}).to_string();
    let answer = proc::post(addr, "/v1/tasks", &body, timeout).map_err(|e| e.to_string())?;
    if answer.status != 202 {
        return Err(format!(
            "task: HTTP {}: {}",
            answer.status,
            cut(&answer.body)
        ));
    }
    let record: Value = serde_json::from_str(&answer.body).map_err(|e| e.to_string())?;
    let id = record["id"].as_str().ok_or("task without id")?.to_string();
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        let answer =
            proc::get(addr, &format!("/v1/tasks/{id}"), timeout).map_err(|e| e.to_string())?;
        let record: Value = serde_json::from_str(&answer.body).map_err(|e| e.to_string())?;
        match record["status"].as_str() {
            Some("queued" | "planning" | "running") => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Some("succeeded") => return Ok(()),
            other => return Err(format!("task ended {other:?}: {}", cut(&answer.body))),
        }
    }
    Err("task did not end in 30 s".into())
}

fn cut(text: &str) -> String {
    text.chars().take(300).collect()
}

/// One series of the samples.
type Metric = fn(&Sample) -> f64;

/// One sample of the daemon.
#[derive(Clone, Copy)]
struct Sample {
    minute: f64,
    rss_kib: f64,
    fds: f64,
    tasks: f64,
    requests: u64,
    failed: u64,
}

/// The median of five reads 100 ms apart: fds and tasks count the
/// requests in flight at the instant of a read, and one read a minute made
/// the slope hinge on single samples.
fn median(read: impl Fn() -> f64) -> f64 {
    let mut reads: Vec<f64> = (0..5)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            read()
        })
        .collect();
    reads.sort_by(f64::total_cmp);
    reads[2]
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

fn open_fds(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(f64::NAN, |d| d.count() as f64)
}

fn alive_tasks(addr: SocketAddr) -> f64 {
    proc::get(addr, "/metrics", Duration::from_secs(10))
        .ok()
        .and_then(|a| {
            a.body
                .lines()
                .find(|l| l.starts_with("pointsman_runtime_alive_tasks"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

pub fn main(args: &[String]) -> crate::Result<()> {
    let o = options(args)?;
    let policy = std::fs::read(find_policy(&o)?)?;
    let work = bench_dir().join(".work/soak");
    let _ = std::fs::remove_dir_all(&work);
    let policies = work.join("policies");
    std::fs::create_dir_all(&policies)?;

    let (_upstream, upstream) = spawn_upstream(&[])?;
    let (_faulty, faulty) = spawn_upstream(&["--fail-every", "5", "--fail-status", "500"])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // A fresh ledger in the work folder (removed above): never the user's.
    let config = pointsman_config(port, upstream, Some(faulty)).replace(
        "[policies]\n",
        &format!("[policies]\ndir = \"{}\"\n", policies.display()),
    ) + &format!(
        "\n[ledger]\nurl = \"sqlite:{}\"\n",
        work.join("ledger.db").display()
    );
    let config_path = work.join("pointsman.toml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(work.join("pointsman.log"))?;
    let mut daemon = Guard {
        child: proc::spawn(
            Command::new(&o.pointsman)
                .args(["serve", "--config"])
                .arg(&config_path)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )?,
        name: "pointsman".into(),
    };
    let pid = daemon.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ready = Instant::now() + Duration::from_secs(120);
    while one(addr, Kind::OpenAiPlain).is_err() {
        if Instant::now() > ready || daemon.exited().is_some() {
            return Err(format!(
                "the daemon did not start: see {}",
                work.join("pointsman.log").display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "soak: {} min, {} clients every {:?}, policy swap every {:?}, sample every {:?} (daemon pid {pid}, {addr})",
        o.minutes, o.clients, o.pace, o.swap, o.sample
    );

    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut threads = Vec::new();
    for client in 0..o.clients {
        let (stop, requests, failed, failures) = (
            stop.clone(),
            requests.clone(),
            failed.clone(),
            failures.clone(),
        );
        let pace = o.pace;
        threads.push(std::thread::spawn(move || {
            let mut i = client;
            while !stop.load(Ordering::Relaxed) {
                let kind = MIX[i % MIX.len()];
                i += 1;
                requests.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = one(addr, kind) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    let mut f = failures.lock().unwrap();
                    if f.len() < 20 {
                        f.push(e);
                    }
                }
                std::thread::sleep(pace);
            }
        }));
    }
    let swaps = Arc::new(AtomicU64::new(0));
    threads.push({
        let (stop, swaps, policies, swap) = (stop.clone(), swaps.clone(), policies.clone(), o.swap);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(swap);
                let n = swaps.fetch_add(1, Ordering::Relaxed);
                let tmp = policies.join("seed-matrix.wasm.tmp");
                if std::fs::write(&tmp, variant(&policy, (n % 4) as u8)).is_ok() {
                    let _ = std::fs::rename(&tmp, policies.join("seed-matrix.wasm"));
                }
            }
        })
    });

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(o.minutes * 60.0);
    let mut samples = Vec::new();
    println!("minute   RSS MiB   fds   tasks   requests   failed   swaps");
    loop {
        let sample = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss_kib: median(|| rss_kib(pid)),
            fds: median(|| open_fds(pid)),
            tasks: median(|| alive_tasks(addr)),
            requests: requests.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
        };
        println!(
            "{:6.1}   {:7.1}   {:3}   {:5}   {:8}   {:6}   {:5}",
            sample.minute,
            sample.rss_kib / 1024.0,
            sample.fds,
            sample.tasks,
            sample.requests,
            sample.failed,
            swaps.load(Ordering::Relaxed)
        );
        samples.push(sample);
        if daemon.exited().is_some() {
            return Err("the daemon exited during the soak".into());
        }
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(o.sample.min(end.saturating_duration_since(Instant::now())));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }

    // The fit window: the last `window_minutes`, at most the run's last
    // two thirds (the start is warm-up: caches, pools, compiled modules).
    let total = samples.last().map_or(0.0, |s| s.minute);
    let window = o.window_minutes.min(total * 2.0 / 3.0);
    let fitted: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.minute >= total - window)
        .collect();
    let mut verdicts = Vec::new();
    let mut pass = true;
    for (name, get) in [
        ("rss_kib", (|s: &Sample| s.rss_kib) as Metric),
        ("open_fds", |s: &Sample| s.fds),
        ("alive_tasks", |s: &Sample| s.tasks),
    ] {
        let points: Vec<(f64, f64)> = fitted.iter().map(|s| (s.minute, get(s))).collect();
        let level = points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64;
        let per_10_min = slope(&points) * 10.0;
        let share = if level > 0.0 { per_10_min / level } else { 0.0 };
        let ok = points.len() >= 3 && share < 0.01;
        pass &= ok;
        println!(
            "{name}: level {level:.1}, slope {per_10_min:+.2} per 10 min ({:+.3}% of the level) over the last {window:.1} min ({} samples): {}",
            share * 100.0,
            points.len(),
            if ok { "ok" } else { "FAIL" }
        );
        verdicts.push(
            json!({"metric": name, "level": level, "slope_per_10_min": per_10_min,
                             "share_per_10_min": share, "samples": points.len(), "ok": ok}),
        );
    }
    let done = requests.load(Ordering::Relaxed);
    let bad = failed.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap().clone();
    println!(
        "requests: {done}, failed: {bad}, policy swaps: {}",
        swaps.load(Ordering::Relaxed)
    );
    for f in &failures {
        println!("  failure: {f}");
    }
    pass &= bad == 0;
    println!("soak: {}", if pass { "PASS" } else { "FAIL" });

    let results = bench_dir().join("results");
    std::fs::create_dir_all(&results)?;
    let report = json!({
        "minutes": o.minutes, "clients": o.clients, "pace_ms": o.pace.as_millis() as u64,
        "swap_seconds": o.swap.as_secs_f64(), "window_minutes": window,
        "requests": done, "failed": bad, "failures": failures,
        "swaps": swaps.load(Ordering::Relaxed), "pass": pass, "verdicts": verdicts,
        "samples": samples.iter().map(|s| json!({"minute": s.minute, "rss_kib": s.rss_kib,
            "open_fds": s.fds, "alive_tasks": s.tasks, "requests": s.requests,
            "failed": s.failed})).collect::<Vec<_>>(),
    });
    std::fs::write(
        results.join("soak.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(results.join("soak.svg"), plot(&samples))?;
    eprintln!("wrote {} and soak.svg", results.join("soak.json").display());
    if pass {
        Ok(())
    } else {
        Err("the soak criteria failed".into())
    }
}

/// Three stacked line plots (RSS, fds, tasks) over minutes, as SVG.
fn plot(samples: &[Sample]) -> String {
    let (w, h, pad) = (720.0, 160.0, 40.0);
    let total = samples.last().map_or(1.0, |s| s.minute.max(1e-9));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n",
        3.0 * h
    );
    let series: [(&str, Metric); 3] = [
        ("RSS (MiB)", |s| s.rss_kib / 1024.0),
        ("open file descriptors", |s| s.fds),
        ("live Tokio tasks", |s| s.tasks),
    ];
    for (row, (name, get)) in series.iter().enumerate() {
        let top = row as f64 * h;
        let values: Vec<f64> = samples.iter().map(get).collect();
        let max = values.iter().cloned().fold(0.0_f64, f64::max).max(1e-9) * 1.1;
        let points: Vec<String> = samples
            .iter()
            .zip(&values)
            .map(|(s, v)| {
                let x = pad + (w - 2.0 * pad) * s.minute / total;
                let y = top + h - pad / 2.0 - (h - pad) * v / max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        svg.push_str(&format!(
            "<text x=\"{pad}\" y=\"{:.0}\">{name}: 0 to {max:.1}, over {total:.1} min</text>\n\
             <rect x=\"{pad}\" y=\"{:.0}\" width=\"{:.0}\" height=\"{:.0}\" fill=\"none\" stroke=\"#ccc\"/>\n\
             <polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            top + 14.0,
            top + pad / 2.0,
            w - 2.0 * pad,
            h - pad,
            points.join(" ")
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
