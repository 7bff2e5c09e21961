//! Transport

use super::*;

/// A provider the environment sends through a proxy is called through it.
/// The provider's own host does not resolve; the proxy, here the test
/// upstream (which takes absolute-form requests), answers. The daemon runs
/// as its own process so that the proxy variables reach only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_called_through_the_proxy_the_environment_names() {
    let proxy = Upstream::start(UpstreamConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pointsman.toml");
    std::fs::write(
        &config,
        format!(
            "baseline_model = \"primary\"\n[policies]\nrouter = \"none\"\n\
             [safe_route]\nexecutor = \"primary\"\n\n\
             [providers.p]\nkind = \"openai\"\nbase_url = \"http://provider.invalid/v1\"\n\
             api_key_env = \"POINTSMAN_TEST_OPENAI_KEY\"\n\n{}",
            model("primary", "p", "")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"));
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .env("POINTSMAN_TEST_OPENAI_KEY", OPENAI_KEY)
        .env("HTTP_PROXY", proxy.url())
        // The default ledger goes here, never into the user's own.
        .env("XDG_DATA_HOME", dir.path());
    for var in [
        "NO_PROXY",
        "no_proxy",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    let mut daemon = command
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut daemon);

    let gateway = Gateway {
        url: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let started = Instant::now();
    while gateway
        .http
        .get(format!("{}/healthz", gateway.url))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for stream in [false, true] {
        let answer = gateway
            .ask(Api::OpenAi, "primary", "via the proxy", stream, &[])
            .await;
        check_answer(Api::OpenAi, stream, &answer, "via the proxy").unwrap();
    }
    assert_eq!(proxy.total(), 2, "both calls went through the proxy");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log.contains("calls go through the proxy at 127.0.0.1"),
        "{log}"
    );
}

/// Connections to a plain-HTTP provider are kept alive and reused, after
/// plain and streamed answers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_and_reused() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = single_model_daemon(&upstream, &Knobs::default()).await;
    let gateway = Gateway::new(&daemon);
    for stream in [false, true, false, true, false] {
        let answer = gateway
            .ask(Api::OpenAi, "primary", "once more", stream, &[])
            .await;
        check_answer(Api::OpenAi, stream, &answer, "once more").unwrap();
    }
    assert_eq!(upstream.total(), 5);
    assert_eq!(
        upstream.connections(),
        1,
        "one connection served every call"
    );
}

/// An upstream that closes connections it is not using (as servers with a
/// keep-alive timeout do) costs a new connection, not a failed attempt:
/// the closed one is noticed before a request is sent on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_upstream_closed_are_not_used() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let accepted = accepted.clone();
        async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer_once_then_close(tcp));
            }
        }
    });
    let provider = provider_at("p", &url, Wire::OpenAi);
    let daemon = single_model_daemon_on(&provider, &Knobs::default()).await;
    let gateway = Gateway::new(&daemon);
    for _ in 0..3 {
        let answer = gateway.ask(Api::OpenAi, "primary", "hi", false, &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("x-pointsman-attempts"), Some("1"));
        // Time for the upstream's closing to reach the daemon's socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "a new connection each time"
    );
}

/// Reads one HTTP/1.1 request, answers it with a completion that keeps the
/// connection alive by HTTP's rules, then closes the connection anyway.
pub(crate) async fn answer_once_then_close(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let body_len = loop {
        let Ok(n) = tcp.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            break end + 4 + length;
        }
    };
    while received.len() < body_len {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "primary",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
}
