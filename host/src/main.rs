//! The `pointsman` binary.

// The request path allocates many small, short-lived buffers on every worker
// thread; under load glibc's malloc and free took about 7% of the daemon's CPU
// (`bench/profile`), mimalloc's thread-local free lists much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pointsman::cli::main()
}
