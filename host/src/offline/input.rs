//! JSON-lines input files, plain or gzip-compressed (detected by content,
//! not by name), read one line at a time with their line numbers.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;

/// The longest line read; a longer one is reported as malformed rather
/// than held in memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// One non-blank line of a JSON-lines file.
#[derive(Debug)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The line's text, or why it could not be read.
    pub text: Result<String, String>,
}

/// A line that could not be used, with why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Malformed {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Every non-blank line of `path` (gzip when it starts with gzip's magic
/// bytes), skipping `//` comment lines.
pub fn read_lines(path: &Path) -> anyhow::Result<Vec<Line>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let gzip = reader
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    };
    let mut lines = Vec::new();
    let mut reader = reader;
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{}: cannot read line {}", path.display(), number + 1))?;
        if read == 0 {
            break;
        }
        number += 1;
        if buf.len() > MAX_LINE_BYTES && !buf.ends_with(b"\n") {
            // Skip the rest of the over-long line.
            reader.skip_until(b'\n')?;
            lines.push(Line {
                number,
                text: Err(format!("longer than {MAX_LINE_BYTES} bytes")),
            });
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(text) => text.trim(),
            Err(_) => {
                lines.push(Line {
                    number,
                    text: Err("not UTF-8".into()),
                });
                continue;
            }
        };
        if text.is_empty() || text.starts_with("//") {
            continue;
        }
        lines.push(Line {
            number,
            text: Ok(text.to_string()),
        });
    }
    Ok(lines)
}

/// A one-line summary of malformed lines: how many, and the first few
/// line numbers with their reasons.
pub fn describe_malformed(path: &Path, malformed: &[Malformed]) -> String {
    let shown: Vec<String> = malformed
        .iter()
        .take(5)
        .map(|m| format!("line {}: {}", m.line, m.reason))
        .collect();
    let more = malformed.len().saturating_sub(shown.len());
    format!(
        "{}: {} malformed line(s): {}{}",
        path.display(),
        malformed.len(),
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}
