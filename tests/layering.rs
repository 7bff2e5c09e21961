//! The layer order of `../shared/DESIGN.md`, checked in the host crate's
//! imports: no module of `host/src` uses one of a higher layer.
//!
//! The check reads every `host/src/**/*.rs` file, strips comments, strings
//! and character literals (a path in a doc comment or an error message is
//! not an import), and finds every path that reaches a top-level module of
//! the crate: `crate::x` (alone, in a `use` group `crate::{x, y::z}`, or
//! inside an expression), `$crate::x` in macros, and `super::` chains that
//! climb out of the file's top-level module. Inline `mod name { ... }`
//! blocks are followed, so `super::` inside a file's `mod tests` resolves
//! to the file's own module, as rustc resolves it.
//!
//! Levels, top to bottom: a module may use its own level and the levels
//! below it. A top-level module missing from [`LAYERS`] fails the check,
//! so a new module is placed deliberately.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules by layer, top first (`../shared/DESIGN.md`).
/// `lib` and `main` are the crate roots; `tenant` (client ownership) sits
/// with the ledger, `features` (request features) with policy and dispatch.
const LAYERS: &[&[&str]] = &[
    &["cli", "main", "lib"],
    &["app", "gateway", "offline"],
    &["orchestrator", "rollout"],
    &["policy", "dispatch", "features"],
    &["resilience", "provider", "ledger", "tenant"],
    &["tokens", "metrics", "config"],
];

/// The layer of a top-level module (0 is the top), if the table has it.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// One source file: its module path inside the crate and its text.
struct Source {
    /// Where it was read from (for messages).
    file: String,
    /// Its module path: `["gateway", "chat"]` for `gateway/chat.rs` and
    /// `["gateway"]` for `gateway/mod.rs` or `gateway.rs`; the crate roots
    /// are `["lib"]` and `["main"]`.
    module: Vec<String>,
    text: String,
}

/// A use of a top-level module from a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    file: String,
    line: usize,
    /// The importing file's top-level module.
    from: String,
    /// The top-level module used.
    to: String,
}

/// What the check found wrong.
#[derive(Debug, Default, PartialEq, Eq)]
struct Findings {
    /// Imports from a lower layer to a higher one.
    upward: Vec<Import>,
    /// Top-level modules (importing or imported) missing from [`LAYERS`].
    unknown: BTreeSet<String>,
}

impl Findings {
    fn is_clean(&self) -> bool {
        self.upward.is_empty() && self.unknown.is_empty()
    }

    fn report(&self) -> String {
        let mut out = String::new();
        for name in &self.unknown {
            out.push_str(&format!(
                "the module `{name}` is not in the layer table of tests/layering.rs: add it to the table\n"
            ));
        }
        for i in &self.upward {
            out.push_str(&format!(
                "{}:{}: `{}` (layer {}) imports `{}` (layer {}), a higher layer\n",
                i.file,
                i.line,
                i.from,
                layer_of(&i.from).unwrap_or(0),
                i.to,
                layer_of(&i.to).unwrap_or(0),
            ));
        }
        out
    }
}

/// Checks `sources` against [`LAYERS`].
fn check(sources: &[Source]) -> Findings {
    let mut findings = Findings::default();
    for source in sources {
        let from = &source.module[0];
        if layer_of(from).is_none() {
            findings.unknown.insert(from.clone());
        }
        for import in imports(source) {
            match (layer_of(&import.from), layer_of(&import.to)) {
                (Some(from), Some(to)) if to < from => findings.upward.push(import),
                (_, None) => {
                    findings.unknown.insert(import.to);
                }
                _ => {}
            }
        }
    }
    findings.upward.sort();
    findings.upward.dedup();
    findings
}

/// The top-level modules `source` uses outside its own, with the line of
/// each use.
fn imports(source: &Source) -> Vec<Import> {
    let code = strip(&source.text);
    let chars: Vec<char> = code.chars().collect();
    let from = source.module[0].clone();
    let mut found = Vec::new();
    // The module path at the cursor: the file's, plus inline `mod` blocks.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
            if let Some(name) = pending_mod.take() {
                inline.push((name, depth));
            }
            i += 1;
            continue;
        }
        if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if c == ';' {
            // `mod name;` declares a file module: nothing inline.
            pending_mod = None;
            i += 1;
            continue;
        }
        if !is_ident_start(c) || (i > 0 && is_ident_char(chars[i - 1])) {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(&chars, i);
        let preceded_by_path = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':';
        match word.as_str() {
            "mod" => {
                let next = skip_ws(&chars, end);
                if next < chars.len() && is_ident_start(chars[next]) {
                    let (name, after) = ident_at(&chars, next);
                    pending_mod = Some(name);
                    i = after;
                    continue;
                }
            }
            "crate" if !preceded_by_path => {
                let line = line_of(&chars, i);
                for to in after_root(&chars, end) {
                    if to != from {
                        found.push(Import {
                            file: source.file.clone(),
                            line,
                            from: from.clone(),
                            to,
                        });
                    }
                }
            }
            "super" if !preceded_by_path => {
                // Climb one level per `super::`.
                let mut path: Vec<String> = source.module.clone();
                if path.len() == 1 && (path[0] == "lib" || path[0] == "main") {
                    path.clear();
                }
                path.extend(inline.iter().map(|(name, _)| name.clone()));
                let mut at = end;
                path.pop();
                while let Some(next) = path_segment(&chars, at) {
                    let (seg, seg_end) = ident_at(&chars, next);
                    if seg != "super" {
                        break;
                    }
                    path.pop();
                    at = seg_end;
                }
                let line = line_of(&chars, i);
                if path.is_empty() {
                    // At the crate root: the next segment names a top-level
                    // module.
                    for to in after_root(&chars, at) {
                        if to != from {
                            found.push(Import {
                                file: source.file.clone(),
                                line,
                                from: from.clone(),
                                to,
                            });
                        }
                    }
                }
                i = at;
                continue;
            }
            _ => {}
        }
        i = end;
    }
    found
}

/// The top-level modules named right after a crate-root path prefix
/// ending at `at` (`crate` or a `super` that reached the root): `::x` or
/// `::{x, y::z, self}`.
fn after_root(chars: &[char], at: usize) -> Vec<String> {
    let Some(next) = path_separator(chars, at) else {
        return Vec::new();
    };
    let next = skip_ws(chars, next);
    if next >= chars.len() {
        return Vec::new();
    }
    if is_ident_start(chars[next]) {
        let (name, _) = ident_at(chars, next);
        return vec![name];
    }
    if chars[next] != '{' {
        return Vec::new();
    }
    // A use group: the first segment of each top-level item.
    let mut names = Vec::new();
    let mut depth = 0;
    let mut expect_item = true;
    let mut j = next;
    while j < chars.len() {
        let c = chars[j];
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    expect_item = true;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_item = true,
            c if depth == 1 && expect_item && is_ident_start(c) => {
                let (name, end) = ident_at(chars, j);
                if name != "self" {
                    names.push(name);
                }
                expect_item = false;
                j = end;
                continue;
            }
            c if !c.is_whitespace() && depth == 1 => expect_item = false,
            _ => {}
        }
        j += 1;
    }
    names
}

/// The start of the identifier after `::` at `at` (whitespace allowed).
fn path_segment(chars: &[char], at: usize) -> Option<usize> {
    let next = skip_ws(chars, path_separator(chars, at)?);
    (next < chars.len() && is_ident_start(chars[next])).then_some(next)
}

/// The index after a `::` at `at` (whitespace allowed before it).
fn path_separator(chars: &[char], at: usize) -> Option<usize> {
    let at = skip_ws(chars, at);
    (at + 1 < chars.len() && chars[at] == ':' && chars[at + 1] == ':').then_some(at + 2)
}

fn skip_ws(chars: &[char], mut at: usize) -> usize {
    while at < chars.len() && chars[at].is_whitespace() {
        at += 1;
    }
    at
}

fn ident_at(chars: &[char], at: usize) -> (String, usize) {
    let mut end = at;
    while end < chars.len() && is_ident_char(chars[end]) {
        end += 1;
    }
    (chars[at..end].iter().collect(), end)
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn line_of(chars: &[char], at: usize) -> usize {
    chars[..at].iter().filter(|c| **c == '\n').count() + 1
}

/// `text` with comments, string literals and character literals blanked
/// out (newlines kept, so line numbers hold).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident_char(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Raw strings: r"..", r#".."#, br#".."#.
        if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let mut j = start;
            while j < chars.len() && chars[j] == '#' {
                j += 1;
            }
            if j < chars.len() && chars[j] == '"' {
                let hashes = j - start;
                let mut k = j + 1;
                loop {
                    if k >= chars.len() {
                        break;
                    }
                    if chars[k] == '"'
                        && chars[k + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|c| **c == '#')
                            .count()
                            == hashes
                    {
                        k += 1 + hashes;
                        break;
                    }
                    k += 1;
                }
                for &c in &chars[i..k.min(chars.len())] {
                    blank(&mut out, c);
                }
                i = k;
                continue;
            }
        }
        if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() {
                let c = chars[i];
                blank(&mut out, c);
                i += 1;
                if c == '\\' {
                    if i < chars.len() {
                        blank(&mut out, chars[i]);
                        i += 1;
                    }
                } else if c == '"' {
                    break;
                }
            }
            continue;
        }
        if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), not a lifetime.
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|c| *c == '\'')
                    .map(|p| i + 2 + p + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            if let Some(end) = end {
                for &c in &chars[i..end] {
                    blank(&mut out, c);
                }
                i = end;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Every `.rs` file under `root`, with its module path.
fn read_tree(root: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect(root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(root).unwrap();
            let mut module: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.len() > 1 && module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            Source {
                file: format!("host/src/{}", relative.display()),
                module,
                text: std::fs::read_to_string(&path).unwrap(),
            }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_tree(&root);
    assert!(sources.len() > 20, "read only {} files", sources.len());
    let findings = check(&sources);
    assert!(
        findings.is_clean(),
        "imports against the layer order (top to bottom: {}):\n{}",
        LAYERS
            .iter()
            .map(|l| l.join(", "))
            .collect::<Vec<_>>()
            .join(" > "),
        findings.report()
    );
}

/// The checker on small made-up trees: it finds each kind of upward import
/// and passes a clean tree.
mod checker {
    use super::*;

    fn source(path: &str, text: &str) -> Source {
        let mut module: Vec<String> = path
            .trim_end_matches(".rs")
            .split('/')
            .map(String::from)
            .collect();
        if module.len() > 1 && module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        Source {
            file: path.to_string(),
            module,
            text: text.to_string(),
        }
    }

    fn upward(findings: &Findings) -> Vec<(String, String, usize)> {
        findings
            .upward
            .iter()
            .map(|i| (i.from.clone(), i.to.clone(), i.line))
            .collect()
    }

    #[test]
    fn a_clean_tree_passes() {
        let tree = [
            source("lib.rs", "pub mod gateway;\npub mod config;\n"),
            source(
                "gateway/mod.rs",
                "use crate::config::Config;\nuse crate::{policy::Route, provider};\nuse super::orchestrator;\n",
            ),
            source(
                "gateway/chat.rs",
                "use super::error::ApiError;\nuse super::super::metrics;\n",
            ),
            source(
                "orchestrator/task.rs",
                "use crate::dispatch::send;\nfn f() { crate::tokens::count(\"x\"); }\n",
            ),
            // Siblings at one level, and its own module through `crate`.
            source(
                "policy/engine.rs",
                "use crate::features::Features;\nuse crate::policy::types;\n",
            ),
            source("config.rs", "mod tests {\n    use super::Config;\n}\n"),
        ];
        let findings = check(&tree);
        assert!(findings.is_clean(), "{}", findings.report());
    }

    #[test]
    fn every_form_of_upward_import_is_caught() {
        let tree = [
            // A plain `use`.
            source("config.rs", "use std::fmt;\n\nuse crate::policy::Tier;\n"),
            // A use group, one of whose items climbs.
            source(
                "metrics.rs",
                "use crate::{\n    tokens,\n    orchestrator::task::Status,\n};\n",
            ),
            // A path in an expression.
            source(
                "provider/simulated.rs",
                "fn f() {\n    let n = crate::gateway::count(1);\n}\n",
            ),
            // `super::` out of a top-level module.
            source("orchestrator/mod.rs", "use super::app::AppState;\n"),
            // `super::super::` out of a nested file.
            source("resilience/retry.rs", "use super::super::dispatch::Send;\n"),
            // `super::` from an inline module of a top-level file climbs to
            // the file's own module first: fine; one more level is the root.
            source(
                "tokens.rs",
                "mod tests {\n    use super::count;\n    use super::super::ledger::Cost;\n}\n",
            ),
            // `$crate` in a macro.
            source(
                "ledger/mod.rs",
                "macro_rules! m { () => { $crate::rollout::arm() } }\n",
            ),
        ];
        let findings = check(&tree);
        assert_eq!(
            upward(&findings),
            vec![
                ("config".into(), "policy".into(), 3),
                ("ledger".into(), "rollout".into(), 1),
                ("metrics".into(), "orchestrator".into(), 1),
                ("orchestrator".into(), "app".into(), 1),
                ("provider".into(), "gateway".into(), 2),
                ("resilience".into(), "dispatch".into(), 1),
                ("tokens".into(), "ledger".into(), 3),
            ],
            "{}",
            findings.report()
        );
        assert!(findings.unknown.is_empty(), "{}", findings.report());
    }

    #[test]
    fn comments_strings_and_lifetimes_are_not_imports() {
        let tree = [source(
            "config.rs",
            concat!(
                "//! See [`crate::gateway`].\n",
                "/* crate::app::AppState /* nested */ crate::cli */\n",
                "const A: &str = \"crate::gateway::x\";\n",
                "const B: &str = r#\"use crate::orchestrator;\"#;\n",
                "const C: char = '\"';\n",
                "fn f<'a>(x: &'a str) -> &'a str { x }\n",
                "use crate::tokens;\n",
            ),
        )];
        let findings = check(&tree);
        assert!(findings.is_clean(), "{}", findings.report());
        assert_eq!(
            imports(&tree[0])
                .iter()
                .map(|i| (i.to.as_str(), i.line))
                .collect::<Vec<_>>(),
            vec![("tokens", 7)]
        );
    }

    #[test]
    fn a_module_missing_from_the_table_fails() {
        let tree = [
            source("gateway/mod.rs", "use crate::telemetry::Span;\n"),
            source("scratch.rs", "use crate::config;\n"),
        ];
        let findings = check(&tree);
        assert!(!findings.is_clean());
        assert_eq!(
            findings.unknown.iter().cloned().collect::<Vec<_>>(),
            vec!["scratch".to_string(), "telemetry".to_string()]
        );
        assert!(findings.report().contains("add it to the table"));
    }
}
