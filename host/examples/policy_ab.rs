//! Compares router modules call for call: A/B timing of policy builds on one
//! engine, in one process, so that a noisy machine affects both alike.
//!
//!     cargo run --release -p pointsman --example policy_ab -- \
//!         old=target/old/seed-matrix-js.wasm new=target/policies/seed-matrix-js.wasm
//!
//! Each module routes the two requests of `benches/policy_route.rs`: the
//! one-message request of `route/*` and the largest view of `route-max/*`
//! (16 user messages of 2,000 bytes); and `route-bare`, a request with no
//! message (a floor router's fixed cost per call). Rounds alternate between the modules;
//! the median and minimum of the per-round means are printed. The call
//! deadline is 5 s, so slow calls are timed rather than cut off.
//!
//! Options (before the modules):
//! - `--rounds N`: rounds per request (default 15).
//! - `--catalog N`: keep only the first N models of the demo catalog (0 shows
//!   what lifting the catalog costs a guest, with a router that ignores it).
//! - `--cases FILE`: instead of timing, route every case of a
//!   `pointsman policy test` table with each module and print whether the
//!   full answers (reasoning and errors included) are identical.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pointsman::config::Config;
use pointsman::features;
use pointsman::policy::types::{Features, Message, ModelInfo, WireApi};
use pointsman::policy::{Limits, PolicyEngine, PolicyModule};
use pointsman::provider::Format;
use serde_json::Value;
use tokio::runtime::Runtime;

fn request(messages: Vec<Message>, input_tokens: u32) -> Features {
    Features {
        id: "ab".into(),
        api: WireApi::OpenaiChat,
        requested_model: "auto".into(),
        message_count: messages.len() as u32,
        messages,
        input_tokens,
        max_output_tokens: None,
        tool_count: 0,
        labels: Vec::new(),
        session: None,
        ..Features::default()
    }
}

/// The requests of `route/*` and `route-max/*`, and `route-bare`: no
/// message at all, so that a floor router's time on it is the call's fixed
/// cost (entry, the health list, the answer) without lifting a message.
fn requests() -> [(&'static str, Features, u32); 3] {
    const SENTENCE: &str = "Fix the failing test in the parser module. ";
    let small = request(
        vec![Message {
            role: "user".into(),
            content: "Fix the failing test in the parser module".into(),
        }],
        9,
    );
    let text = SENTENCE.repeat(2000 / SENTENCE.len() + 1)[..2000].to_string();
    let message = Message {
        role: "user".into(),
        content: text,
    };
    let largest = request(vec![message; 16], 16 * 400);
    // Calls per round: enough to dwarf the timer, few enough for many rounds.
    let bare = request(Vec::new(), 0);
    [
        ("route", small, 200),
        ("route-max", largest, 3),
        ("route-bare", bare, 200),
    ]
}

struct Options {
    rounds: usize,
    catalog: Option<usize>,
    cases: Option<String>,
    modules: Vec<(String, String)>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        rounds: 15,
        catalog: None,
        cases: None,
        modules: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => options.rounds = args.next().context("--rounds N")?.parse()?,
            "--catalog" => options.catalog = Some(args.next().context("--catalog N")?.parse()?),
            "--cases" => options.cases = Some(args.next().context("--cases FILE")?),
            module => {
                let (label, path) = module
                    .split_once('=')
                    .with_context(|| format!("{module}: expected LABEL=PATH"))?;
                options.modules.push((label.into(), path.into()));
            }
        }
    }
    if options.modules.is_empty() || options.rounds == 0 {
        bail!("usage: policy_ab [--rounds N] [--catalog N] [--cases FILE] LABEL=MODULE.wasm ...");
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let config = Config::demo();
    let mut catalog = pointsman::policy::catalog(&config);
    if let Some(n) = options.catalog {
        catalog.truncate(n);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let limits = Limits {
        call_deadline: Duration::from_secs(5),
        ..Limits::default()
    };
    let cache = tempfile::tempdir()?;
    let engine = PolicyEngine::new(limits, Some(cache.path().to_path_buf()))?;
    let mut modules = Vec::new();
    for (label, path) in &options.modules {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        let module = engine
            .load(label, &bytes)
            .with_context(|| format!("cannot load {path}"))?;
        modules.push((label.as_str(), module));
    }
    match &options.cases {
        Some(cases) => compare_cases(&rt, &config, &modules, cases),
        None => {
            time(&rt, &catalog, &modules, options.rounds);
            Ok(())
        }
    }
}

fn time(rt: &Runtime, catalog: &[ModelInfo], modules: &[(&str, PolicyModule)], rounds: usize) {
    for (name, features, calls) in requests() {
        for (label, module) in modules {
            match rt.block_on(module.route(&features, catalog)) {
                Ok(route) => println!("{name} {label}: {:?} {}", route.tier, route.reasoning),
                Err(e) => println!("{name} {label}: {e}"),
            }
        }
        let mut means: Vec<Vec<f64>> = vec![Vec::new(); modules.len()];
        for _ in 0..rounds {
            for (i, (_, module)) in modules.iter().enumerate() {
                let elapsed = rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..calls {
                        let route = module.route(&features, catalog).await;
                        std::hint::black_box(route.ok());
                    }
                    started.elapsed()
                });
                means[i].push(elapsed.as_secs_f64() * 1e6 / f64::from(calls));
            }
        }
        for ((label, _), means) in modules.iter().zip(&mut means) {
            means.sort_by(f64::total_cmp);
            println!(
                "{name:10} {label:20} median {:10.1} µs   min {:10.1} µs",
                means[means.len() / 2],
                means[0]
            );
        }
    }
}

fn compare_cases(
    rt: &Runtime,
    config: &Config,
    modules: &[(&str, PolicyModule)],
    cases: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(cases).with_context(|| format!("cannot read {cases}"))?;
    let (mut same, mut differ) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line)?;
        // As `pointsman policy test` adjusts the catalog for a case.
        let mut catalog = pointsman::policy::catalog(config);
        for model in catalog.iter_mut() {
            if let Some(down) = case["unavailable"].as_array()
                && down.iter().any(|id| id.as_str() == Some(&model.id))
            {
                model.available = false;
            }
            if let Some(window) = case["context_windows"][&model.id].as_u64() {
                model.context_window = window as u32;
            }
        }
        // As `pointsman policy test` reads a case's request.
        let format = match case["api"].as_str() {
            Some("anthropic") => Format::Anthropic,
            _ => Format::OpenAi,
        };
        let features = features::from_json(format, &case["request"], Default::default())
            .map_err(|e| anyhow::anyhow!("{}: {e}", case["name"]))?;
        let answers: Vec<String> = modules
            .iter()
            .map(|(_, m)| format!("{:?}", rt.block_on(m.route(&features, &catalog))))
            .collect();
        if answers.iter().all(|a| a == &answers[0]) {
            same += 1;
            println!("same {}: {}", case["name"], answers[0]);
        } else {
            differ += 1;
            println!("DIFF {}:", case["name"]);
            for ((label, _), answer) in modules.iter().zip(&answers) {
                println!("  {label}: {answer}");
            }
        }
    }
    println!("{same} cases answered identically, {differ} differently");
    if differ > 0 {
        bail!("the modules disagree");
    }
    Ok(())
}
