//! The CPU budget of a policy call, enforced with wasmtime's epochs.
//!
//! Epoch ticks are wall-clock, so on a busy machine a descheduled call would
//! run out of ticks without having used any CPU. So a call's ticks only
//! trigger a check, and the check compares the CPU time the call has used
//! with its budget.
//!
//! Reading a thread's CPU clock is a real system call (about 0.5 µs here,
//! as long as a whole Rust policy decision), so a call does not read it when
//! it starts. Nearly every call ends before the next tick and never reads it
//! at all. A call still running at a tick reads the clock there for the first
//! time and bounds what it used before by the wall-clock time from its start
//! to the first tick after it: a thread cannot use more CPU than time passes.
//! The ticker records when each tick happened, so this bound stays within one
//! tick of the truth even when the call's thread sat descheduled for many
//! ticks before it could notice.
//!
//! A daemon with no policy calls would still wake the ticker a thousand
//! times a second (about 2.5% of a core here), so after [`IDLE_AFTER`]
//! ticks without a call it ticks every [`IDLE_TICK`] instead, and the next
//! call to start wakes it. Should that wake-up be missed, budgets are still
//! enforced, only [`IDLE_TICK`] late: a running call's checks count as
//! activity and bring the fast ticks back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often the epoch advances.
pub const TICK: Duration = Duration::from_millis(1);

/// The tick of an idle ticker.
pub const IDLE_TICK: Duration = Duration::from_millis(50);

/// Ticks without a call after which the ticker is idle.
const IDLE_AFTER: u32 = 100;

/// How many recent ticks keep their time (a second of fast ticks); a call whose
/// first check comes later than that is charged its wall-clock time.
const REMEMBERED: u64 = 1024;

/// The thread that advances an engine's epoch, and the times of its ticks.
pub struct Ticker {
    clock: Arc<TickClock>,
    stop: Arc<AtomicBool>,
}

/// When recent ticks happened, in nanoseconds since `origin`.
pub struct TickClock {
    origin: Instant,
    /// Ticks so far. Tick `n`'s time is stored before `count` reaches `n`,
    /// and `count` before the engine's epoch moves.
    count: AtomicU64,
    at: Box<[AtomicU64]>,
    /// A call started or was checked since the last tick.
    active: AtomicBool,
    /// The ticker is idle: it ticks every [`IDLE_TICK`].
    idle: AtomicBool,
    ticker: OnceLock<Thread>,
}

impl Ticker {
    /// Starts ticking `engine` every [`TICK`] until the ticker is dropped.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let clock = Arc::new(TickClock::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, stopped) = (clock.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                let mut quiet = 0;
                while !stopped.load(Ordering::Relaxed) {
                    if quiet >= IDLE_AFTER {
                        // Woken early by the next call to start.
                        std::thread::park_timeout(IDLE_TICK);
                    } else {
                        std::thread::sleep(TICK);
                    }
                    ticking.tick();
                    engine.increment_epoch();
                    quiet = match ticking.active.swap(false, Ordering::Relaxed) {
                        true => 0,
                        false => quiet.saturating_add(1),
                    };
                    ticking.idle.store(quiet >= IDLE_AFTER, Ordering::Relaxed);
                }
            })?;
        let _ = clock.ticker.set(thread.thread().clone());
        Ok(Ticker { clock, stop })
    }

    /// The tick times, for budgets to start from.
    pub fn clock(&self) -> Arc<TickClock> {
        self.clock.clone()
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.clock.ticker.get() {
            thread.unpark();
        }
    }
}

impl TickClock {
    fn new() -> Self {
        TickClock {
            origin: Instant::now(),
            count: AtomicU64::new(0),
            at: (0..REMEMBERED).map(|_| AtomicU64::new(0)).collect(),
            active: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            ticker: OnceLock::new(),
        }
    }

    /// Keeps the ticker ticking fast, and wakes it if it is idle. Costs a
    /// shared read on nearly every call: the flag is written at most once
    /// per tick.
    fn mark_active(&self) {
        if !self.active.load(Ordering::Relaxed) {
            self.active.store(true, Ordering::Relaxed);
            if self.idle.load(Ordering::Relaxed)
                && let Some(thread) = self.ticker.get()
            {
                thread.unpark();
            }
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn tick(&self) {
        let n = self.count.load(Ordering::Relaxed) + 1;
        self.at[(n % REMEMBERED) as usize].store(self.now(), Ordering::Relaxed);
        self.count.store(n, Ordering::Release);
    }

    /// Wall-clock nanoseconds from `started` (a [`TickClock::now`] reading
    /// taken when the count was `count`) to the first tick after it, or to
    /// now if that tick has not happened or is too old to be remembered.
    fn until_tick_after(&self, count: u64, started: u64) -> u64 {
        let next = count + 1;
        let now = self.now();
        let end = if self.count.load(Ordering::Acquire) < next {
            now
        } else {
            let at = self.at[(next % REMEMBERED) as usize].load(Ordering::Relaxed);
            // Read the slot before checking that it was not reused since.
            if self.count.load(Ordering::Acquire) >= next + REMEMBERED {
                now
            } else {
                at
            }
        };
        end.saturating_sub(started)
    }
}

/// What one call may still use, and what it has used so far.
pub struct Budget {
    clock: Arc<TickClock>,
    cpu: Duration,
    count_at_start: u64,
    started: u64,
    /// The thread's CPU clock at the first check, and the bound on what the
    /// call used before it.
    first_check: Option<(Duration, Duration)>,
}

impl Budget {
    /// A spent budget on `clock`; [`Budget::arm`] starts a call.
    pub fn new(clock: Arc<TickClock>) -> Self {
        Budget {
            clock,
            cpu: Duration::ZERO,
            count_at_start: 0,
            started: 0,
            first_check: None,
        }
    }

    /// Starts a call that may use `cpu` of CPU time.
    pub fn arm(&mut self, cpu: Duration) {
        self.clock.mark_active();
        self.cpu = cpu;
        self.count_at_start = self.clock.count.load(Ordering::Acquire);
        self.started = self.clock.now();
        self.first_check = None;
    }

    /// Whether the call is still within its budget; called at each tick the
    /// call is running through.
    pub fn within(&mut self) -> bool {
        self.clock.mark_active();
        let cpu_now = thread_cpu_time();
        let (cpu_then, before) = *self.first_check.get_or_insert_with(|| {
            let before = self
                .clock
                .until_tick_after(self.count_at_start, self.started);
            (cpu_now, Duration::from_nanos(before))
        });
        before + cpu_now.saturating_sub(cpu_then) < self.cpu
    }
}

/// CPU time used by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; this clock exists on
    // every platform the daemon supports (Linux, macOS).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        // Fall back to wall-clock semantics: a budget that is never extended.
        return Duration::MAX;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget of `cpu` armed on a clock the test ticks by hand.
    fn armed(cpu: Duration) -> (Arc<TickClock>, Budget) {
        let clock = Arc::new(TickClock::new());
        let mut budget = Budget::new(clock.clone());
        budget.arm(cpu);
        (clock, budget)
    }

    fn spin(cpu: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time().saturating_sub(start) < cpu {}
    }

    #[test]
    fn time_asleep_before_the_first_check_is_not_charged() {
        let (clock, mut budget) = armed(Duration::from_millis(20));
        clock.tick();
        // Descheduled for longer than the whole budget after the tick.
        std::thread::sleep(Duration::from_millis(40));
        assert!(budget.within());
        clock.tick();
        assert!(budget.within());
    }

    #[test]
    fn cpu_used_after_the_first_check_is_charged() {
        let (clock, mut budget) = armed(Duration::from_millis(20));
        clock.tick();
        assert!(budget.within());
        spin(Duration::from_millis(25));
        assert!(!budget.within());
    }

    #[test]
    fn time_before_the_first_tick_counts_as_cpu() {
        let (clock, mut budget) = armed(Duration::from_millis(20));
        spin(Duration::from_millis(25));
        clock.tick();
        assert!(!budget.within());
    }

    #[test]
    fn arming_again_starts_a_fresh_call() {
        let (clock, mut budget) = armed(Duration::from_millis(5));
        spin(Duration::from_millis(6));
        clock.tick();
        assert!(!budget.within());
        budget.arm(Duration::from_millis(5));
        clock.tick();
        assert!(budget.within());
    }
}
