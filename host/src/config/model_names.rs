//! Model names agents ask for: `[[model_names]]` maps patterns of requested
//! names to the router (an alias such as `auto`) or to a catalog model, so
//! that an agent's hard-wired names (`claude-opus-4-8`, `gpt-5.5`) route
//! like `auto` without any client set-up. Every API resolves its requested
//! model here.

use serde::Deserialize;

use super::Config;

/// `[[model_names]]`: requested names matching `pattern` are served as
/// `model`. Rules are tried in order; the first match wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelNameRule {
    /// A glob: `*` matches any run of characters, `?` one character, and
    /// `[a-z0-9]` (or `[!...]`) one character of (or not of) a set. Case
    /// matters.
    pub pattern: String,
    /// An alias (routed by the policy) or a catalog id.
    pub model: String,
}

/// How a requested model name is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelTarget<'a> {
    /// The router decides; the alias the name stands for.
    Router(&'a str),
    /// The catalog model of this id serves, as if the client had named it.
    Catalog(&'a str),
}

/// A requested name, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedModel<'a> {
    /// What serves it.
    pub target: ModelTarget<'a>,
    /// The `[[model_names]]` pattern that matched; `None` when the name is
    /// itself an alias or a catalog id.
    pub pattern: Option<&'a str>,
}

impl ResolvedModel<'_> {
    /// The alias or catalog id the name resolved to.
    pub fn name(&self) -> &str {
        match self.target {
            ModelTarget::Router(name) | ModelTarget::Catalog(name) => name,
        }
    }
}

impl Config {
    /// How the model name `asked` is served: an alias is routed, a catalog
    /// id is served as named, anything else by the first matching
    /// `[[model_names]]` rule; `None` when nothing matches.
    pub fn resolve_model<'a>(&'a self, asked: &str) -> Option<ResolvedModel<'a>> {
        if let Some(alias) = self.aliases.iter().find(|a| *a == asked) {
            return Some(ResolvedModel {
                target: ModelTarget::Router(alias),
                pattern: None,
            });
        }
        if let Some(model) = self.models.iter().find(|m| m.id == asked) {
            return Some(ResolvedModel {
                target: ModelTarget::Catalog(&model.id),
                pattern: None,
            });
        }
        let rule = self
            .model_names
            .iter()
            .find(|rule| glob_matches(&rule.pattern, asked))?;
        let target = if self.aliases.contains(&rule.model) {
            ModelTarget::Router(&rule.model)
        } else {
            ModelTarget::Catalog(&rule.model)
        };
        Some(ResolvedModel {
            target,
            pattern: Some(&rule.pattern),
        })
    }

    /// Checks every `[[model_names]]` rule: a well-formed pattern, and a
    /// target that is an alias or in the catalog.
    pub(super) fn validate_model_names(&self) -> anyhow::Result<()> {
        for (i, rule) in self.model_names.iter().enumerate() {
            let at = format!("model_names[{i}]");
            if let Err(why) = check_pattern(&rule.pattern) {
                anyhow::bail!("{at}.pattern: {why}");
            }
            let known = self.aliases.contains(&rule.model)
                || self.models.iter().any(|m| m.id == rule.model);
            if !known {
                anyhow::bail!(
                    "{at}.model: {:?} is neither an alias ({}) nor in the catalog",
                    rule.model,
                    self.aliases.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// Why `pattern` is not a usable glob, if it is not.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            i = class_end(&chars, i).ok_or("a `[` is never closed by `]`")?;
        }
        i += 1;
    }
    Ok(())
}

/// The index of the `]` closing the class that opens at `open`. A `]`
/// right after `[` or `[!` is a member, as in shell globs.
fn class_end(chars: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(chars.get(i), Some('!' | '^')) {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    (i..chars.len()).find(|&j| chars[j] == ']')
}

/// Whether `c` is in the class `chars[open..=close]`.
fn in_class(chars: &[char], open: usize, close: usize, c: char) -> bool {
    let mut i = open + 1;
    let negated = matches!(chars[i], '!' | '^');
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < close {
        let low = chars[i];
        if low == ']' && !first {
            break;
        }
        first = false;
        if i + 2 < close && chars[i + 1] == '-' {
            found |= (low..=chars[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= low == c;
            i += 1;
        }
    }
    found != negated
}

/// Whether `name` matches the glob `pattern` (see [`ModelNameRule`]).
/// Linear backtracking on the last `*`, so at most O(pattern × name).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last `*`: its pattern index, and the name
    // index it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class_end(&p, pi) {
                Some(close) if in_class(&p, pi, close, n[ni]) => Some(close + 1),
                Some(_) => None,
                // An unclosed `[` is a literal (config validation refuses it).
                None => (n[ni] == '[').then_some(pi + 1),
            },
            Some(c) => (*c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((star_at, swallowed))) => {
                pi = star_at + 1;
                ni = swallowed + 1;
                star = Some((star_at, swallowed + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_the_names_agents_ask_for() {
        assert!(glob_matches("claude-*", "claude-opus-4-8"));
        assert!(glob_matches("claude-*", "claude-"));
        assert!(!glob_matches("claude-*", "claude"));
        assert!(glob_matches("gpt-*", "gpt-5.5-codex"));
        assert!(glob_matches("o[0-9]*", "o3"));
        assert!(glob_matches("o[0-9]*", "o4-mini"));
        assert!(!glob_matches("o[0-9]*", "opus"));
        assert!(glob_matches("*-mini", "o4-mini"));
        assert!(glob_matches("*opus*", "claude-opus-4-8"));
        assert!(!glob_matches("*opus*", "claude-sonnet-4-6"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("[!x]*", "y1"));
        assert!(!glob_matches("[!x]*", "x1"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "a-b-b-c"));
        assert!(!glob_matches("a*b*c", "a-b-b-"));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("o[0-9]*").is_ok());
        assert!(check_pattern("[]]x").is_ok());
        assert!(check_pattern("o[0-9").is_err());
        assert!(check_pattern("").is_err());
    }

    #[test]
    fn aliases_and_catalog_ids_come_before_patterns() {
        let mut config = Config::demo();
        config.model_names = vec![
            ModelNameRule {
                pattern: "*".into(),
                model: "glm-4.7".into(),
            },
            ModelNameRule {
                pattern: "claude-*".into(),
                model: "auto".into(),
            },
        ];
        let resolved = config.resolve_model("auto").unwrap();
        assert_eq!(resolved.target, ModelTarget::Router("auto"));
        assert_eq!(resolved.pattern, None);
        let resolved = config.resolve_model("claude-opus-4.5").unwrap();
        assert_eq!(resolved.target, ModelTarget::Catalog("claude-opus-4.5"));
        // The first rule wins.
        let resolved = config.resolve_model("claude-opus-4-8").unwrap();
        assert_eq!(resolved.target, ModelTarget::Catalog("glm-4.7"));
        assert_eq!(resolved.pattern, Some("*"));
    }

    #[test]
    fn the_demo_maps_the_names_of_claude_code_and_codex_to_the_router() {
        let config = Config::demo();
        for name in [
            "claude-opus-4-8",
            "claude-sonnet-4-6",
            "claude-haiku-4-5-20251001",
            "gpt-5.5",
            "gpt-5.1-codex-max",
            "o3",
            "o4-mini",
            "codex-mini-latest",
        ] {
            let resolved = config.resolve_model(name).unwrap();
            assert_eq!(resolved.target, ModelTarget::Router("auto"), "{name}");
        }
        assert_eq!(config.resolve_model("llama-3"), None);
    }

    #[test]
    fn a_rule_must_name_an_alias_or_a_catalog_model() {
        let mut config = Config::demo();
        config.model_names.push(ModelNameRule {
            pattern: "x-*".into(),
            model: "nope".into(),
        });
        let error = config.validate_model_names().unwrap_err().to_string();
        assert!(error.contains("model_names[4].model"), "{error}");
        config.model_names.pop();
        config.model_names.push(ModelNameRule {
            pattern: "x-[".into(),
            model: "auto".into(),
        });
        let error = config.validate_model_names().unwrap_err().to_string();
        assert!(error.contains("model_names[4].pattern"), "{error}");
    }
}
