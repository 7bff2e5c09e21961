//! The `o200k_base` byte-pair encoder, counting only, over a compact
//! vocabulary.
//!
//! Why not tiktoken's own tables, measured: `tiktoken_rs`'s `CoreBPE`
//! keeps the 199,998 tokens three times (an encoder map, a decoder map and
//! a sorted list, each entry a separate allocation) and took 54 MB of
//! resident memory, more than half of the daemon's (`examples/tokenizer.rs`;
//! BENCHMARKS.md, "Memory"). Counting needs only bytes → rank. Here the
//! tokens' bytes are one static array written at build time (`build.rs`,
//! from tiktoken's file), found through an open-addressing table of ranks:
//! 1.8 MB of read-only data and 2.8 MB of heap. The splitting pattern (its
//! one look-ahead applied by hand, see [`SPLIT`]) and the merge loop are
//! tiktoken's, so the counts are the same (tested against it, token by
//! token and text by text).

use std::sync::LazyLock;

/// `o200k_base` as `build.rs` writes it: the token count (u32,
/// little-endian), each token's length (a byte), every token's bytes.
static FILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.bin"));

/// The pattern that cuts text into pieces before merging: tiktoken's
/// `O200K_BASE_PAT_STR` without its one look-ahead alternative,
/// `\s+(?!\S)`, which [`Vocabulary::count`] applies by hand (a test checks
/// that putting it back gives tiktoken's pattern).
///
/// Why: the look-ahead puts the whole pattern on `fancy_regex`'s
/// backtracking VM, about 200 ns a byte; without it `regex`'s automata
/// split text in a fraction of that (`examples/tokenizer.rs`).
pub(super) const SPLIT: &str = concat!(
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"\p{N}{1,3}"#,
    "|",
    r#" ?[^\s\p{L}\p{N}]+[\r\n/]*"#,
    "|",
    r#"\s*[\r\n]+"#,
    "|",
    r#"\s+"#,
);

/// A token's rank.
type Rank = u32;

/// The vocabulary and the splitting regex.
pub(super) struct Vocabulary {
    /// Every token's bytes, in rank order.
    bytes: &'static [u8],
    /// Where each rank's bytes start in `bytes`; one more entry than ranks.
    starts: Box<[u32]>,
    /// Open addressing by [`hash`]: `rank + 1`, or 0 for an empty slot; a
    /// power of two long.
    slots: Box<[u32]>,
    /// [`SPLIT`], compiled.
    split: regex::Regex,
}

/// The one vocabulary, built at first use (`tokens::warm_up` does it at
/// start).
pub(super) static O200K_BASE: LazyLock<Vocabulary> = LazyLock::new(Vocabulary::load);

impl Vocabulary {
    fn load() -> Vocabulary {
        let count = u32::from_le_bytes(FILE[..4].try_into().expect("four bytes")) as usize;
        let lengths = &FILE[4..4 + count];
        let bytes = &FILE[4 + count..];
        let mut starts = Vec::with_capacity(count + 1);
        let mut at = 0u32;
        for &length in lengths {
            starts.push(at);
            at += u32::from(length);
        }
        starts.push(at);
        assert_eq!(at as usize, bytes.len(), "o200k_base.bin is whole");
        // At most 40% full: an absent piece's probe stops within a few
        // slots.
        let size = (count * 5 / 2).next_power_of_two();
        let mut vocabulary = Vocabulary {
            bytes,
            starts: starts.into_boxed_slice(),
            slots: vec![0; size].into_boxed_slice(),
            split: regex::Regex::new(SPLIT).expect("the o200k_base pattern compiles"),
        };
        for rank in 0..count as Rank {
            let mut slot = vocabulary.slot_of(vocabulary.token(rank));
            while vocabulary.slots[slot] != 0 {
                slot = vocabulary.next(slot);
            }
            vocabulary.slots[slot] = rank + 1;
        }
        vocabulary
    }

    /// The bytes of `rank`.
    fn token(&self, rank: Rank) -> &[u8] {
        let r = rank as usize;
        &self.bytes[self.starts[r] as usize..self.starts[r + 1] as usize]
    }

    fn slot_of(&self, bytes: &[u8]) -> usize {
        // The high bits: a multiplicative hash mixes upwards.
        (hash(bytes) >> 32) as usize & (self.slots.len() - 1)
    }

    /// The slot probed after `slot`.
    fn next(&self, slot: usize) -> usize {
        (slot + 1) & (self.slots.len() - 1)
    }

    /// The rank of the token `bytes`, if it is one.
    pub(super) fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        let mut slot = self.slot_of(bytes);
        loop {
            match self.slots[slot] {
                0 => return None,
                r if self.token(r - 1) == bytes => return Some(r - 1),
                _ => slot = self.next(slot),
            }
        }
    }

    /// How many tokens `text` encodes to (tiktoken's `encode_ordinary`,
    /// counted).
    pub(super) fn count(&self, text: &str) -> u64 {
        let mut total = 0;
        let mut at = 0;
        while let Some(found) = self.split.find_at(text, at) {
            let mut end = found.end();
            let piece = found.as_str();
            // tiktoken's `\s+(?!\S)`, tried before the last `\s+`: a run of
            // spaces followed by a non-space leaves its last character to
            // start the next piece. Only the last alternative gives a run
            // with no line break and something after it (a run holding one
            // ends at it, by the alternative before).
            if end < text.len()
                && !piece.ends_with(['\r', '\n'])
                && piece.chars().all(char::is_whitespace)
            {
                let mut chars = piece.chars();
                if let (Some(last), Some(_)) = (chars.next_back(), chars.next()) {
                    end -= last.len_utf8();
                }
            }
            total += self.count_piece(&text.as_bytes()[found.start()..end]);
            at = end;
        }
        total
    }

    fn count_piece(&self, piece: &[u8]) -> u64 {
        match piece.len() {
            0 => 0,
            1 => 1,
            _ if self.rank(piece).is_some() => 1,
            _ => (self.merge(piece).len() - 1) as u64,
        }
    }

    /// tiktoken's `_byte_pair_merge`: the boundaries left once the lowest
    /// ranked adjacent pair is merged, again and again.
    fn merge(&self, piece: &[u8]) -> Vec<(usize, Rank)> {
        let rank = |range: &[u8]| self.rank(range).unwrap_or(Rank::MAX);
        let mut parts: Vec<(usize, Rank)> = Vec::with_capacity(piece.len() + 1);
        let mut min = (Rank::MAX, usize::MAX);
        for i in 0..piece.len() - 1 {
            let r = rank(&piece[i..i + 2]);
            if r < min.0 {
                min = (r, i);
            }
            parts.push((i, r));
        }
        parts.push((piece.len() - 1, Rank::MAX));
        parts.push((piece.len(), Rank::MAX));
        let rank_at = |parts: &[(usize, Rank)], i: usize| {
            if i + 3 < parts.len() {
                rank(&piece[parts[i].0..parts[i + 3].0])
            } else {
                Rank::MAX
            }
        };
        while min.0 != Rank::MAX {
            let i = min.1;
            if i > 0 {
                parts[i - 1].1 = rank_at(&parts, i - 1);
            }
            parts[i].1 = rank_at(&parts, i);
            parts.remove(i + 1);
            min = (Rank::MAX, usize::MAX);
            for (i, &(_, r)) in parts[..parts.len() - 1].iter().enumerate() {
                if r < min.0 {
                    min = (r, i);
                }
            }
        }
        parts
    }
}

/// FxHash's step over eight bytes at a time, seeded with the length.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let step = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut h = step(0, bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        h = step(
            h,
            u64::from_le_bytes(chunk.try_into().expect("eight bytes")),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(word));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_with_its_look_ahead_is_tiktokens() {
        let split = SPLIT.strip_suffix(r"|\s+").unwrap();
        assert_eq!(
            format!(r"{split}|\s+(?!\S)|\s+"),
            tiktoken_rs::O200K_BASE_PAT_STR
        );
    }

    /// Random texts over the characters the pattern treats differently
    /// (whitespace of every kind, line breaks, contractions, digits,
    /// marks, title and modifier letters, CJK, emoji): the hand-applied
    /// look-ahead cuts where tiktoken's regex does.
    #[test]
    fn random_texts_are_cut_and_counted_as_tiktoken_does() {
        const PARTS: &[&str] = &[
            " ", "  ", "\n", "\r", "\r\n", "\t", "\u{a0}", "\u{3000}", "\u{2028}", "\u{200b}", "a",
            "word", "Z", "WORD", "'s", "'T", "'ll", "'d", "'", "1", "23", "4567", ".", ",", "/",
            "!?", "-", "_", "\"", "{", "é", "É", "ß", "\u{301}", "ǅ", "ʰ", "Ω", "東京", "ん", "🚀",
            "👍🏽", "٣", "x2",
        ];
        let bpe = tiktoken_rs::o200k_base_singleton();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = 1 + next() % 24;
            let text: String = (0..len)
                .map(|_| PARTS[(next() % PARTS.len() as u64) as usize])
                .collect();
            assert_eq!(
                O200K_BASE.count(&text),
                bpe.encode_ordinary(&text).len() as u64,
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_token_has_its_tiktoken_rank() {
        let bpe = tiktoken_rs::o200k_base_singleton();
        let count = O200K_BASE.starts.len() - 1;
        assert_eq!(count, 199_998);
        let ranks: Vec<Rank> = (0..count as Rank).collect();
        for (rank, bytes) in bpe._decode_native_and_split(ranks).enumerate() {
            assert_eq!(O200K_BASE.token(rank as Rank), bytes.as_slice());
            assert_eq!(O200K_BASE.rank(&bytes), Some(rank as Rank));
        }
        assert_eq!(O200K_BASE.rank(b"not a token at all, surely"), None);
    }
}
