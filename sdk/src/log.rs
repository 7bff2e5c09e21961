//! Writing to the host's log.
//!
//! In a component the message goes to the host's `tracing` output, tagged with
//! the module's name; in native unit tests it goes to standard error.

use crate::bindings::host::Level;

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    write(Level::Debug, message)
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    write(Level::Info, message)
}

/// Logs `message` at warn level.
pub fn warn(message: &str) {
    write(Level::Warn, message)
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    write(Level::Error, message)
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    crate::bindings::host::log(level, message)
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}
