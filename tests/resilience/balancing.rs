//! Balancing

use super::*;

/// A model `pool` with two endpoints: `fast` on `upstreams[0]` and `slow` on
/// `upstreams[1]`.
pub(crate) async fn pool_daemon(upstreams: &[Upstream; 2], balance: &str, knobs: &Knobs) -> Daemon {
    let providers = provider("fast", &upstreams[0], Wire::OpenAi)
        + &provider("slow", &upstreams[1], Wire::Anthropic);
    let models = model(
        "pool",
        "fast",
        &format!("balance = \"{balance}\"\n[[models.endpoints]]\nprovider = \"slow\"\n"),
    );
    Daemon::start(config("executor = \"pool\"", knobs, &providers, &models)).await
}

/// Least-latency sends most traffic to the fast endpoint; round-robin
/// splits it evenly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_latency_prefers_the_fast_endpoint_and_round_robin_splits() {
    for (balance, stream) in [("least-latency", false), ("round-robin", true)] {
        let upstreams: [Upstream; 2] =
            std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
        upstreams[1].on(|_| Some(Reply::echo().delay(Duration::from_millis(60))));
        let daemon = pool_daemon(&upstreams, balance, &Knobs::default()).await;
        let gateway = Gateway::new(&daemon);
        for i in 0..30usize {
            let api = API[i % 2];
            let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
            check_answer(api, stream, &answer, "x").unwrap();
            assert_eq!(answer.attempts().unwrap(), 1);
        }
        let (fast, slow) = (upstreams[0].total(), upstreams[1].total());
        assert_eq!(fast + slow, 30);
        match balance {
            "least-latency" => assert!(fast >= 25, "{balance}: fast {fast}, slow {slow}"),
            _ => assert_eq!((fast, slow), (15, 15), "{balance}"),
        }
    }
}

/// An endpoint whose provider refuses the gateway's key is not asked again
/// for the request: the pool's other endpoint answers at once, and after
/// `min_calls` refusals the breaker keeps the bad endpoint out of the way.
/// A key the provider quotes back never reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_moves_on_to_the_next_endpoint() {
    let upstreams = [
        Upstream::start(UpstreamConfig::default().openai_key("sk-the-key-it-expects")).await,
        Upstream::start(UpstreamConfig::default()).await,
    ];
    let knobs = Knobs {
        min_calls: 3,
        cooldown_ms: 60_000,
        ..Knobs::default()
    };
    let daemon = pool_daemon(&upstreams, "round-robin", &knobs).await;
    let gateway = Gateway::new(&daemon);
    let mut attempts = Vec::new();
    for i in 0..8usize {
        let (api, stream) = (API[i % 2], i % 3 == 0);
        let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
        check_answer(api, stream, &answer, "x").unwrap();
        check_no_key(&answer).unwrap();
        attempts.push(answer.attempts().unwrap());
    }
    // Round-robin starts every request on the bad endpoint until its breaker
    // opens; the backoff and the retries are not spent on it.
    assert_eq!(attempts, [2, 2, 2, 1, 1, 1, 1, 1]);
    let refused = upstreams[0].requests();
    assert_eq!(refused.len(), 3);
    assert!(refused.iter().all(|r| r.status == Some(401)), "{refused:?}");
    assert_eq!(upstreams[1].total(), 8);
    assert_eq!(gateway.breaker("pool", 0).await.0, "open");
    assert_eq!(gateway.breaker("pool", 1).await.0, "closed");
}

/// A retry goes at once to another endpoint of the model: the backoff
/// spares the endpoint that failed, not its siblings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_moves_to_another_endpoint_without_backoff() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    upstreams[0].on(|_| Some(Reply::error(500, "broken")));
    // Every backoff would be a uniform draw from 0 to 10 s.
    let knobs = Knobs {
        backoff_base_ms: 10_000,
        backoff_max_ms: 10_000,
        ..Knobs::default()
    };
    let daemon = pool_daemon(&upstreams, "round-robin", &knobs).await;
    let gateway = Gateway::new(&daemon);
    let started = std::time::Instant::now();
    for i in 0..6usize {
        let (api, stream) = (API[i % 2], i % 3 == 0);
        let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
        check_answer(api, stream, &answer, "x").unwrap();
        assert!(answer.attempts().unwrap() <= 2, "request {i}");
    }
    let failed = upstreams[0].total();
    assert!(
        failed >= 1,
        "round-robin sent no request to the failing endpoint"
    );
    assert_eq!(upstreams[1].total(), 6);
    // With a backoff before each of those retries, the odds of six requests
    // within 5 s would be about (1/2)^failed.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{failed} retries took {:?}",
        started.elapsed()
    );
}

/// When one endpoint of a pool fails, its breaker opens and the pool's
/// traffic goes to the other endpoint without wasted attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_sends_the_pool_to_the_healthy_endpoint() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    upstreams[0].on(|_| Some(Reply::error(503, "overloaded")));
    let knobs = Knobs {
        min_calls: 3,
        cooldown_ms: 60_000,
        ..Knobs::default()
    };
    let daemon = pool_daemon(&upstreams, "round-robin", &knobs).await;
    let gateway = Gateway::new(&daemon);
    let mut total_attempts = 0;
    for i in 0..12usize {
        let (api, stream) = (API[i % 2], i % 3 == 0);
        let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
        check_answer(api, stream, &answer, "x").unwrap();
        total_attempts += u64::from(answer.attempts().unwrap());
    }
    assert_eq!(gateway.breaker("pool", 0).await.0, "open");
    assert_eq!(gateway.breaker("pool", 1).await.0, "closed");
    assert_eq!(
        upstreams[0].total(),
        3,
        "the failing endpoint, until it tripped"
    );
    assert_eq!(upstreams[1].total(), 12);
    assert_eq!(total_attempts, 15);
}

/// When every endpoint's breaker is open, the error says so (not "the
/// provider answered 503"), and an escalation that upstream faults caused
/// is counted as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_happened() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|_| Some(Reply::error(500, "down")));
    let knobs = Knobs {
        max_retries: 0,
        min_calls: 2,
        cooldown_ms: 60_000,
        ..Knobs::default()
    };
    let daemon = single_model_daemon(&upstream, &knobs).await;
    let gateway = Gateway::new(&daemon);
    for api in API {
        let answer = gateway.ask(api, "primary", "fail", false, &[]).await;
        assert_eq!(answer.status, 502, "{answer:?}");
    }
    assert_eq!(gateway.breaker("primary", 0).await.0, "open");
    for api in API {
        for stream in [false, true] {
            let answer = gateway.ask(api, "primary", "skip", stream, &[]).await;
            assert_eq!(answer.status, 503, "{answer:?}");
            assert!(
                answer.body.contains("circuit breaker open") && answer.body.contains("primary"),
                "{api:?}: {}",
                answer.body
            );
            assert!(!answer.body.contains("answered 503"), "{}", answer.body);
        }
    }
    assert_eq!(upstream.count(), 2, "no call while the breaker is open");

    // With an escalation model, the escalation is counted with its cause.
    let spare = Upstream::start(UpstreamConfig::default()).await;
    let daemon = breaker_daemon(&upstream, &spare, Wire::OpenAi, 1).await;
    let gateway = Gateway::new(&daemon);
    let answer = gateway.ask(Api::OpenAi, "m0", "fail", false, &[]).await;
    assert_eq!(
        answer.header("x-pointsman-model"),
        Some("backup"),
        "{answer:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is the process's: other tests of this binary count too.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pointsman_escalations_total")
                && l.contains("model=\"backup\"")
                && l.contains("cause=\"upstream_fault\"")),
        "no escalation counted with its cause:\n{metrics}"
    );
}
