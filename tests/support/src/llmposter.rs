//! llmposter (crates.io, built into `.tools` by `scripts/setup`): a mock
//! LLM server written by others, speaking OpenAI chat completions,
//! Anthropic messages and the OpenAI Responses API, answering from YAML
//! fixtures. The tests use it as an independent upstream: its answers are
//! shaped by someone else's reading of the APIs. It runs as its own process
//! (it is AGPL-licensed, and never linked).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running llmposter, stopped when dropped.
pub struct Llmposter {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Llmposter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Llmposter {
    /// Starts a server answering from `fixtures` (llmposter's YAML: a
    /// `fixtures:` list of `match` / `scenario` / `response` entries) and
    /// waits until it listens.
    pub async fn start(fixtures: &str) -> Llmposter {
        let bin = crate::workspace_root().join(".tools/bin/llmposter");
        assert!(
            bin.exists(),
            "{} is missing: run ./scripts/setup",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join("fixtures.yaml");
        std::fs::write(&file, fixtures).expect("the fixtures are written");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .arg("--fixtures")
            .arg(&file)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llmposter starts");
        let server = Llmposter {
            child,
            port,
            _dir: dir,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "llmposter did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL of its OpenAI APIs (chat completions and responses).
    pub fn openai_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The base URL of its Anthropic API.
    pub fn anthropic_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
