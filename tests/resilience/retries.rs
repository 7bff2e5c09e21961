//! Retries: the budget, Retry-After, deadlines

use super::*;

/// One model `primary` on `upstream`, nothing to fall back to.
pub(crate) async fn single_model_daemon(upstream: &Upstream, knobs: &Knobs) -> Daemon {
    single_model_daemon_on(&provider("p", upstream, Wire::OpenAi), knobs).await
}

/// The same, with provider `p` given as configuration text.
pub(crate) async fn single_model_daemon_on(provider: &str, knobs: &Knobs) -> Daemon {
    let models = model("primary", "p", "");
    Daemon::start(config("executor = \"primary\"", knobs, provider, &models)).await
}

/// The retry budget is shared by the daemon: once the reserve is spent and
/// nothing is deposited, requests get one attempt each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_across_requests() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|_| Some(Reply::error(500, "down")));
    let knobs = Knobs {
        budget_ratio: 0.0,
        budget_reserve: 2,
        ..Knobs::default()
    };
    let daemon = single_model_daemon(&upstream, &knobs).await;
    let gateway = Gateway::new(&daemon);
    let mut attempts = Vec::new();
    for api in [Api::OpenAi, Api::Anthropic, Api::OpenAi, Api::Anthropic] {
        let answer = gateway.ask(api, "primary", "x", false, &[]).await;
        check_error(api, &answer, BAD_GATEWAY).unwrap();
        attempts.push(answer.attempts().unwrap());
    }
    // The first request spends the reserve of two retries.
    assert_eq!(attempts, [3, 1, 1, 1]);
    assert_eq!(upstream.total(), 6);
}

/// A `Retry-After` within `backoff_max_ms` is waited out on the same model;
/// a longer one moves on to the next model at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_or_skipped() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    let knobs = Knobs {
        max_retries: 1,
        backoff_max_ms: 1_500,
        ..Knobs::default()
    };
    let providers =
        provider("p", &upstreams[0], Wire::Anthropic) + &provider("b", &upstreams[1], Wire::OpenAi);
    let models = model("primary", "p", "") + &model("backup", "b", "");
    let daemon = Daemon::start(config(
        "executor = \"primary\"\nfallbacks = [\"backup\"]",
        &knobs,
        &providers,
        &models,
    ))
    .await;
    let gateway = Gateway::new(&daemon);

    upstreams[0].push(Reply::error(429, "wait a second").header("retry-after", "1"));
    let answer = gateway.ask(Api::OpenAi, "auto", "wait", false, &[]).await;
    check_answer(Api::OpenAi, false, &answer, "wait").unwrap();
    assert_eq!(answer.header("x-pointsman-model"), Some("primary"));
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(
        answer.elapsed >= Duration::from_secs(1),
        "{:?}",
        answer.elapsed
    );
    let log = upstreams[0].requests();
    assert!(log[1].received_at - log[0].received_at >= Duration::from_secs(1));

    upstreams[0].push(Reply::error(429, "come back later").header("retry-after", "30"));
    let answer = gateway
        .ask(Api::Anthropic, "auto", "later", true, &[])
        .await;
    check_answer(Api::Anthropic, true, &answer, "later").unwrap();
    assert_eq!(answer.header("x-pointsman-model"), Some("backup"));
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(
        answer.elapsed < Duration::from_secs(1),
        "{:?}",
        answer.elapsed
    );
    assert_eq!((upstreams[0].total(), upstreams[1].total()), (3, 1));
}

/// `Retry-After` as an HTTP-date: a date within `backoff_max_ms` is waited
/// for, a past one means retry now, and a later one moves on (here to no
/// other model, so the client gets the 429 and the wait in its own
/// `Retry-After`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let knobs = Knobs {
        max_retries: 1,
        backoff_max_ms: 3_000,
        ..Knobs::default()
    };
    let daemon = single_model_daemon(&upstream, &knobs).await;
    let gateway = Gateway::new(&daemon);
    let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();

    // HTTP-dates have whole seconds: the next whole second plus one is
    // between one and two seconds away.
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds(SystemTime::now()) + 2);
    upstream.push(Reply::error(429, "wait").header("retry-after", httpdate::fmt_http_date(at)));
    let answer = gateway
        .ask(Api::OpenAi, "primary", "date", false, &[])
        .await;
    check_answer(Api::OpenAi, false, &answer, "date").unwrap();
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(SystemTime::now() >= at, "the retry came before the date");
    let log = upstream.requests();
    let waited = log[1].received_at - log[0].received_at;
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    upstream.push(Reply::error(429, "wait").header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"));
    let answer = gateway
        .ask(Api::Anthropic, "primary", "past", true, &[])
        .await;
    check_answer(Api::Anthropic, true, &answer, "past").unwrap();
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(
        answer.elapsed < Duration::from_millis(500),
        "{:?}",
        answer.elapsed
    );

    let at = SystemTime::now() + Duration::from_secs(60);
    upstream.push(Reply::error(429, "later").header("retry-after", httpdate::fmt_http_date(at)));
    let answer = gateway
        .ask(Api::OpenAi, "primary", "later", false, &[])
        .await;
    check_error(Api::OpenAi, &answer, RATE_LIMITED).unwrap();
    assert_eq!(answer.attempts().unwrap(), 1);
    let after: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((58..=60).contains(&after), "Retry-After: {after}");
    assert_eq!(upstream.total(), 5);
}

/// The total deadline (or a shorter `x-pointsman-deadline-ms`) ends a
/// request whose upstreams hang with a 504, however many retries and models
/// are left; a stream that outlives it ends with an error event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_bound_a_request() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    let knobs = Knobs {
        total_deadline_ms: 800,
        escalation: Some("backup"),
        ..Knobs::default()
    };
    let providers =
        provider("p", &upstreams[0], Wire::OpenAi) + &provider("b", &upstreams[1], Wire::Anthropic);
    let models = model("primary", "p", "") + &model("backup", "b", "");
    let daemon = Daemon::start(config(
        "executor = \"primary\"",
        &knobs,
        &providers,
        &models,
    ))
    .await;
    let gateway = Gateway::new(&daemon);
    let hang = || Reply::echo().delay(Duration::from_secs(20));
    upstreams[0].on(move |r| (r.last_user_text().as_deref() != Some("slow stream")).then(hang));

    for (api, stream) in [(Api::OpenAi, false), (Api::Anthropic, true)] {
        let before = upstreams[0].total();
        let answer = gateway.ask(api, "primary", "x", stream, &[]).await;
        check_error(api, &answer, TIMED_OUT).unwrap();
        // 500 ms for the first attempt, the rest of the 800 for the second.
        let elapsed = answer.elapsed;
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed < Duration::from_millis(1_400),
            "{elapsed:?}"
        );
        assert_eq!(answer.attempts().unwrap(), 2);
        assert_eq!(upstreams[0].total() - before, 2);
    }
    assert_eq!(upstreams[1].total(), 0, "no time was left for escalation");

    let answer = gateway
        .ask(
            Api::Anthropic,
            "primary",
            "x",
            false,
            &[("x-pointsman-deadline-ms", "200")],
        )
        .await;
    check_error(Api::Anthropic, &answer, TIMED_OUT).unwrap();
    assert!(
        answer.elapsed < Duration::from_millis(500),
        "{:?}",
        answer.elapsed
    );
    assert_eq!(answer.attempts().unwrap(), 1);

    // A healthy but slow stream is cut at the deadline, with an error event.
    upstreams[0].push(Reply::echo().chunk_delay(Duration::from_millis(100)));
    let answer = gateway
        .ask(
            Api::OpenAi,
            "primary",
            "slow stream",
            true,
            &[("x-pointsman-deadline-ms", "250")],
        )
        .await;
    check_broken(Api::OpenAi, &answer).unwrap();
    assert!(answer.body.contains("deadline"), "{}", answer.body);
}

/// A stream is relayed as it arrives: the relay batches events that arrive
/// together into one write, and must not hold back what is already there
/// while the rest is still coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_relayed_as_it_arrives() {
    const GAP: Duration = Duration::from_millis(150);
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = single_model_daemon(&upstream, &Knobs::default()).await;
    let gateway = Gateway::new(&daemon);
    for api in [Api::OpenAi, Api::Anthropic] {
        upstream.push(Reply::echo().chunk_delay(GAP));
        let started = Instant::now();
        let response = gateway
            .request(api, "primary", "alpha bravo charlie", true)
            .send()
            .await
            .expect("the daemon answers");
        assert_eq!(response.status(), 200);
        let mut chunks = response.bytes_stream();
        let (mut text, mut first_text, mut last) = (String::new(), None, Duration::ZERO);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.expect("the stream ends cleanly");
            last = started.elapsed();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if first_text.is_none() && text.contains("echo") {
                first_text = Some(last);
            }
        }
        let first_text = first_text.unwrap_or_else(|| panic!("{api:?}: no answer text in {text}"));
        // The echo's words and the closing events are several gaps apart
        // upstream; the first words must not wait for them.
        assert!(
            last >= first_text + 2 * GAP,
            "{api:?}: the first text arrived at {first_text:?}, the stream ended at {last:?}"
        );
        let answer = Answer {
            status: 200,
            headers: Default::default(),
            body: text,
            elapsed: last,
        };
        check_answer(api, true, &answer, "alpha bravo charlie").unwrap();
    }
}
