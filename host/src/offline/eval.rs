//! `pointsman eval`: what a router costs in quality on labelled prompts.
//!
//! Each line of the data is `{"prompt": "...", "outcomes": {"<key>": true |
//! false | score}}`. Each prompt becomes a one-user-message chat request,
//! its features extracted as the gateway extracts them, and is routed by the
//! policy in the daemon's sandbox. A route is a strong call when it is
//! planned or its executor has the `premium` role (see
//! [`routing::is_strong`]); it then scores the `--strong` outcome, else the
//! `--weak` one. A policy call that fails is counted and scored as the safe
//! route the daemon would serve.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use serde::Serialize;
use serde_json::Value;

use super::input::{self, Malformed};
use super::routing::{self, Routed, Router};
use super::sweep::{self, Point, Sweep};
use super::{OutputFormat, csv_field, percent};
use crate::features::{self, RequestContext};
use crate::policy::types::{Features, ModelInfo};
use crate::provider::wire::openai;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The labelled data.
    pub data: PathBuf,
    /// The outcome key of the strong model.
    pub strong: String,
    /// The outcome key of the weak model.
    pub weak: String,
    /// Refuse the file if any line is malformed.
    pub strict: bool,
    /// A label swept over a range.
    pub sweep: Option<Sweep>,
    /// How to print.
    pub format: OutputFormat,
}

/// One usable labelled prompt.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// Its line.
    pub line: usize,
    /// The prompt.
    pub prompt: String,
    /// The strong model's outcome (true is 1, false 0).
    pub strong: f64,
    /// The weak model's outcome.
    pub weak: f64,
}

/// The usable prompts of a file and the lines that were not.
#[derive(Debug)]
pub struct Dataset {
    /// Usable prompts, in file order.
    pub items: Vec<Labelled>,
    /// Lines left out, with why.
    pub malformed: Vec<Malformed>,
}

/// Reads and checks labelled data: an empty file, or a `--strong` or
/// `--weak` key that no line has, is an error; a malformed line is left out
/// and reported (an error with `strict`).
pub fn load(opts: &EvalOptions) -> anyhow::Result<Dataset> {
    let path = &opts.data;
    if opts.strong == opts.weak {
        bail!("--strong and --weak both name {:?}", opts.strong);
    }
    let lines = input::read_lines(path)?;
    if lines.is_empty() {
        bail!(
            "{}: no labelled prompts (the file is empty)",
            path.display()
        );
    }
    let mut keys = BTreeSet::new();
    let mut items = Vec::new();
    let mut malformed = Vec::new();
    for line in lines {
        match line
            .text
            .and_then(|t| parse_line(&t, &opts.strong, &opts.weak, &mut keys))
        {
            Ok((prompt, strong, weak)) => items.push(Labelled {
                line: line.number,
                prompt,
                strong,
                weak,
            }),
            Err(reason) => malformed.push(Malformed {
                line: line.number,
                reason,
            }),
        }
    }
    for (flag, key) in [("--strong", &opts.strong), ("--weak", &opts.weak)] {
        if !keys.contains(key.as_str()) {
            let seen: Vec<&str> = keys.iter().map(String::as_str).take(20).collect();
            bail!(
                "{}: {flag} {key:?} is not an outcome key of any line (keys found: {})",
                path.display(),
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            );
        }
    }
    if !malformed.is_empty() {
        let summary = input::describe_malformed(path, &malformed);
        if opts.strict {
            bail!("{summary} (--strict)");
        }
        eprintln!(
            "warning: {summary}; scoring the other {} line(s)",
            items.len()
        );
    }
    if items.is_empty() {
        bail!("{}: no usable labelled prompt", path.display());
    }
    Ok(Dataset { items, malformed })
}

fn parse_line(
    text: &str,
    strong: &str,
    weak: &str,
    keys: &mut BTreeSet<String>,
) -> Result<(String, f64, f64), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let Some(outcomes) = value["outcomes"].as_object() else {
        return Err("no \"outcomes\" object".into());
    };
    for key in outcomes.keys() {
        if keys.len() < 1_000 {
            keys.insert(key.clone());
        }
    }
    let Some(prompt) = value["prompt"].as_str() else {
        return Err("no \"prompt\" string".into());
    };
    let score = |key: &str| match outcomes.get(key) {
        None => Err(format!("outcomes has no {key:?}")),
        Some(Value::Bool(b)) => Ok(if *b { 1.0 } else { 0.0 }),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("outcomes.{key} is not a finite number")),
        Some(_) => Err(format!("outcomes.{key} is not true, false or a number")),
    };
    Ok((prompt.to_string(), score(strong)?, score(weak)?))
}

/// The features the gateway extracts from a one-user-message chat request
/// asking `prompt`, with `labels` as the operator's.
pub fn prompt_features(line: usize, prompt: &str, labels: &[(String, String)]) -> Features {
    let request = openai::ChatRequest {
        model: "auto".into(),
        messages: vec![openai::ChatMessage::User(openai::UserMessage {
            content: prompt.into(),
            name: None,
            extra: Default::default(),
        })],
        ..openai::ChatRequest::default()
    };
    let ctx = RequestContext {
        id: format!("line-{line}"),
        labels: labels.to_vec(),
        session: None,
    };
    features::from_openai(&request, ctx)
}

/// The best any router could do on the data: strong only where the weak
/// model does worse.
#[derive(Debug, Clone, Serialize)]
pub struct Oracle {
    /// Share of strong calls.
    pub strong_share: f64,
    /// Its quality.
    pub quality: f64,
    /// Its PGR.
    pub pgr: Option<f64>,
}

/// A router's scores on a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    /// Prompts scored.
    pub prompts: usize,
    /// Strong calls.
    pub strong_calls: usize,
    /// Strong calls over prompts.
    pub strong_share: f64,
    /// Mean outcome of the model each route chose.
    pub quality: f64,
    /// Quality of sending everything to the strong model.
    pub strong_only: f64,
    /// Quality of sending everything to the weak model.
    pub weak_only: f64,
    /// `quality / strong_only`.
    pub quality_vs_strong_only: Option<f64>,
    /// The random router's quality at the same strong share.
    pub random_at_same_share: f64,
    /// `(quality - weak_only) / (strong_only - weak_only)`.
    pub pgr: Option<f64>,
    /// The oracle's bound.
    pub oracle: Oracle,
    /// Prompts whose policy call failed, by kind (scored on the safe route).
    pub failures: BTreeMap<String, usize>,
}

/// Scores `routed` (one per item, in order).
pub fn score(items: &[Labelled], routed: &[Routed], catalog: &[ModelInfo]) -> Scores {
    let n = items.len().max(1) as f64;
    let mut strong_calls = 0;
    let mut quality = 0.0;
    let (mut strong_only, mut weak_only) = (0.0, 0.0);
    let (mut oracle_calls, mut oracle_quality) = (0, 0.0);
    for (item, r) in items.iter().zip(routed) {
        let strong = routing::is_strong(&r.route, catalog);
        strong_calls += usize::from(strong);
        quality += if strong { item.strong } else { item.weak };
        strong_only += item.strong;
        weak_only += item.weak;
        if item.strong > item.weak {
            oracle_calls += 1;
            oracle_quality += item.strong;
        } else {
            oracle_quality += item.weak;
        }
    }
    let (quality, strong_only, weak_only) = (quality / n, strong_only / n, weak_only / n);
    let strong_share = strong_calls as f64 / n;
    let pgr = |q: f64| {
        let gap = strong_only - weak_only;
        (gap.abs() > 1e-12).then(|| (q - weak_only) / gap)
    };
    let oracle_quality = oracle_quality / n;
    Scores {
        prompts: items.len(),
        strong_calls,
        strong_share,
        quality,
        strong_only,
        weak_only,
        quality_vs_strong_only: (strong_only.abs() > 1e-12).then(|| quality / strong_only),
        random_at_same_share: weak_only + strong_share * (strong_only - weak_only),
        pgr: pgr(quality),
        oracle: Oracle {
            strong_share: oracle_calls as f64 / n,
            quality: oracle_quality,
            pgr: pgr(oracle_quality),
        },
        failures: routing::failures_by_kind(routed),
    }
}

/// Everything `pointsman eval` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The policy, `name@hash`.
    pub policy: String,
    /// The data file.
    pub data: String,
    /// The strong key.
    pub strong: String,
    /// The weak key.
    pub weak: String,
    /// Lines left out.
    pub malformed: Vec<Malformed>,
    /// Scores without the sweep label.
    pub scores: Scores,
    /// The sweep, if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepReport>,
}

/// A sweep's curve and summary.
#[derive(Debug, Serialize)]
pub struct SweepReport {
    /// The label swept.
    pub label: String,
    /// One point per value.
    pub points: Vec<Point>,
    /// APGR and CPT.
    #[serde(flatten)]
    pub summary: sweep::Summary,
}

/// Runs `pointsman eval` and returns what it prints.
pub async fn run(router: &Router, opts: &EvalOptions) -> anyhow::Result<String> {
    let data = load(opts)?;
    let requests = |labels: &[(String, String)]| {
        Arc::new(
            data.items
                .iter()
                .map(|item| prompt_features(item.line, &item.prompt, labels))
                .collect::<Vec<_>>(),
        )
    };
    let routed = router.route_all(requests(&[]), "eval").await;
    let scores = score(&data.items, &routed, &router.catalog);
    let sweep = match &opts.sweep {
        Some(sweep) => {
            let mut points = Vec::with_capacity(sweep.values.len());
            for value in &sweep.values {
                let labels = [(sweep.label.clone(), value.clone())];
                let what = format!("eval {}={value}", sweep.label);
                let routed = router.route_all(requests(&labels), &what).await;
                let s = score(&data.items, &routed, &router.catalog);
                points.push(Point {
                    value: value.clone(),
                    strong_share: s.strong_share,
                    quality: s.quality,
                    pgr: s.pgr,
                    failures: s.failures.values().sum(),
                });
            }
            Some(SweepReport {
                label: sweep.label.clone(),
                summary: sweep::summarize(&points),
                points,
            })
        }
        None => None,
    };
    let report = Report {
        policy: router.module.info.id(),
        data: opts.data.display().to_string(),
        strong: opts.strong.clone(),
        weak: opts.weak.clone(),
        malformed: data.malformed,
        scores,
        sweep,
    };
    Ok(match opts.format {
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        OutputFormat::Table => table(&report),
        OutputFormat::Csv => csv(&report),
    })
}

fn opt_percent(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), percent)
}

fn table(r: &Report) -> String {
    let s = &r.scores;
    let failures: usize = s.failures.values().sum();
    let kinds: Vec<String> = s.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let mut out = format!(
        "policy:                 {}\n\
         data:                   {} (strong {:?}, weak {:?})\n\
         prompts:                {} ({} malformed line(s) left out)\n\
         strong calls:           {} ({})\n\
         quality:                {}\n\
         strong only:            {}\n\
         weak only:              {}\n\
         quality / strong only:  {}\n\
         random router, same share: {}\n\
         PGR:                    {}\n\
         oracle:                 {} at {} strong (PGR {})\n\
         policy failures:        {}{}\n",
        r.policy,
        r.data,
        r.strong,
        r.weak,
        s.prompts,
        r.malformed.len(),
        s.strong_calls,
        percent(s.strong_share),
        percent(s.quality),
        percent(s.strong_only),
        percent(s.weak_only),
        opt_percent(s.quality_vs_strong_only),
        percent(s.random_at_same_share),
        opt_percent(s.pgr),
        percent(s.oracle.quality),
        percent(s.oracle.strong_share),
        opt_percent(s.oracle.pgr),
        failures,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({}; served the safe route)", kinds.join(", "))
        },
    );
    if let Some(sweep) = &r.sweep {
        out.push_str(&format!(
            "\nsweep of {}:\n{:>12}  {:>12}  {:>8}  {:>8}  {:>8}\n",
            sweep.label, "value", "strong share", "quality", "PGR", "failures"
        ));
        for p in &sweep.points {
            out.push_str(&format!(
                "{:>12}  {:>12}  {:>8}  {:>8}  {:>8}\n",
                p.value,
                percent(p.strong_share),
                percent(p.quality),
                opt_percent(p.pgr),
                p.failures
            ));
        }
        let summary = &sweep.summary;
        out.push_str(&format!(
            "APGR: {}   CPT(50%): {}   CPT(80%): {}\n",
            opt_percent(summary.apgr),
            summary.cpt50.map_or("not reached".into(), percent),
            summary.cpt80.map_or("not reached".into(), percent),
        ));
    }
    out
}

fn csv(r: &Report) -> String {
    if let Some(sweep) = &r.sweep {
        let mut out = format!(
            "{},strong_share,quality,pgr,failures\n",
            csv_field(&sweep.label)
        );
        for p in &sweep.points {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                p.value,
                p.strong_share,
                p.quality,
                p.pgr.map_or(String::new(), |g| g.to_string()),
                p.failures
            ));
        }
        return out;
    }
    let s = &r.scores;
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let rows = [
        ("prompts", s.prompts.to_string()),
        ("malformed_lines", r.malformed.len().to_string()),
        ("strong_calls", s.strong_calls.to_string()),
        ("strong_share", s.strong_share.to_string()),
        ("quality", s.quality.to_string()),
        ("strong_only", s.strong_only.to_string()),
        ("weak_only", s.weak_only.to_string()),
        ("quality_vs_strong_only", opt(s.quality_vs_strong_only)),
        ("random_at_same_share", s.random_at_same_share.to_string()),
        ("pgr", opt(s.pgr)),
        ("oracle_strong_share", s.oracle.strong_share.to_string()),
        ("oracle_quality", s.oracle.quality.to_string()),
        ("oracle_pgr", opt(s.oracle.pgr)),
        ("failures", s.failures.values().sum::<usize>().to_string()),
    ];
    let mut out = String::from("metric,value\n");
    for (k, v) in rows {
        out.push_str(&format!("{k},{v}\n"));
    }
    out
}
