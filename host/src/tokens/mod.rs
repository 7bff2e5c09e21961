//! Token counting: the `o200k_base` BPE, in time linear in the text.
//!
//! The encoder is tiktoken's algorithm over a compact vocabulary
//! ([`vocabulary`], which says why it is not tiktoken's own tables).
//!
//! A client controls every byte it sends, so counting must not be a way to
//! hold a core. The BPE first cuts text into pieces with a regex and then
//! merges each piece's bytes pairwise, which takes time quadratic in the
//! piece's length (with tiktoken itself, a 100,000-letter word took 7 s,
//! 300,000 letters 76 s, and its backtracking regex engine recursed per
//! character: a 4 MiB word overflowed the stack). Pieces of real text are
//! short, so the text is
//! scanned once and cut into *runs*, maximal stretches of whitespace or of
//! anything else:
//!
//! - runs up to [`MAX_RUN_BYTES`] are handed to the BPE together, untouched,
//!   so ordinary text is counted exactly as tiktoken counts it;
//! - a longer run (a base64 blob, minified code, a hostile word) is
//!   *estimated*: the BPE counts its first [`MAX_RUN_BYTES`] bytes and the
//!   count is scaled to the run's length. Its cost is one bounded BPE call.
//!
//! Every BPE call therefore sees pieces of bounded length, and the whole
//! count costs a bounded amount of work per byte of text.

mod vocabulary;

use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use vocabulary::O200K_BASE;

/// Longest run of whitespace or non-whitespace counted exactly. Longer runs
/// are estimated from their first this-many bytes.
pub const MAX_RUN_BYTES: usize = 64;

/// Texts whose counts are remembered (about 24 bytes each).
const REMEMBERED_COUNTS: usize = 65_536;

/// Tokens added per chat message by chat formatting (role markers,
/// separators), as OpenAI documents for its chat models.
pub const PER_MESSAGE: u32 = 4;

/// The number of `o200k_base` tokens of `text` (estimated for runs longer
/// than [`MAX_RUN_BYTES`]; see the module docs).
///
/// Counts are remembered by a keyed hash of the text: agents resend the
/// whole conversation and the same tool schemas on every turn, so almost
/// every text of a request was counted for an earlier one, and the BPE
/// costs about a microsecond per 20 bytes while the lookup costs one hash.
pub fn count(text: &str) -> u32 {
    if text.is_empty() {
        return 0;
    }
    // The length as well as a 64-bit hash: a collision would need both.
    remembered((KEYS.hash_one(text), text.len()), || count_uncached(text))
}

/// The count of the text `make` returns, remembered under what `feed`
/// writes into a hasher: for text the caller would have to build first,
/// such as a request's tool schemas, which `feed` can hash where they lie.
/// Serialising a coding agent's dozen schemas only to find their count
/// remembered was 7% of the daemon's CPU on its requests (BENCHMARKS.md,
/// "Agent-sized requests").
pub fn count_made(feed: impl FnOnce(&mut dyn Hasher), make: impl FnOnce() -> String) -> u32 {
    let mut hasher = KEYS.build_hasher();
    feed(&mut hasher);
    // No text is this long: these keys never meet [`count`]'s.
    remembered((hasher.finish(), usize::MAX), || count_uncached(&make()))
}

/// The count remembered under `key`, else `counted`'s, remembered.
fn remembered(key: (u64, usize), counted: impl FnOnce() -> u32) -> u32 {
    if let Some(count) = COUNTS.get(&key) {
        return count;
    }
    let count = counted();
    COUNTS.insert(key, count);
    count
}

// foldhash, seeded at random per process: std's SipHash was 3% of the
// daemon's CPU on agent-sized requests, whose texts run to tens of
// kilobytes (BENCHMARKS.md, "Agent-sized requests").
static KEYS: LazyLock<foldhash::quality::RandomState> =
    LazyLock::new(foldhash::quality::RandomState::default);
static COUNTS: LazyLock<quick_cache::sync::Cache<(u64, usize), u32>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(REMEMBERED_COUNTS));

/// Builds the tokenizer's tables, and the splitting automaton's states for
/// common text, so that the first requests do not pay for them.
pub fn warm_up() {
    count_uncached(
        "Fix the off-by-one bug in parser.rs:42 — it's been failing since 2026.\n\
         fn main() {\n    let x: Vec<u32> = (0..10).collect(); // 東京 🚀\n}\n\t  \r\n",
    );
}

/// [`count`] without the cache (for measurements: `examples/tokenizer.rs`).
pub fn count_uncached(text: &str) -> u32 {
    let exact = |s: &str| O200K_BASE.count(s);
    let mut total: u64 = 0;
    // Start of the text not yet counted: runs up to MAX_RUN_BYTES pile up
    // here and are counted together when a long run (or the end) comes.
    let mut pending = 0;
    for (start, end) in runs(text) {
        if end - start <= MAX_RUN_BYTES {
            continue;
        }
        if pending < start {
            total += exact(&text[pending..start]);
        }
        let sample_end = floor_char_boundary(text, start + MAX_RUN_BYTES);
        let sample = &text[start..sample_end];
        let sampled = exact(sample).max(1);
        // Scale by length, rounding up: an estimate that never says zero.
        total += (sampled * (end - start) as u64).div_ceil(sample.len() as u64);
        pending = end;
    }
    if pending < text.len() {
        total += exact(&text[pending..]);
    }
    total.min(u32::MAX as u64) as u32
}

/// Byte ranges of the maximal runs of whitespace and of non-whitespace in
/// `text`, in order, covering it.
fn runs(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, first) = chars.next()?;
        let space = first.is_whitespace();
        let mut end = start + first.len_utf8();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() != space {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        Some((start, end))
    })
}

/// The largest char boundary of `text` at or below `index`.
fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpe(text: &str) -> u32 {
        tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(text)
            .len() as u32
    }

    #[test]
    fn ordinary_text_is_counted_exactly() {
        let texts = [
            "Fix the off-by-one bug in the parser",
            "fn main() {\n    println!(\"hello, world\");\n}\n",
            "Grüße aus Zürich — 東京からこんにちは 🚀",
            "   leading and trailing whitespace   \n\n\t",
        ];
        for text in texts {
            assert_eq!(count(text), bpe(text), "{text:?}");
        }
    }

    /// The compact vocabulary counts what tiktoken counts, on text of
    /// every kind a prompt holds: prose, code, JSON, numbers, contractions,
    /// scripts without spaces, emoji, and whitespace of every shape.
    #[test]
    fn counts_agree_with_tiktoken_text_by_text() {
        let samples = [
            "The quick brown fox jumps over the lazy dog. It's 3:45pm; we'll see.",
            "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n}\n",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"n":1}"#,
            "1234567890 3.14159 -42 1e10 0xDEADBEEF 2026-12-07T04:55:00Z",
            "I'M SHOUTING, they're WHISPERING, we'VE won, she'd go, you'll see",
            "Grüße aus Zürich — naïve café, œuvre, Ελληνικά, русский текст",
            "東京からこんにちは。日本語の文章には空白がありません。한국어 텍스트도 있습니다",
            "emoji 🚀🔥👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵",
            "  \n\n\t\t  \r\n   trailing   \n",
            "path/to/file.rs:42:7 https://example.com/a?b=c&d=e#f ~/.config",
            "SELECT id, name FROM users WHERE age > 30 ORDER BY name DESC;",
            "def f(x):\n    return x ** 2  # square\n\nclass A(B):\n    pass\n",
        ];
        let mut texts: Vec<String> = samples.iter().map(|s| s.to_string()).collect();
        // Mixtures, cut at every char boundary of a long mixed text.
        let mixed = samples.concat();
        for end in (0..=mixed.len())
            .filter(|&i| mixed.is_char_boundary(i))
            .step_by(7)
        {
            texts.push(mixed[..end].to_string());
        }
        for text in &texts {
            assert_eq!(O200K_BASE.count(text) as u32, bpe(text), "{text:?}");
        }
    }

    #[test]
    fn runs_cover_the_text() {
        let text = "  ab\tcd  é ";
        let runs: Vec<_> = runs(text).map(|(s, e)| &text[s..e]).collect();
        assert_eq!(runs, ["  ", "ab", "\t", "cd", "  ", "é", " "]);
        assert_eq!(runs.concat(), text);
    }

    /// The bound by construction: however long a word is, the BPE only
    /// ever sees its first MAX_RUN_BYTES bytes, so the estimate of a long
    /// word is the sample's count scaled by length.
    #[test]
    fn a_long_word_is_estimated_from_a_bounded_sample() {
        for len in [MAX_RUN_BYTES + 1, 10_000, 4 << 20] {
            let word = "a".repeat(len);
            let sample = bpe(&word[..MAX_RUN_BYTES]) as u64;
            let expected = (sample * len as u64).div_ceil(MAX_RUN_BYTES as u64) as u32;
            assert_eq!(count_uncached(&word), expected, "{len}");
        }
    }

    #[test]
    fn long_runs_of_multibyte_characters_are_cut_on_char_boundaries() {
        let word = "é".repeat(1000);
        assert!(count(&word) > 0);
        let spaces = format!("x{}y", " ".repeat(1000));
        assert!(count(&spaces) >= 2);
    }

    #[test]
    fn long_runs_between_ordinary_text_keep_the_text_exact() {
        let blob = "Zm9v".repeat(100);
        let text = format!("Decode this: {blob} and tell me what it says");
        let before = bpe("Decode this: ");
        let after = bpe(" and tell me what it says");
        let estimate = count(&text) - before - after;
        // The blob's estimate is near its exact count.
        let exact = bpe(&blob);
        assert!(
            estimate.abs_diff(exact) <= exact / 2,
            "{estimate} vs {exact}"
        );
    }
}
