//! `pointsman config check`: everything wrong with a config file at once,
//! each problem with its file, line and key, or a summary of what the
//! daemon would serve.
//!
//! Beyond what loading checks (syntax, keys, references between sections,
//! prices and windows), this looks at what only the machine can tell: the
//! environment variables that hold provider keys, and whether the router
//! and planner named are built in or present in the policies folder.

use std::fmt::Write;
use std::path::Path;

use super::{Config, ProviderKind};

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems that stop the daemon from starting, as `file:line: key: what`.
    pub problems: Vec<String>,
    /// Things that work but look wrong.
    pub warnings: Vec<String>,
    /// What the daemon would serve, when there are no problems.
    pub summary: Option<String>,
}

/// Checks the config file at `path`; `builtins` are the policy modules
/// compiled into the binary.
pub fn check(path: &Path, builtins: &[&str]) -> Report {
    match std::fs::read_to_string(path) {
        Ok(text) => check_text(
            &text,
            &path.display().to_string(),
            path.parent().unwrap_or(Path::new(".")),
            builtins,
        ),
        Err(e) => Report {
            problems: vec![format!("{}: cannot read: {e}", path.display())],
            ..Report::default()
        },
    }
}

/// Checks config `text`, named `file` in messages, whose relative paths are
/// relative to `base`.
pub fn check_text(text: &str, file: &str, base: &Path, builtins: &[&str]) -> Report {
    let mut report = Report::default();
    let config: Config = match toml::from_str(text) {
        Ok(config) => config,
        Err(e) => {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let message = e.message().trim().to_string();
            report.problems.push(match line {
                Some(line) => format!("{file}:{line}: {message}"),
                None => format!("{file}: {message}"),
            });
            return report;
        }
    };
    let at = |key_and_problem: &str| {
        let key = key_and_problem.split(':').next().unwrap_or("");
        match locate(text, key) {
            Some(line) => format!("{file}:{line}: {key_and_problem}"),
            None => format!("{file}: {key_and_problem}"),
        }
    };
    for problem in config.problems() {
        report.problems.push(at(&problem));
    }
    for (name, provider) in &config.providers {
        if let Some(var) = &provider.api_key_env {
            let set = std::env::var_os(var).is_some_and(|v| !v.is_empty());
            if !set {
                report.problems.push(at(&format!(
                    "providers.{name}.api_key_env: the environment variable {var} is not set"
                )));
            }
        } else if let Some(file) = &provider.api_key_file {
            let key = std::fs::read_to_string(base.join(file)).map(|t| t.trim().to_string());
            if !key.is_ok_and(|k| !k.is_empty()) {
                report.problems.push(at(&format!(
                    "providers.{name}.api_key_file: {} cannot be read or is empty",
                    file.display()
                )));
            }
        } else if provider.kind != ProviderKind::Simulated {
            report.warnings.push(at(&format!(
                "providers.{name}.api_key_env: none: calls go without a key"
            )));
        }
    }
    let dir = config.policies.dir.as_ref().map(|d| base.join(d));
    let declared = [
        ("rollouts.router.candidate", &config.rollouts.router),
        ("rollouts.planner.candidate", &config.rollouts.planner),
    ];
    let declared = declared
        .iter()
        .filter_map(|(key, d)| Some((*key, &d.as_ref()?.candidate)));
    for (key, name) in [
        ("policies.router", &config.policies.router),
        ("policies.planner", &config.policies.planner),
    ]
    .into_iter()
    .chain(declared)
    {
        let in_folder = dir
            .as_ref()
            .is_some_and(|d| d.join(format!("{name}.wasm")).is_file());
        if !in_folder && !builtins.contains(&name.as_str()) {
            report.problems.push(at(&format!(
                "{key}: no module {name:?}: not built in ({}) and not in the policies folder",
                builtins.join(", ")
            )));
        }
    }
    for model in &config.models {
        if model.output_usd_per_mtok > 1000.0 || model.input_usd_per_mtok > 1000.0 {
            report.warnings.push(at(&format!(
                "models ({}).output_usd_per_mtok: over $1000 per million tokens: a price per token instead of per million?",
                model.id
            )));
        }
        if model.context_window < 1024 {
            report.warnings.push(at(&format!(
                "models ({}).context_window: {} tokens is very small",
                model.id, model.context_window
            )));
        }
    }
    if report.problems.is_empty() {
        report.summary = Some(summary(&config));
    }
    report
}

/// What the daemon would serve, one setting a line.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "listen     {}", config.listen);
    let _ = writeln!(
        out,
        "policies   router {}, planner {}{}",
        config.policies.router,
        config.policies.planner,
        config
            .policies
            .dir
            .as_ref()
            .map(|d| format!(", folder {}", d.display()))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "safe route {}{}",
        config.safe_route.executor,
        if config.safe_route.fallbacks.is_empty() {
            String::new()
        } else {
            format!(" → {}", config.safe_route.fallbacks.join(" → "))
        }
    );
    let _ = writeln!(out, "baseline   {}", config.baseline_model);
    let _ = writeln!(out, "models");
    for m in &config.models {
        let endpoints: Vec<&str> = m.endpoint_list().iter().map(|(p, _)| *p).collect();
        let _ = writeln!(
            out,
            "  {:<24} {:<28} ${}/${} per Mtok, {} tokens, roles {}",
            m.id,
            endpoints.join(", "),
            m.input_usd_per_mtok,
            m.output_usd_per_mtok,
            m.context_window,
            m.roles.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "clients    {}",
        if config.clients.is_empty() {
            "none: any key is accepted".to_string()
        } else {
            config
                .clients
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(
        out,
        "admin key  {}",
        if config.admin.key_sha256.is_some() {
            "set"
        } else {
            "none (loopback only)"
        }
    );
    out
}

/// The line of `text` (from 1) that a key path such as `models[2] (glm).provider`,
/// `providers.zhipu.base_url` or `baseline_model` points at, as best it
/// can be found: the key's own line, else its table's header.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    // "models[2] (glm-4.7).endpoints[0].provider" → [("models", Some(2)), ...]
    let mut segments: Vec<(String, Option<usize>)> = Vec::new();
    let mut cleaned = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 && c != ' ' => cleaned.push(c),
            _ => {}
        }
    }
    for part in cleaned.split('.').filter(|p| !p.is_empty()) {
        match part.split_once('[') {
            Some((name, index)) => {
                segments.push((name.to_string(), index.trim_end_matches(']').parse().ok()))
            }
            None => segments.push((part.to_string(), None)),
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let header = |line: &str| {
        let t = line.trim();
        t.strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
            .map(str::trim)
            .map(str::to_string)
    };
    // The table: the longest prefix of segments naming a header (the
    // index-th one for arrays of tables).
    let mut from = 0;
    let mut to = lines.len();
    let mut used = 0;
    for take in (1..=segments.len()).rev() {
        let name: Vec<&str> = segments[..take].iter().map(|(n, _)| n.as_str()).collect();
        let name = name.join(".");
        let index = segments[take - 1].1.unwrap_or(0);
        let found: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| header(l).as_deref() == Some(name.as_str()))
            .map(|(i, _)| i)
            .collect();
        if let Some(&start) = found.get(index) {
            from = start;
            to = lines
                .iter()
                .enumerate()
                .skip(start + 1)
                .find(|(_, l)| header(l).is_some())
                .map_or(lines.len(), |(i, _)| i);
            used = take;
            break;
        }
    }
    let Some((key, _)) = segments.get(used..).and_then(|rest| rest.last()) else {
        return (used > 0).then_some(from + 1);
    };
    let key_line = (from..to).find(|&i| {
        let t = lines[i].trim_start();
        t.strip_prefix(key.as_str())
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    key_line.map(|i| i + 1).or((used > 0).then_some(from + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "baseline_model = \"a\"\n\n[safe_route]\nexecutor = \"x\"\n\n[providers.up]\nkind = \"openai\"\nbase_url = \"ftp://\"\n\n[[models]]\nid = \"a\"\nprovider = \"up\"\n\n[[models]]\nid = \"b\"\nprovider = \"gone\"\n";

    #[test]
    fn keys_are_found_on_their_lines() {
        assert_eq!(locate(TEXT, "baseline_model"), Some(1));
        assert_eq!(locate(TEXT, "safe_route.executor"), Some(4));
        assert_eq!(locate(TEXT, "providers.up.base_url"), Some(8));
        assert_eq!(locate(TEXT, "models[1] (b).provider"), Some(16));
        assert_eq!(locate(TEXT, "models[0] (a).provider"), Some(12));
        // A key that is not written falls back to its table's header.
        assert_eq!(locate(TEXT, "models[1] (b).context_window"), Some(14));
    }

    #[test]
    fn every_problem_of_a_broken_file_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.toml");
        let text = crate::config::DEMO_TOML
            .replace("executor = \"glm-4.7\"", "executor = \"gpt-9\"")
            .replace(
                "baseline_model = \"claude-opus-4.5\"",
                "baseline_model = \"nope\"",
            )
            .replace("router = \"seed-matrix\"", "router = \"missing-router\"");
        std::fs::write(&path, &text).unwrap();
        let report = check(&path, &["seed-matrix", "seed-planner"]);
        let all = report.problems.join("\n");
        assert!(all.contains("safe_route.executor"), "{all}");
        assert!(all.contains("baseline_model"), "{all}");
        assert!(all.contains("missing-router"), "{all}");
        assert!(report.summary.is_none());
        for problem in &report.problems {
            let line: usize = problem
                .split(':')
                .nth(1)
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("no line in {problem}"));
            assert!(line > 0);
        }
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:8080\"\n[policies\n").unwrap();
        let report = check(&path, &[]);
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0].contains("bad.toml:2:"),
            "{:?}",
            report.problems
        );
    }
}
