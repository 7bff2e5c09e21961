//! What the ledger's record journal costs an answer, and what its parts
//! would cost done the other way: a call record's encoding as JSON against
//! `postcard`, and a frame appended with `write(2)` to an `O_APPEND` file
//! against the journal's own append (a copy into a shared mapping), and
//! what decoding a frame costs the writer thread.
//!
//!     cargo run --release -p pointsman --example journal_append -- 100000
//!
//! The last two lines open a real SQLite ledger (`sync = "normal"`, so
//! through the journal) and record the calls one after another, as
//! answers do: CPU of the recording thread per call (the request path:
//! encoding, checksum, the journal's lock, the append, the writer's
//! wake-up), then of the whole process once the writer has inserted every
//! row (the request path plus the writer thread). BENCHMARKS.md, "The
//! record journal's append", has the figures and what they decided.

mod common;

use std::io::Write as _;

use pointsman::config::ledger::LedgerConfig;
use pointsman::ledger::Ledger;
use pointsman::ledger::record::CallRecord;
use serde::Serialize;

/// What a journal frame holds after its sequence number: the record and
/// its budget scopes.
#[derive(Serialize)]
struct Entry<'a> {
    call: &'a CallRecord,
    scopes: &'a [String],
}

impl<'a> Entry<'a> {
    fn new(call: &'a CallRecord, scopes: &'a [String]) -> Entry<'a> {
        Entry { call, scopes }
    }
}

/// [`Entry`] as the writer decodes it.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // decoded to be measured, never read
struct OwnedEntry {
    call: CallRecord,
    scopes: Vec<String>,
}

fn thread_cpu() -> f64 {
    common::cpu_seconds("/proc/thread-self/stat")
}

fn process_cpu() -> f64 {
    common::cpu_seconds("/proc/self/stat")
}

/// Runs `each` over `records`, printing the calling thread's CPU per record.
fn per_record(label: &str, records: &[CallRecord], mut each: impl FnMut(&CallRecord)) {
    let started = thread_cpu();
    for record in records {
        each(record);
    }
    println!(
        "{label}: {:.2} µs CPU per record",
        (thread_cpu() - started) / records.len() as f64 * 1e6
    );
}

/// Appends `frame` once per record by copying it into a shared mapping of
/// a file, as the journal's `Segment` does (its window is 1 MiB and
/// slides; this one maps the whole run at once, so it shows the copy and
/// its page faults without the slides).
fn copy_into_mapping(
    path: &std::path::Path,
    frame: &[u8],
    records: &[CallRecord],
) -> anyhow::Result<()> {
    use std::os::unix::io::AsRawFd;
    let size = frame.len() * records.len();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: plain system calls on a descriptor owned here; the mapping
    // is checked before use and unmapped before the file is dropped.
    unsafe {
        let rc = libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t);
        anyhow::ensure!(
            rc == 0,
            "posix_fallocate: {}",
            std::io::Error::from_raw_os_error(rc)
        );
        let map = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        anyhow::ensure!(
            map != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let base = map.cast::<u8>();
        let mut at = 0;
        per_record("copying its frame into a shared mapping", records, |_| {
            std::ptr::copy_nonoverlapping(frame.as_ptr(), base.add(at), frame.len());
            at += frame.len();
        });
        libc::munmap(map, size);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let records = common::call_records_from_args(100_000)?;
    let count = records.len();
    let scopes = vec!["key:team-1".to_string()];

    let json = serde_json::to_vec(&Entry::new(&records[0], &scopes))?;
    let compact = postcard::to_allocvec(&Entry::new(&records[0], &scopes))?;
    println!(
        "bytes per record: JSON {}, postcard {}",
        json.len(),
        compact.len()
    );
    per_record("encoding as JSON (serde_json)", &records, |c| {
        std::hint::black_box(serde_json::to_vec(&Entry::new(c, &scopes)).expect("JSON"));
    });
    per_record("encoding with postcard", &records, |c| {
        std::hint::black_box(postcard::to_allocvec(&Entry::new(c, &scopes)).expect("postcard"));
    });
    // The writer thread's share since the journal hands it frames, not
    // records: each frame decoded into an owned record, then dropped.
    let encoded: Vec<Vec<u8>> = records
        .iter()
        .map(|c| postcard::to_allocvec(&Entry::new(c, &scopes)).expect("postcard"))
        .collect();
    let mut next = encoded.iter();
    per_record("decoding with postcard (the writer)", &records, |_| {
        let bytes = next.next().expect("one frame per record");
        std::hint::black_box(postcard::from_bytes::<OwnedEntry>(bytes).expect("decoded"));
    });
    drop(encoded);

    // A frame of the postcard record's size: length, checksum, sequence
    // number, format byte, record.
    let dir = tempfile::tempdir()?;
    let frame = vec![7u8; 8 + 9 + compact.len()];
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("frames"))?;
    per_record("appending its frame with write(2)", &records, |_| {
        file.write_all(&frame).expect("write");
    });
    drop(file);
    copy_into_mapping(&dir.path().join("mapped"), &frame, &records)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
        // A loop outruns the writer; room for every record it makes.
        let config = LedgerConfig {
            max_backlog: count.max(LedgerConfig::default().max_backlog),
            ..LedgerConfig::default()
        };
        let ledger = Ledger::open(&url, &config).await?;
        let process_started = process_cpu();
        let started = thread_cpu();
        for call in records {
            ledger.record(call, None).await?;
        }
        let request_path = thread_cpu() - started;
        ledger.close().await;
        let total = process_cpu() - process_started;
        println!(
            "Ledger::record, the recording thread (the request path): {:.2} µs CPU per record",
            request_path / count as f64 * 1e6
        );
        println!(
            "Ledger::record, the whole process (and the writer's inserts): {:.2} µs CPU per record",
            total / count as f64 * 1e6
        );
        anyhow::Ok(())
    })
}
