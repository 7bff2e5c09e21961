//! What a policy runs inside: a store with a memory cap, WASI with no
//! capabilities, and guest output sent to `tracing`.
//!
//! WASI is linked only because language runtimes (JavaScript's StarlingMonkey,
//! Rust's std) import it for themselves. The context grants nothing: no
//! preopened directories, no environment, no arguments, no network (sockets
//! are linked but every address is denied, the default), an empty stdin.
//! Clocks and random stay, since runtimes need them to start.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::budget::{Budget, TickClock};
use super::{v0_1, v0_2};

/// The longest line of guest output that reaches the log; the rest is cut so
/// that a policy cannot flood the host's log.
const MAX_LOG_LINE: usize = 1024;

/// Most table elements an instance may hold, all its tables together. A
/// funcref costs the host a pointer, so this is 8 MiB; the JavaScript and
/// Python runtimes start with tens of thousands.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most core instances, tables and memories a component may create. Memory
/// and table *sizes* are bounded in total, whatever their number, so these
/// only keep the bookkeeping small.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

/// Store data of one policy instance.
pub struct Sandbox {
    module: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: InstanceLimits,
    budget: Budget,
}

/// What the instance may hold: its memories' bytes and its tables'
/// elements are each bounded *in total*. wasmtime's `StoreLimits` bounds
/// each memory on its own, so an instance with sixteen memories could hold
/// sixteen times the cap.
#[derive(Debug)]
pub struct InstanceLimits {
    memory_cap: usize,
    memory_used: usize,
    table_used: usize,
    exhausted: Option<Exhausted>,
}

/// Which bound a guest ran into (kept so a trap is classified by what
/// happened, not by the text of its error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// Its memories, together, reached the memory cap.
    Memory,
    /// Its tables, together, reached [`MAX_TABLE_ELEMENTS`].
    Table,
}

impl InstanceLimits {
    fn new(memory_cap: usize) -> Self {
        InstanceLimits {
            memory_cap,
            memory_used: 0,
            table_used: 0,
            exhausted: None,
        }
    }
}

impl wasmtime::ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let used = self.memory_used - current.min(self.memory_used) + desired;
        if used > self.memory_cap || maximum.is_some_and(|m| desired > m) {
            self.exhausted = Some(Exhausted::Memory);
            // A trap, not a -1 from memory.grow: a guest that ignores the
            // failure would otherwise go on in an undefined state.
            return Err(wasmtime::Error::msg(format!(
                "the policy's memories would hold {used} bytes, over its cap of {}",
                self.memory_cap
            )));
        }
        self.memory_used = used;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let used = self.table_used - current.min(self.table_used) + desired;
        if used > MAX_TABLE_ELEMENTS || maximum.is_some_and(|m| desired > m) {
            self.exhausted = Some(Exhausted::Table);
            return Err(wasmtime::Error::msg(format!(
                "the policy's tables would hold {used} elements, over the cap of {MAX_TABLE_ELEMENTS}"
            )));
        }
        self.table_used = used;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl Sandbox {
    /// A sandbox for `module` whose linear memories may not hold more than
    /// `memory_bytes` together, whose calls are timed by `clock`.
    pub fn new(module: Arc<str>, memory_bytes: usize, clock: Arc<TickClock>) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput {
                module: module.clone(),
                stream: "stdout",
            })
            .stderr(GuestOutput {
                module: module.clone(),
                stream: "stderr",
            })
            .build();
        Sandbox {
            module,
            wasi,
            table: ResourceTable::new(),
            limits: InstanceLimits::new(memory_bytes),
            budget: Budget::new(clock),
        }
    }

    /// Starts a call that may use `cpu` of CPU time.
    pub fn arm(&mut self, cpu: Duration) {
        self.budget.arm(cpu);
    }

    /// The limiter wasmtime consults when memories and tables grow.
    pub fn limits(&mut self) -> &mut InstanceLimits {
        &mut self.limits
    }

    /// The bound the guest ran into, if it did.
    pub fn exhausted(&self) -> Option<Exhausted> {
        self.limits.exhausted
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v0_1::Host for Sandbox {
    fn log(&mut self, level: v0_1::Level, message: String) {
        let message = truncate(&message, MAX_LOG_LINE);
        let module = &*self.module;
        match level {
            v0_1::Level::Debug => {
                tracing::debug!(target: "pointsman::policy::guest", module, "{message}")
            }
            v0_1::Level::Info => {
                tracing::info!(target: "pointsman::policy::guest", module, "{message}")
            }
            v0_1::Level::Warn => {
                tracing::warn!(target: "pointsman::policy::guest", module, "{message}")
            }
            v0_1::Level::Error => {
                tracing::error!(target: "pointsman::policy::guest", module, "{message}")
            }
        }
    }
}

impl v0_2::Host for Sandbox {
    fn log(&mut self, level: v0_2::Level, message: String) {
        // The same levels as 0.1.0's.
        let level = match level {
            v0_2::Level::Debug => v0_1::Level::Debug,
            v0_2::Level::Info => v0_1::Level::Info,
            v0_2::Level::Warn => v0_1::Level::Warn,
            v0_2::Level::Error => v0_1::Level::Error,
        };
        v0_1::Host::log(self, level, message);
    }
}

/// Called by wasmtime at each tick a call runs through: one more tick if the
/// call is still within its CPU budget, a trap otherwise.
pub fn on_epoch_deadline(
    mut store: StoreContextMut<'_, Sandbox>,
) -> wasmtime::Result<UpdateDeadline> {
    if store.data_mut().budget.within() {
        Ok(UpdateDeadline::Continue(1))
    } else {
        Ok(UpdateDeadline::Interrupt)
    }
}

/// The linker every policy is instantiated with.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<Sandbox>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    v0_1::add_host_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s)?;
    v0_2::add_host_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s)?;
    Ok(linker)
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Guest stdout or stderr: each line becomes a `tracing` event.
#[derive(Clone)]
struct GuestOutput {
    module: Arc<str>,
    stream: &'static str,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            output: self.clone(),
            line: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this; none are supported yet, so their
        // output is dropped rather than given a second code path.
        Box::new(tokio::io::sink())
    }
}

struct LineWriter {
    output: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = truncate(text.trim_end(), MAX_LOG_LINE);
        tracing::info!(
            target: "pointsman::policy::guest",
            module = &*self.output.module,
            stream = self.output.stream,
            "{text}"
        );
        self.line.clear();
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            // Past the limit the line is only waiting for its newline.
            let room = (MAX_LOG_LINE + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.ends_with(b"\n") {
                self.emit();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        self.emit();
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
    }
}
