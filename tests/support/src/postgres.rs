//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! folder, `postgres` on a free 127.0.0.1 port with its socket in that
//! folder, run as `nobody` when the tests run as root (PostgreSQL refuses
//! root). Stopped (immediate) and deleted on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct Postgres {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// The folder of PostgreSQL's server binaries: the newest
/// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`. Panics, saying
/// to run `scripts/setup`, when there is none.
pub fn bindir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("postgres").is_file() && bin.join("initdb").is_file() {
            return bin;
        }
    }
    panic!(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin, no pg_config): run scripts/setup"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(flag: &str) -> String {
    let out = Command::new("id")
        .args([flag, "nobody"])
        .output()
        .expect("id nobody");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A command run as `nobody` when we are root (setpriv execs it directly,
/// so the child's pid is the program's own).
fn command(program: &Path, dir: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", id_of("-u")))
            .arg(format!("--regid={}", id_of("-g")))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.current_dir(dir);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Postgres {
    /// Starts a fresh server; waits until it accepts connections.
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("pointsman-pg-")
            .tempdir()
            .expect("a temporary folder");
        if is_root() {
            let status = Command::new("chown")
                .arg("nobody:")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown nobody {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), dir.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let child = command(&bin.join("postgres"), dir.path())
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut pg = Postgres { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return pg;
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                panic!("postgres exited ({status}): {}", pg.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                pg.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates the database `name` and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let out = Command::new(bindir().join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: PostgreSQL's immediate shutdown.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
