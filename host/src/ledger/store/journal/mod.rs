//! The record journal: where a call row is durable before SQLite has it,
//! so that an answer's last byte waits for a copy into the page cache
//! rather than for a group commit.
//!
//! Why it exists, measured (BENCHMARKS.md, "With the ledger on the request
//! path"): when every answer waited for its SQLite commit, concurrency 1
//! lost 37% of its requests per second and gained 145 µs of CPU per
//! request. Each answer paid a wake-up of the writer thread, a transaction
//! that rewrote the table's and its indexes' last B-tree pages into the
//! WAL for a single row, and a wake-up back. Appending a framed record to
//! a file is a copy into the page cache (through a shared mapping, see
//! `segment`), which a process crash (`kill -9`) cannot lose: the kernel
//! owns the page. The writer thread then inserts the journaled records
//! into SQLite in batches, `[ledger] apply_delay_ms` after the first of
//! them, and stores the last applied sequence number in the same
//! transaction, so the replay at the next open applies each record
//! exactly once.
//!
//! Used with `[ledger] sync = "normal"` only: the journal is never synced,
//! so a power loss or OS crash can lose the records the kernel had not yet
//! written back (its dirty-page expiry, 30 s by default on Linux), as
//! `synchronous=NORMAL` can lose commits since the last checkpoint. With
//! `sync = "full"` every record goes through a synced SQLite commit
//! before its answer ends.
//!
//! Files, beside the database:
//! - `PATH-records`: appended to;
//! - `PATH-records.1`: the previous one, until every record in it is
//!   applied (the journal rotates past [`ROTATE_BYTES`], so it never grows
//!   without bound under steady load);
//! - `PATH-records.lock`: held with `flock` by the one process that owns
//!   the journal. Another process opening the same ledger (say
//!   `pointsman report` while the daemon runs) gets no journal and writes
//!   straight to SQLite; once the owner is gone (even by `kill -9`, which
//!   drops the lock) the next process to open the ledger replays it.
//!
//! A frame is the length of what follows the checksum (u32, little-endian),
//! a CRC-32 of it (u32), then the sequence number (u64), a format byte and
//! the record. The format is [`POSTCARD_V1`]: the entry in `postcard`'s
//! compact binary encoding, which took a typical record's encoding from
//! 1.7–3.5 µs of CPU to 1.1–1.8 µs and its bytes from 877 to 318
//! (`examples/journal_append`; BENCHMARKS.md, "The record journal's
//! append"). Frames written before it hold JSON straight after the
//! sequence number (their "format byte" is the JSON's `{`), and are still
//! read. A zero length is the end of what was written (the file is
//! allocated ahead of its frames); a torn last frame (a power loss
//! mid-append) fails its checksum, and it and anything after it are
//! dropped at the replay.
//!
//! `postcard` is not self-describing: a record is read back with the
//! field list it was written with. A change to [`CallRecord`]'s fields
//! (or to what they hold) therefore needs a new format byte, with the old
//! layout kept for reading; the test `the_postcard_layout_is_pinned`
//! fails until that is done.

mod segment;

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use segment::Segment;

use super::budget::Reservation;
use super::writer::Write;
use crate::ledger::record::CallRecord;

/// Past this many bytes the journal starts a new file at the writer's
/// next batch (the old one is deleted once its records are applied).
pub(crate) const ROTATE_BYTES: u64 = 8 << 20;

/// Bytes of a frame before its sequence number: length and checksum.
const HEAD: usize = 8;

/// The format byte of a frame whose entry is `postcard`-encoded with
/// today's [`Entry`] layout.
const POSTCARD_V1: u8 = 1;

/// What follows the checksum before the record: sequence number and
/// format byte.
const PREFIX: usize = 9;

/// Bytes reserved for a frame before encoding: a typical call record's
/// frame is about 340, so one allocation usually holds it (growing from
/// empty took five reallocations on the request path).
const FRAME_CAPACITY: usize = 512;

/// Most bytes of room kept for the next batch's frames: about 3,000
/// typical records, what 50 ms holds at 60,000 requests a second.
const PENDING_ROOM: usize = 1 << 20;

/// Most bytes one frame may claim; a longer length is a torn or foreign
/// frame. (A call record is a few KiB; with `keep_requests =
/// "policy-view"` it holds the bounded view a policy sees.)
const MAX_FRAME: usize = 64 << 20;

/// A journaled call: the record and the budget scopes its settlement adds
/// its cost to.
#[derive(Deserialize)]
pub(crate) struct Entry {
    pub(crate) call: CallRecord,
    /// Absent from JSON frames without scopes.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
}

/// An [`Entry`] to write, borrowed.
#[derive(Serialize)]
struct EntryRef<'a> {
    call: &'a CallRecord,
    scopes: &'a [String],
}

impl Entry {
    /// The write that applies this entry: the call row, and its cost added
    /// to its scopes' spend (the reservation itself died with the process
    /// that held it).
    pub(crate) fn into_write(self) -> Write {
        let settle = (!self.scopes.is_empty()).then(|| Reservation {
            scopes: self.scopes,
            ..Reservation::none()
        });
        Write::Call(Box::new(self.call), settle)
    }
}

/// The records [`Journal::take`] hands the writer: their frames as
/// written, and the live reservations they settle.
pub(crate) struct Taken {
    /// The sequence number of the last record.
    pub(crate) upto: u64,
    frames: Vec<u8>,
    settles: Vec<(u64, Reservation)>,
}

impl Taken {
    /// Decodes the records into the writes that apply them, in order; each
    /// call settles its live reservation (its scopes' spend and its hold).
    pub(crate) fn into_writes(self) -> Vec<Write> {
        // A typical frame is about 340 bytes: room for every record at
        // once, with a little to spare.
        let mut writes = Vec::with_capacity(self.frames.len() / (FRAME_CAPACITY / 2) + 1);
        let mut settles = self.settles.into_iter().peekable();
        let mut at = 0;
        while at < self.frames.len() {
            let Some((seq, entry, used)) = frame_at(&self.frames[at..]) else {
                // Frames this process encoded a moment ago, with the code
                // that decodes them: only a bug gets here (the pinned
                // layout test guards the likeliest one). Say it loudly.
                tracing::error!(
                    bytes = self.frames.len() - at,
                    upto = self.upto,
                    "a bug: ledger records the journal holds could not be decoded, and are not stored"
                );
                break;
            };
            at += used;
            match settles.next_if(|(s, _)| *s == seq) {
                Some((_, settle)) => writes.push(Write::Call(Box::new(entry.call), Some(settle))),
                None => writes.push(entry.into_write()),
            }
        }
        writes
    }
}

/// The journal files of the database at `db`.
struct Paths {
    current: PathBuf,
    previous: PathBuf,
    lock: PathBuf,
}

impl Paths {
    fn of(db: &Path) -> Paths {
        let with = |suffix: &str| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Paths {
            current: with("-records"),
            previous: with("-records.1"),
            lock: with("-records.lock"),
        }
    }
}

struct State {
    file: Segment,
    next_seq: u64,
    /// Frames appended, not yet handed to the writer, as they were
    /// written: the writer decodes them on its own thread (see
    /// [`Journal::append`]).
    pending: Vec<u8>,
    /// The live reservations the pending calls settle, by sequence number.
    settles: Vec<(u64, Reservation)>,
    /// The sequence number of the last frame in `pending`.
    last_seq: u64,
    /// Every record up to this sequence number is in SQLite.
    applied_seq: u64,
    /// The last sequence number in the previous file, while it exists.
    previous_upto: Option<u64>,
}

impl State {
    /// Whether a record appended is not yet in SQLite.
    fn unapplied(&self) -> bool {
        self.next_seq - 1 > self.applied_seq
    }
}

/// The journal of one SQLite ledger, owned by this process.
pub(crate) struct Journal {
    paths: Paths,
    state: Mutex<State>,
    /// Held for the journal's life: the `flock` is what makes this process
    /// its only owner.
    _lock: File,
}

/// What an earlier process left in the journal: entries in order, each
/// with its sequence number.
pub(crate) type Leftover = Vec<(u64, Entry)>;

impl Journal {
    /// Takes the journal of the database at `db`, reading what an earlier
    /// process left in it. `None` when another live process owns it.
    pub(crate) fn open(db: &Path) -> io::Result<Option<(Journal, Leftover)>> {
        let paths = Paths::of(db);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&paths.lock)?;
        // SAFETY: a valid, open descriptor for the call's duration.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let mut leftover = Vec::new();
        read_frames(&paths.previous, &mut leftover)?;
        let end = read_frames(&paths.current, &mut leftover)?;
        let file = Segment::open(&paths.current, end)?;
        let next_seq = leftover.last().map_or(1, |(seq, _)| seq + 1);
        let journal = Journal {
            state: Mutex::new(State {
                file,
                next_seq,
                pending: Vec::new(),
                settles: Vec::new(),
                last_seq: 0,
                applied_seq: 0,
                previous_upto: None,
            }),
            paths,
            _lock: lock,
        };
        Ok(Some((journal, leftover)))
    }

    /// After the leftover is applied (or found applied): empties the files
    /// and numbers the next record after `applied`.
    pub(crate) fn reset(&self, applied: u64) -> io::Result<()> {
        let mut state = self.lock();
        remove_if_present(&self.paths.previous)?;
        state.file.truncate()?;
        state.next_seq = state.next_seq.max(applied + 1);
        state.applied_seq = applied;
        state.previous_upto = None;
        Ok(())
    }

    /// Appends `call` and keeps its frame for the writer. Returns whether
    /// the journal held nothing for the writer before (the caller then
    /// wakes the writer, once per batch rather than once per record).
    ///
    /// The writer gets the frame's bytes, not `call`: it decodes them on
    /// its own thread. Handing it the record instead meant a few dozen
    /// allocations made on a request's thread and freed on the writer's,
    /// each a cross-thread free the allocator must later collect, and
    /// 50 ms of records (`apply_delay_ms`) kept out of the request
    /// threads' reuse. Measured in BENCHMARKS.md, "The journal hands the
    /// writer bytes".
    pub(crate) fn append(
        &self,
        call: &CallRecord,
        settle: Option<Reservation>,
    ) -> io::Result<bool> {
        let scopes = settle.as_ref().map_or(&[][..], |r| r.scopes.as_slice());
        let mut frame = Vec::with_capacity(FRAME_CAPACITY);
        frame.resize(HEAD + PREFIX, 0);
        frame[HEAD + 8] = POSTCARD_V1;
        let mut frame =
            postcard::to_extend(&EntryRef { call, scopes }, frame).map_err(io::Error::other)?;
        let body = u32::try_from(frame.len() - HEAD)
            .ok()
            .filter(|n| (*n as usize) <= MAX_FRAME)
            .ok_or_else(|| io::Error::other("a call record too large to journal"))?;
        frame[..4].copy_from_slice(&body.to_le_bytes());
        let mut state = self.lock();
        let seq = state.next_seq;
        frame[HEAD..HEAD + 8].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&frame[HEAD..]);
        frame[4..HEAD].copy_from_slice(&crc.to_le_bytes());
        state.file.append(&frame)?;
        state.next_seq = seq + 1;
        let first = state.pending.is_empty();
        state.pending.extend_from_slice(&frame);
        if let Some(settle) = settle {
            state.settles.push((seq, settle));
        }
        state.last_seq = seq;
        Ok(first)
    }

    /// The journal file, for messages.
    pub(crate) fn name(&self) -> String {
        self.paths.current.display().to_string()
    }

    /// Whether a record appended is not yet in SQLite: waiting for the
    /// writer, or in the batch it is committing now (a read must wait for
    /// that one too).
    pub(crate) fn has_pending(&self) -> bool {
        self.lock().unapplied()
    }

    /// Hands the waiting records to the writer, with the sequence number
    /// of the last; rotates the file when it is large and the previous
    /// one is gone.
    pub(crate) fn take(&self) -> Option<Taken> {
        let mut state = self.lock();
        if state.pending.is_empty() {
            return None;
        }
        let upto = state.last_seq;
        if state.file.len() >= ROTATE_BYTES && state.previous_upto.is_none() {
            match self.rotate(&mut state) {
                Ok(()) => state.previous_upto = Some(upto),
                Err(e) => {
                    tracing::warn!(error = %e, "the ledger's record journal could not start a new file; it keeps growing")
                }
            }
        }
        // The next batch likely needs as much room as this one (appends
        // then never reallocate), but not more than a steady load's batch.
        let room = state.pending.len().min(PENDING_ROOM);
        Some(Taken {
            upto,
            frames: std::mem::replace(&mut state.pending, Vec::with_capacity(room)),
            settles: std::mem::take(&mut state.settles),
        })
    }

    fn rotate(&self, state: &mut State) -> io::Result<()> {
        std::fs::rename(&self.paths.current, &self.paths.previous)?;
        state.file = Segment::open(&self.paths.current, 0)?;
        Ok(())
    }

    /// Every record up to `seq` is in SQLite: the previous file can go.
    pub(crate) fn applied(&self, seq: u64) {
        let mut state = self.lock();
        state.applied_seq = state.applied_seq.max(seq);
        if state.previous_upto.is_some_and(|upto| upto <= seq) {
            match remove_if_present(&self.paths.previous) {
                Ok(()) => state.previous_upto = None,
                Err(e) => {
                    tracing::warn!(error = %e, "the ledger's previous record journal could not be deleted")
                }
            }
        }
    }

    /// At a clean close, after the last batch: empties the files if every
    /// record is applied (otherwise the next open replays them).
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        if state.unapplied() || state.previous_upto.is_some() {
            return;
        }
        if let Err(e) = state.file.truncate() {
            tracing::warn!(error = %e, "the ledger's record journal could not be emptied; the next start skips what it holds");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads `path`'s whole frames into `out`, up to its end (a zero length)
/// or its first torn or corrupt frame (logging what that drops). Returns
/// where the frames read end. A missing file holds nothing.
fn read_frames(path: &Path, out: &mut Leftover) -> io::Result<u64> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    }
    let mut at = 0;
    while bytes.len() - at >= 4 && bytes[at..at + 4] != [0; 4] {
        match frame_at(&bytes[at..]) {
            Some((seq, entry, used)) => {
                out.push((seq, entry));
                at += used;
            }
            None => {
                // The zeros the file was allocated with are not dropped
                // records.
                let written = bytes.iter().rposition(|b| *b != 0).map_or(at, |i| i + 1);
                tracing::warn!(
                    file = %path.display(),
                    dropped_bytes = written - at,
                    "the ledger's record journal ends in a torn or corrupt frame (a power loss mid-write); what follows it is dropped"
                );
                break;
            }
        }
    }
    Ok(at as u64)
}

/// The frame at the start of `bytes`: its sequence number, entry and
/// length; None if it is torn or corrupt.
fn frame_at(bytes: &[u8]) -> Option<(u64, Entry, usize)> {
    let body = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..HEAD)?.try_into().ok()?);
    if !(PREFIX..=MAX_FRAME).contains(&body) {
        return None;
    }
    let frame = bytes.get(HEAD..HEAD + body)?;
    if crc32fast::hash(frame) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(frame[..8].try_into().ok()?);
    let entry = match frame[8] {
        POSTCARD_V1 => postcard::from_bytes(&frame[PREFIX..]).ok()?,
        // Written before the format byte: JSON from the sequence number on.
        b'{' => serde_json::from_slice(&frame[8..]).ok()?,
        _ => return None,
    };
    Some((seq, entry, HEAD + body))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small call record named `id`.
    pub(crate) fn call(id: &str) -> Box<CallRecord> {
        let mut call: CallRecord = serde_json::from_value(serde_json::json!({
            "request_id": id, "task_id": null, "at_ms": 1, "client": "c", "labels": {},
            "session": null, "api": "chat-completions", "role": "answer", "stream": false,
            "requested_model": "auto", "router": null, "planner": null, "tier": null,
            "reasoning": null, "served_model": null, "provider": null, "endpoint": null,
            "attempts": [], "escalated": false, "input_tokens": 1, "output_tokens": 2,
            "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_nanos": 5,
            "baseline_nanos": 9, "latency_ms": 3, "ttft_ms": null, "status": "ok",
            "error_class": null, "arm": null, "shadow": null, "route_labels": {},
            "policy_view": null
        }))
        .unwrap();
        call.request_id = id.to_string();
        Box::new(call)
    }

    /// A call whose frame alone fills a journal file (a kept policy view
    /// can be this large), and is larger than a mapping window.
    fn large_call(id: &str) -> Box<CallRecord> {
        let mut call = call(id);
        call.policy_view = Some("v".repeat(ROTATE_BYTES as usize));
        call
    }

    fn ids(leftover: &Leftover) -> Vec<(u64, String)> {
        leftover
            .iter()
            .map(|(seq, e)| (*seq, e.call.request_id.clone()))
            .collect()
    }

    #[test]
    fn what_a_dead_process_appended_is_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        {
            let (journal, leftover) = Journal::open(&db).unwrap().unwrap();
            assert!(leftover.is_empty());
            let settle = Reservation {
                scopes: vec!["client:a".into()],
                ..Reservation::none()
            };
            assert!(journal.append(&call("r1"), Some(settle)).unwrap());
            assert!(!journal.append(&call("r2"), None).unwrap());
        }
        let (journal, leftover) = Journal::open(&db).unwrap().unwrap();
        assert_eq!(ids(&leftover), [(1, "r1".into()), (2, "r2".into())]);
        assert_eq!(leftover[0].1.scopes, ["client:a"]);
        journal.reset(2).unwrap();
        journal.append(&call("r3"), None).unwrap();
        drop(journal);
        let (_, leftover) = Journal::open(&db).unwrap().unwrap();
        assert_eq!(ids(&leftover), [(3, "r3".into())]);
    }

    #[test]
    fn a_torn_last_frame_is_dropped_with_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        {
            let (journal, _) = Journal::open(&db).unwrap().unwrap();
            journal.append(&call("r1"), None).unwrap();
            journal.append(&call("r2"), None).unwrap();
        }
        // A byte of the second frame's record lost (the first frame's
        // length is its first word).
        let path = Paths::of(&db).current;
        let mut bytes = std::fs::read(&path).unwrap();
        let first = HEAD + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[first + HEAD + PREFIX + 2] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (journal, leftover) = Journal::open(&db).unwrap().unwrap();
        assert_eq!(ids(&leftover), [(1, "r1".into())]);
        // The next record goes where the torn one was.
        journal.append(&call("r3"), None).unwrap();
        drop(journal);
        let (_, leftover) = Journal::open(&db).unwrap().unwrap();
        assert_eq!(ids(&leftover), [(1, "r1".into()), (2, "r3".into())]);
    }

    #[test]
    fn appends_across_many_mapping_windows_read_back_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let (journal, _) = Journal::open(&db).unwrap().unwrap();
        let count = 3 * segment::WINDOW / 300;
        for i in 0..count {
            journal.append(&call(&format!("r{i}")), None).unwrap();
        }
        drop(journal);
        let (_, leftover) = Journal::open(&db).unwrap().unwrap();
        let want: Vec<(u64, String)> = (0..count)
            .map(|i| (i as u64 + 1, format!("r{i}")))
            .collect();
        assert_eq!(ids(&leftover), want);
    }

    #[test]
    fn json_frames_from_before_the_format_byte_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let mut body = 4u64.to_le_bytes().to_vec();
        let mut json = serde_json::to_value(call("old")).unwrap();
        json["request_id"] = "old".into();
        serde_json::to_writer(&mut body, &serde_json::json!({ "call": json })).unwrap();
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend(crc32fast::hash(&body).to_le_bytes());
        frame.extend(&body);
        std::fs::write(Paths::of(&db).current, &frame).unwrap();
        let (journal, leftover) = Journal::open(&db).unwrap().unwrap();
        assert_eq!(ids(&leftover), [(4, "old".into())]);
        assert!(leftover[0].1.scopes.is_empty());
        // New records follow it, numbered on.
        journal.append(&call("new"), None).unwrap();
        drop(journal);
        let (_, leftover) = Journal::open(&db).unwrap().unwrap();
        assert_eq!(ids(&leftover), [(4, "old".into()), (5, "new".into())]);
    }

    /// `postcard` reads a record back only with the layout it was written
    /// with. If this fails, `CallRecord` (or a type in it) changed: give
    /// the new layout a new format byte, keep decoding `POSTCARD_V1` frames
    /// with the old layout (a journal left by a crash is replayed by the
    /// next binary), then update the bytes here.
    #[test]
    fn the_postcard_layout_is_pinned() {
        let mut c = *call("pm-1-2");
        c.task_id = Some("t".into());
        c.labels.insert("team".into(), "a".into());
        c.session = Some("s".into());
        c.api = crate::ledger::record::Api::Messages;
        c.role = crate::ledger::record::CallRole::Executor;
        c.stream = true;
        c.router = Some("r@1".into());
        c.planner = Some("p@2".into());
        c.tier = Some("direct".into());
        c.reasoning = Some("why".into());
        c.served_model = Some("m".into());
        c.provider = Some("pr".into());
        c.endpoint = Some("e".into());
        c.attempts.push(crate::ledger::record::AttemptRecord {
            model: "m".into(),
            provider: "pr".into(),
            outcome: "ok".into(),
        });
        c.escalated = true;
        c.cache_read_tokens = 300;
        c.cache_write_tokens = 4;
        c.ttft_ms = Some(7);
        c.status = crate::ledger::record::CallStatus::Broken;
        c.error_class = Some("timeout".into());
        c.arm = Some("candidate".into());
        c.shadow = Some("{}".into());
        c.route_labels.insert("k".into(), "v".into());
        c.policy_view = Some("{}".into());
        let scopes = ["client:a".to_string()];
        let bytes = postcard::to_allocvec(&EntryRef {
            call: &c,
            scopes: &scopes,
        })
        .unwrap();
        assert_eq!(hex::encode(&bytes), PINNED, "see this test's docs");
        let back: Entry = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.call, c);
        assert_eq!(back.scopes, scopes);
    }

    const PINNED: &str = concat!(
        "06706d2d312d3201017402016301047465616d0161010173020201046175746f",
        "010372403101037040320106646972656374010377687901016d010270720101",
        "6501016d027072026f6b010102ac02040a1203010702010774696d656f757401",
        "0963616e64696461746501027b7d01016b017601027b7d0108636c69656e743a",
        "61",
    );

    #[test]
    fn a_second_opener_gets_no_journal_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let first = Journal::open(&db).unwrap();
        assert!(first.is_some());
        assert!(Journal::open(&db).unwrap().is_none());
        drop(first);
        assert!(Journal::open(&db).unwrap().is_some());
    }

    #[test]
    fn a_large_journal_rotates_and_drops_the_old_file_once_applied() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let paths = Paths::of(&db);
        let (journal, _) = Journal::open(&db).unwrap().unwrap();
        journal.append(&large_call("r1"), None).unwrap();
        let taken = journal.take().unwrap();
        assert_eq!((taken.upto, taken.into_writes().len()), (1, 1));
        assert!(paths.previous.exists());
        journal.append(&call("r2"), None).unwrap();
        // Not applied yet: both files are read back, in order.
        drop(journal);
        let (journal, leftover) = Journal::open(&db).unwrap().unwrap();
        assert_eq!(ids(&leftover), [(1, "r1".into()), (2, "r2".into())]);
        journal.reset(2).unwrap();
        assert!(!paths.previous.exists());
        journal.append(&large_call("r3"), None).unwrap();
        let upto = journal.take().unwrap().upto;
        journal.applied(upto);
        assert!(!paths.previous.exists());
    }

    #[test]
    fn a_batch_being_committed_is_still_pending_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let (journal, _) = Journal::open(&db).unwrap().unwrap();
        journal.reset(7).unwrap();
        assert!(!journal.has_pending());
        journal.append(&call("r8"), None).unwrap();
        let upto = journal.take().unwrap().upto;
        assert_eq!(upto, 8);
        // Taken by the writer, not yet committed: a read still waits.
        assert!(journal.has_pending());
        journal.applied(upto);
        assert!(!journal.has_pending());
    }

    #[test]
    fn the_writer_gets_each_record_with_its_live_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let (journal, _) = Journal::open(&db).unwrap().unwrap();
        let held = |id: i64| Reservation {
            id,
            scopes: vec![format!("client:{id}")],
            amount: 100 * id,
            ..Reservation::none()
        };
        journal.append(&call("r1"), Some(held(1))).unwrap();
        journal.append(&call("r2"), None).unwrap();
        journal.append(&call("r3"), Some(held(3))).unwrap();
        let taken = journal.take().unwrap();
        assert_eq!(taken.upto, 3);
        assert!(journal.take().is_none());
        let got: Vec<_> = taken
            .into_writes()
            .into_iter()
            .map(|w| match w {
                Write::Call(c, settle) => (c.request_id.clone(), settle.map(|r| (r.id, r.amount))),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("r1".to_string(), Some((1, 100))),
                ("r2".to_string(), None),
                ("r3".to_string(), Some((3, 300))),
            ]
        );
        // The next batch starts empty.
        journal.append(&call("r4"), None).unwrap();
        assert_eq!(journal.take().unwrap().into_writes().len(), 1);
    }
}
