//! Breakers

use super::*;

/// A daemon whose models `m0`, `m1`... all live on `upstream` (one breaker
/// each), with `backup` on `spare` as the escalation model; no retries.
pub(crate) async fn breaker_daemon(
    upstream: &Upstream,
    spare: &Upstream,
    wire: Wire,
    count: usize,
) -> Daemon {
    let knobs = Knobs {
        max_retries: 0,
        min_calls: 3,
        cooldown_ms: 300,
        escalation: Some("backup"),
        ..Knobs::default()
    };
    let providers = provider("p", upstream, wire) + &provider("b", spare, wire);
    let models: String = (0..count)
        .map(|i| model(&format!("m{i}"), "p", ""))
        .chain([model("backup", "b", "")])
        .collect();
    Daemon::start(config("executor = \"backup\"", &knobs, &providers, &models)).await
}

/// Serves `faults[i]` for upstream model `m<i>` while `on[i]` is set.
pub(crate) fn script_faults(
    upstream: &Upstream,
    faults: Vec<Fault>,
    wire: Wire,
) -> Arc<Mutex<Vec<bool>>> {
    let on = Arc::new(Mutex::new(vec![true; faults.len()]));
    let switches = on.clone();
    upstream.on(move |request| {
        let i: usize = request.model()?.strip_prefix('m')?.parse().ok()?;
        let active = switches.lock().unwrap()[i];
        active.then(|| faults[i].reply(request, wire))
    });
    on
}

/// Requests upstream model `id` received.
pub(crate) fn received(upstream: &Upstream, id: &str) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.model() == Some(id))
        .count()
}

/// For every fault, streaming or not: enough failures open the breaker
/// (visible in `/v1/providers`), requests then skip the endpoint, and after
/// the cool-down a probe to the recovered upstream closes it. A refused key
/// or model is such a failure; faults that say nothing about the endpoint's
/// health (a bad request, a slow answer) leave it closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_open_skip_and_close_for_every_fault() {
    let wire = Wire::OpenAi;
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let spare = Upstream::start(UpstreamConfig::default()).await;
    // A stream that breaks after its first event is covered by
    // `a_stream_broken_midway_counts_against_the_breaker`.
    let cases: Vec<(Fault, bool)> = FAULTS
        .iter()
        .flat_map(|&f| [(f, false), (f, true)])
        .filter(|&(f, stream)| f.treatment(stream) != Treatment::Broken)
        .collect();
    let on = script_faults(&upstream, cases.iter().map(|c| c.0).collect(), wire);
    let daemon = breaker_daemon(&upstream, &spare, wire, cases.len()).await;
    let gateway = Gateway::new(&daemon);

    let run = |i: usize, fault: Fault, stream: bool| {
        let (gateway, upstream, on) = (&gateway, &upstream, on.clone());
        async move {
            let id = format!("m{i}");
            let api = API[i % 2];
            let ask = |text: &'static str| gateway.ask(api, &id, text, stream, &[]);
            let trips = matches!(
                fault.treatment(stream),
                Treatment::Retried | Treatment::MovedOn
            );
            for _ in 0..3 {
                let answer = ask("fail").await;
                if trips {
                    check_answer(api, stream, &answer, "fail")?;
                    if answer.header("x-pointsman-model") != Some("backup") {
                        return Err(format!("not escalated: {answer:?}"));
                    }
                }
            }
            if received(upstream, &id) != 3 {
                return Err(format!("{} calls for 3 requests", received(upstream, &id)));
            }
            let (state, count) = gateway.breaker(&id, 0).await;
            if !trips {
                return match state.as_str() {
                    "closed" => Ok(()),
                    _ => Err(format!("a {fault:?} tripped the breaker: {state}")),
                };
            }
            if (state.as_str(), count) != ("open", 1) {
                return Err(format!(
                    "after 3 failures the breaker is {state} ({count} trips)"
                ));
            }
            // Open: the endpoint is skipped, the escalation model answers.
            let answer = ask("skip").await;
            check_answer(api, stream, &answer, "skip")?;
            if answer.header("x-pointsman-model") != Some("backup") || received(upstream, &id) != 3
            {
                return Err(format!("an open breaker let a call through: {answer:?}"));
            }
            // The upstream recovers; after the cool-down one probe closes it.
            on.lock().unwrap()[i] = false;
            tokio::time::sleep(Duration::from_millis(350)).await;
            let (state, _) = gateway.breaker(&id, 0).await;
            if state != "half-open" {
                return Err(format!("after the cool-down the breaker is {state}"));
            }
            let answer = ask("probe").await;
            check_answer(api, stream, &answer, "probe")?;
            if answer.header("x-pointsman-model") != Some(id.as_str()) {
                return Err(format!("the probe went elsewhere: {answer:?}"));
            }
            let (state, count) = gateway.breaker(&id, 0).await;
            if (state.as_str(), count) != ("closed", 0) || received(upstream, &id) != 4 {
                return Err(format!(
                    "after a good probe the breaker is {state} ({count} trips)"
                ));
            }
            Ok(())
        }
    };
    let results =
        futures::future::join_all(cases.iter().enumerate().map(
            |(i, &(fault, stream))| async move { (fault, stream, run(i, fault, stream).await) },
        ))
        .await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(f, s, r)| r.as_ref().err().map(|e| format!("{f:?}, stream {s}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A provider that breaks every stream after its first event is failing;
/// its breaker must see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_midway_counts_against_the_breaker() {
    let wire = Wire::Anthropic;
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let spare = Upstream::start(UpstreamConfig::default()).await;
    let faults = vec![
        Fault::CutMidway,
        Fault::StallMidway,
        Fault::MalformedMidStream,
    ];
    script_faults(&upstream, faults.clone(), wire);
    let daemon = breaker_daemon(&upstream, &spare, wire, faults.len()).await;
    let gateway = Gateway::new(&daemon);
    for (i, fault) in faults.iter().enumerate() {
        let id = format!("m{i}");
        for _ in 0..3 {
            let answer = gateway.ask(Api::OpenAi, &id, "x", true, &[]).await;
            check_broken(Api::OpenAi, &answer).unwrap();
        }
        let (state, _) = gateway.breaker(&id, 0).await;
        assert_eq!(state, "open", "{fault:?}: three broken streams");
    }
}

/// `x-pointsman-attempts` counts calls to upstreams: a model skipped
/// because its breaker is open is not one, or the ledger would not add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_models_are_not_counted_as_attempts() {
    let wire = Wire::OpenAi;
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let spare = Upstream::start(UpstreamConfig::default()).await;
    script_faults(&upstream, vec![Fault::Status(500)], wire);
    let daemon = breaker_daemon(&upstream, &spare, wire, 1).await;
    let gateway = Gateway::new(&daemon);
    for _ in 0..3 {
        gateway.ask(Api::OpenAi, "m0", "x", false, &[]).await;
    }
    assert_eq!(gateway.breaker("m0", 0).await.0, "open");
    let before = upstream.total() + spare.total();
    let answer = gateway.ask(Api::OpenAi, "m0", "x", false, &[]).await;
    assert_eq!(answer.status, 200);
    let calls = upstream.total() + spare.total() - before;
    assert_eq!(calls, 1, "only the escalation model was called");
    assert_eq!(u64::from(answer.attempts().unwrap()), calls);
}
