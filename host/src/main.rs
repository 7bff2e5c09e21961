//! The `pointsman` binary.

// The request path allocates many small, short-lived buffers on every worker
// thread; under load glibc's malloc and free took about 7% of the daemon's CPU
// (`bench/profile`), mimalloc's thread-local free lists much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    small_pages_unless_asked();
    pointsman::cli::main()
}

/// Turns transparent huge pages off for this process, unless its
/// environment sets `MIMALLOC_ALLOW_THP` (mimalloc's own switch: `=1`
/// turns them back on).
///
/// mimalloc asks the kernel for huge pages for its arenas, so every 2 MiB
/// region it touches is resident whole: at the load benchmark's
/// concurrency 64 the daemon peaked at 93–107 MiB with them and 66–71 MiB
/// without, against a 100 MB bound (BENCHMARKS.md, "Memory"). A daemon several teams share should hold memory it can
/// predict; what huge pages save (TLB misses on a busy heap) did not show
/// in the benchmark's CPU per request.
fn small_pages_unless_asked() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only
        // this process's (and its children's) page policy. A kernel without
        // it returns an error, which leaves things as they were.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}
