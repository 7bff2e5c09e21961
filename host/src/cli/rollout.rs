//! `pointsman rollout …`: the rollout admin API from the command line. The
//! daemon's address is `--url`; the admin key, when one is set, is read
//! from `POINTSMAN_ADMIN_KEY` (never a flag: flags show in `ps`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// `pointsman rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The daemon's address.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Print the daemon's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Start rolling out a candidate router or planner next to the one
    /// serving now.
    Start {
        /// The candidate router module.
        #[arg(long, conflicts_with = "planner", required_unless_present = "planner")]
        router: Option<String>,
        /// The candidate planner module.
        #[arg(long)]
        planner: Option<String>,
        /// Candidate shares in percent, strictly increasing.
        #[arg(long, value_delimiter = ',', default_value = "10,50,95")]
        steps: Vec<u8>,
        /// Least time at each step (`1h`, `30m`, `45s`); default `[rollouts] hold`.
        #[arg(long)]
        hold: Option<String>,
        /// Least candidate requests at a step, and per arm before a guard
        /// judges; default `[rollouts] min_requests`.
        #[arg(long)]
        min_requests: Option<u64>,
        /// Start in shadow mode: the candidate decides every request, is
        /// recorded, serves none (`promote` starts the first step).
        #[arg(long)]
        shadow: bool,
    },
    /// Every rollout on record, its step, share and history.
    Status,
    /// Out of shadow to the first step; to the next step; at the last
    /// step, retire the stable policy.
    Promote {
        /// `router` or `planner` (default: the one running).
        kind: Option<String>,
    },
    /// Stop: the stable policy serves everything.
    Abort {
        /// `router` or `planner` (default: the one running).
        kind: Option<String>,
    },
    /// What the shadow candidate would have changed.
    Diff {
        /// `router` (default) or `planner`.
        kind: Option<String>,
        /// From (`24h`, a date, …; default: the rollout's start).
        #[arg(long)]
        since: Option<String>,
        /// To (default: now).
        #[arg(long)]
        until: Option<String>,
    },
}

struct Daemon {
    url: String,
    http: reqwest::Client,
    key: Option<String>,
}

impl Daemon {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(bool, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the daemon at {}", self.url))?;
        let ok = response.status().is_success();
        let text = response.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((ok, value))
    }

    /// The kind named, or the one whose rollout is running.
    async fn kind(&self, kind: Option<String>) -> anyhow::Result<String> {
        if let Some(kind) = kind {
            return Ok(kind);
        }
        let (ok, status) = self
            .call(reqwest::Method::GET, "/v1/rollouts", None)
            .await?;
        if !ok {
            anyhow::bail!("{}", message(&status));
        }
        let running: Vec<&str> = status["rollouts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                !matches!(
                    r["phase"]["state"].as_str(),
                    Some("rolled-back" | "aborted" | "promoted")
                )
            })
            .filter_map(|r| r["world"].as_str())
            .collect();
        match running.as_slice() {
            [one] => Ok(one.to_string()),
            [] => anyhow::bail!("no rollout is running; name router or planner"),
            _ => anyhow::bail!("name router or planner"),
        }
    }
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// One rollout in a few lines.
fn summary(r: &Value) -> String {
    let mut out = format!(
        "{} {}: {} → {}, {} ({}% on the candidate)",
        r["id"].as_str().unwrap_or("?"),
        r["world"].as_str().unwrap_or("?"),
        r["stable"]["name"].as_str().unwrap_or("?"),
        r["candidate"]["name"].as_str().unwrap_or("?"),
        r["phase"]["state"].as_str().unwrap_or("?"),
        r["candidate_share_percent"]
            .as_f64()
            .map_or_else(|| "?".into(), |p| format!("{p}")),
    );
    let steps: Vec<String> = r["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s.to_string())
        .collect();
    out.push_str(&format!(
        "\n  steps {} (at step {})",
        steps.join(" → "),
        r["step"].as_u64().map_or(0, |s| s + 1)
    ));
    if let Some(reason) = r["phase"]["reason"].as_str() {
        out.push_str(&format!("\n  paused: {reason}"));
    }
    if r["candidate_loaded_here"] == json!(false) || r["stable_loaded_here"] == json!(false) {
        out.push_str("\n  this daemon lacks a pinned module: it serves the stable policy");
    }
    for event in r["history"].as_array().into_iter().flatten().rev().take(5) {
        out.push_str(&format!("\n  - {}", event["what"].as_str().unwrap_or("")));
    }
    out
}

/// Runs `pointsman rollout …`.
pub async fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    let daemon = Daemon {
        url: args.url.clone(),
        http: reqwest::Client::new(),
        key: std::env::var("POINTSMAN_ADMIN_KEY").ok(),
    };
    use reqwest::Method;
    let (ok, value) = match args.command {
        RolloutCommand::Start {
            router,
            planner,
            steps,
            hold,
            min_requests,
            shadow,
        } => {
            let (world, candidate) = match (router, planner) {
                (Some(r), _) => ("router", r),
                (None, Some(p)) => ("planner", p),
                (None, None) => anyhow::bail!("give --router or --planner"),
            };
            let mut body =
                json!({"world": world, "candidate": candidate, "steps": steps, "shadow": shadow});
            if let Some(hold) = hold {
                body["hold"] = json!(hold);
            }
            if let Some(n) = min_requests {
                body["min_requests"] = json!(n);
            }
            daemon
                .call(Method::POST, "/v1/rollouts", Some(body))
                .await?
        }
        RolloutCommand::Status => daemon.call(Method::GET, "/v1/rollouts", None).await?,
        RolloutCommand::Promote { kind } => {
            let kind = daemon.kind(kind).await?;
            daemon
                .call(Method::POST, &format!("/v1/rollouts/{kind}/promote"), None)
                .await?
        }
        RolloutCommand::Abort { kind } => {
            let kind = daemon.kind(kind).await?;
            daemon
                .call(Method::POST, &format!("/v1/rollouts/{kind}/abort"), None)
                .await?
        }
        RolloutCommand::Diff { kind, since, until } => {
            let kind = kind.unwrap_or_else(|| "router".into());
            let mut query = Vec::new();
            if let Some(s) = since {
                query.push(format!("since={s}"));
            }
            if let Some(u) = until {
                query.push(format!("until={u}"));
            }
            let path = format!("/v1/rollouts/{kind}/diff?{}", query.join("&"));
            daemon.call(Method::GET, &path, None).await?
        }
    };
    if !ok {
        eprintln!("error: {}", message(&value));
        return Ok(ExitCode::FAILURE);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else if let Some(list) = value["rollouts"].as_array() {
        if list.is_empty() {
            println!("no rollout on record");
        }
        for r in list {
            println!("{}", summary(r));
        }
    } else if value.get("diff").is_some() {
        let d = &value["diff"];
        println!(
            "{}: {} vs {}: {} shadowed of {} requests ({} late), {} would change ({:.1}%)",
            value["rollout"].as_str().unwrap_or("?"),
            value["candidate"].as_str().unwrap_or("?"),
            value["stable"].as_str().unwrap_or("?"),
            d["shadowed"],
            d["answers"],
            d["late"],
            d["changed"],
            d["changed_share"].as_f64().unwrap_or(0.0) * 100.0
        );
        println!("  tiers served:    {}", d["stable_tiers"]);
        println!("  tiers candidate: {}", d["candidate_tiers"]);
        println!(
            "  cost: ${:.6} served, ${:.6} projected for the candidate ({} planned requests priced as their executor alone)",
            d["stable_cost_usd"].as_f64().unwrap_or(0.0),
            d["candidate_cost_usd"].as_f64().unwrap_or(0.0),
            d["candidate_plans_priced_as_executor"]
        );
        for s in d["samples"].as_array().into_iter().flatten() {
            println!(
                "  - {}: {} {} → {} {}\n      stable: {}\n      candidate: {}",
                s["request_id"].as_str().unwrap_or(""),
                s["stable"]["tier"].as_str().unwrap_or(""),
                s["stable"]["executor"].as_str().unwrap_or(""),
                s["candidate"]["tier"].as_str().unwrap_or(""),
                s["candidate"]["executor"].as_str().unwrap_or(""),
                s["stable"]["reasoning"].as_str().unwrap_or(""),
                s["candidate"]["reasoning"].as_str().unwrap_or("")
            );
        }
    } else {
        println!("{}", summary(&value));
    }
    Ok(ExitCode::SUCCESS)
}
