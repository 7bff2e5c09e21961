//! A router that misbehaves when asked to: the tests' hostile module.
//!
//! The last user message picks the behaviour: `trap`, `loop`, `bomb` (grow
//! memory without end), `huge` (a 1 MiB reasoning string), `unknown` (a model
//! not in the catalog), `error` (an `Err` answer), `long-error` (a 1 MB
//! `Err`), `fallbacks` (1,000 fallbacks), `print` (write to stdout and
//! stderr). Anything else gets a well-formed direct route.

use pointsman_sdk::{Config, Model, Request, Route, Router};

pub struct Hostile;

impl Router for Hostile {
    fn route(request: &Request, models: &[Model], _config: &Config) -> Result<Route, String> {
        let first = models.first().map_or("none", |m| m.id.as_str());
        match request.last_user_text() {
            "trap" => panic!("hostile policy traps on purpose"),
            "loop" =>
            {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            "bomb" => {
                // Reserve without touching the pages: this is about the
                // memory cap, not about burning CPU on page faults.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(16 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            "huge" => Ok(Route::direct(first, &"x".repeat(1 << 20))),
            "unknown" => Ok(Route::direct("gpt-nonexistent", "no such model")),
            "fallbacks" => {
                let mut route = Route::direct(first, "every model, many times");
                route.fallbacks = vec![first.to_string(); 1_000];
                Ok(route)
            }
            "long-error" => Err(format!(
                "hostile policy refuses{}",
                " at length".repeat(100_000)
            )),
            "error" => Err("hostile policy refuses".into()),
            "print" => {
                println!("hello from the guest's stdout");
                eprintln!("hello from the guest's stderr");
                pointsman_sdk::log::warn("hello from the guest's log");
                Ok(Route::direct(first, "printed"))
            }
            _ => Ok(Route::direct(first, "hostile policy behaving")),
        }
    }
}

pointsman_sdk::register_policy!(router: Hostile);
