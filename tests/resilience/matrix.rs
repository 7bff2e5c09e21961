//! The fault matrix

use super::*;

/// The three catalog models of the matrix, each on its own upstream.
pub(crate) const PRIMARY: usize = 0;
pub(crate) const BACKUP: usize = 1;
pub(crate) const ESCALATION: usize = 2;
pub(crate) const MODELS: [&str; 3] = ["primary", "backup", "escalation"];

/// Which chain a request is served and where the fault is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// `auto`: the safe route primary → backup, then escalation; the
    /// primary is faulty.
    Fallback,
    /// `primary` named: primary → escalation; the primary is faulty.
    Escalation,
    /// `auto`, and all three models are faulty.
    AllDown,
}

impl Scenario {
    pub(crate) fn requested(self) -> &'static str {
        match self {
            Scenario::Escalation => "primary",
            Scenario::Fallback | Scenario::AllDown => "auto",
        }
    }

    pub(crate) fn chain(self) -> &'static [usize] {
        match self {
            Scenario::Escalation => &[PRIMARY, ESCALATION],
            Scenario::Fallback | Scenario::AllDown => &[PRIMARY, BACKUP, ESCALATION],
        }
    }

    pub(crate) fn faulty(self, model: usize) -> bool {
        self == Scenario::AllDown || model == PRIMARY
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Case {
    pub(crate) fault: Fault,
    pub(crate) api: Api,
    pub(crate) stream: bool,
    pub(crate) scenario: Scenario,
}

/// What the client should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Served(usize),
    Broken(usize),
    Failed(ErrorShape),
}

impl Case {
    /// The outcome, and the requests each upstream should receive.
    pub(crate) fn expected(&self) -> (Outcome, [u32; 3]) {
        let mut calls = [0; 3];
        for &model in self.scenario.chain() {
            if !self.scenario.faulty(model) {
                calls[model] += 1;
                return (Outcome::Served(model), calls);
            }
            match self.fault.treatment(self.stream) {
                Treatment::Answers => {
                    calls[model] += 1;
                    return (Outcome::Served(model), calls);
                }
                Treatment::Retried => calls[model] += 1 + MAX_RETRIES,
                Treatment::MovedOn => calls[model] += 1,
                Treatment::Final => {
                    calls[model] += 1;
                    return (Outcome::Failed(self.fault.error()), calls);
                }
                Treatment::Broken => {
                    calls[model] += 1;
                    return (Outcome::Broken(model), calls);
                }
            }
        }
        (Outcome::Failed(self.fault.error()), calls)
    }

    /// Whether the case takes timeouts rather than milliseconds (run first).
    pub(crate) fn slow(&self) -> bool {
        matches!(
            self.fault,
            Fault::Hang | Fault::StallBeforeFirst | Fault::StallMidway
        )
    }
}

/// Runs one case and returns its attempts.
pub(crate) async fn run_case(
    gateway: &Gateway,
    upstreams: &[Upstream; 3],
    marker: &str,
    case: Case,
) -> Result<u32, String> {
    let answer = gateway
        .ask(
            case.api,
            case.scenario.requested(),
            marker,
            case.stream,
            &[],
        )
        .await;
    let (outcome, expected) = case.expected();
    let served_by = |model: usize| {
        let policy = match case.scenario {
            Scenario::Escalation => "client",
            Scenario::Fallback | Scenario::AllDown => "safe-route",
        };
        let route = [
            "x-pointsman-model",
            "x-pointsman-tier",
            "x-pointsman-policy",
        ]
        .map(|name| answer.header(name));
        match route == [Some(MODELS[model]), Some("direct"), Some(policy)] {
            true => Ok(()),
            false => Err(format!(
                "expected {} direct {policy}, got {route:?}",
                MODELS[model]
            )),
        }
    };
    match outcome {
        Outcome::Served(model) => {
            check_answer(case.api, case.stream, &answer, marker)?;
            served_by(model)?;
            if case.fault == Fault::Slow && answer.elapsed < SLOW {
                return Err(format!("a slow answer after {:?}", answer.elapsed));
            }
        }
        Outcome::Broken(model) => {
            check_broken(case.api, &answer)?;
            served_by(model)?;
        }
        Outcome::Failed(shape) => {
            check_error(case.api, &answer, shape)?;
            if matches!(case.fault, Fault::Denied(_))
                && !answer
                    .body
                    .contains("refused the gateway's credentials, model or address")
            {
                return Err(format!("not said to be the gateway's: {}", answer.body));
            }
        }
    }
    check_no_key(&answer)?;
    let mut received = [0u32; 3];
    for (model, upstream) in upstreams.iter().enumerate() {
        received[model] = upstream
            .requests()
            .iter()
            .filter(|r| r.last_user_text().as_deref() == Some(marker))
            .count() as u32;
    }
    if received != expected {
        return Err(format!(
            "upstreams received {received:?}, expected {expected:?}"
        ));
    }
    let attempts = answer.attempts()?;
    if attempts != received.iter().sum::<u32>() {
        return Err(format!(
            "x-pointsman-attempts {attempts}, upstreams received {received:?}"
        ));
    }
    Ok(attempts)
}

/// Every fault × client API × streaming × chain, against upstreams speaking
/// `wire`.
pub(crate) async fn fault_matrix(wire: Wire) {
    let upstreams: [Upstream; 3] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    let names = ["p", "b", "e"];
    let providers: String = (0..3)
        .map(|i| provider(names[i], &upstreams[i], wire))
        .collect();
    let models: String = (0..3).map(|i| model(MODELS[i], names[i], "")).collect();
    let knobs = Knobs {
        escalation: Some("escalation"),
        ..Knobs::default()
    };
    let daemon = Daemon::start(config(
        "executor = \"primary\"\nfallbacks = [\"backup\"]",
        &knobs,
        &providers,
        &models,
    ))
    .await;
    let gateway = Gateway::new(&daemon);

    let mut cases = Vec::new();
    for &fault in FAULTS {
        for api in [Api::OpenAi, Api::Anthropic] {
            for stream in [false, true] {
                for scenario in [Scenario::Fallback, Scenario::Escalation, Scenario::AllDown] {
                    cases.push(Case {
                        fault,
                        api,
                        stream,
                        scenario,
                    });
                }
            }
        }
    }
    // The cases that wait for timeouts first, so they overlap the rest.
    cases.sort_by_key(|c| !c.slow());
    let cases: Vec<(String, Case)> = cases
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("case-{i}"), c))
        .collect();
    let table: Arc<HashMap<String, Case>> = Arc::new(cases.iter().cloned().collect());
    for (model, upstream) in upstreams.iter().enumerate() {
        let table = table.clone();
        upstream.on(move |request| {
            let case = table.get(request.last_user_text()?.as_str())?;
            case.scenario
                .faulty(model)
                .then(|| case.fault.reply(request, wire))
        });
    }

    let results: Vec<(String, Case, Result<u32, String>)> = futures::stream::iter(&cases)
        .map(|(marker, case)| {
            let (gateway, upstreams) = (&gateway, &upstreams);
            async move {
                let result = run_case(gateway, upstreams, marker, *case).await;
                (marker.clone(), *case, result)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;

    let failures: Vec<String> = results
        .iter()
        .filter_map(|(marker, case, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{wire:?} upstreams, {marker} {case:?}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    // The ledger adds up over the whole run, not just per request.
    let attempts: u32 = results.iter().filter_map(|(_, _, r)| r.as_ref().ok()).sum();
    let received: u64 = upstreams.iter().map(Upstream::total).sum();
    assert_eq!(u64::from(attempts), received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_openai_upstreams() {
    fault_matrix(Wire::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_anthropic_upstreams() {
    fault_matrix(Wire::Anthropic).await;
}
