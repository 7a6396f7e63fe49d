//! An agent's ticks (also its heartbeat) keep coming while its load runtime is saturated.
//!
//! At 50,000 connects/s asked, a connect burst filled the agent's runtime for more than
//! 10 s and the coordinator declared every agent lost (bench/AGENTS.md). Here the load
//! runtime's only worker is held by a blocking task — the extreme of a saturated
//! runtime — and the agent must still tick; once the worker is released the load runs
//! and its totals arrive exactly. Before the fix (the aggregator spawned on the load
//! runtime) no tick came until the release: the test failed at its bound.

use std::time::Duration;

use engine::load_runtime::LoadRuntime;
use engine::plan::Plan;
use engine::schedule::Share;
use engine::swarm::{run_agent, SwarmConfig};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_keep_coming_while_the_load_runtime_is_saturated() {
    let target = engine::target::spawn_thread("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let plan: Plan = serde_json::from_value(serde_json::json!({
        "name": "heartbeat",
        "target": format!("ws://{}/echo", target.addr),
        "stages": [{"duration": "0s", "connections": 3}, {"duration": "1s", "connections": 3}],
        "reconnect": {"mode": "never"}
    }))
    .unwrap();
    let load = LoadRuntime::start("saturated", 1).unwrap();
    // Hold the load runtime's only worker until three ticks have arrived.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (holding_tx, holding) = tokio::sync::oneshot::channel();
    load.handle().spawn(async move {
        let _ = holding_tx.send(());
        let _ = held.recv();
    });
    holding.await.unwrap();

    let (out, mut ticks) = tokio::sync::mpsc::channel(256);
    let cfg = SwarmConfig {
        tick: Duration::from_millis(100),
        ..SwarmConfig::default()
    };
    let cancel = CancellationToken::new();
    run_agent(
        plan,
        Share { index: 0, of: 1 },
        cfg,
        cancel.clone(),
        load.handle(),
        None,
        out,
    )
    .await
    .unwrap();

    // The bound only fails the test; it does not make it pass.
    let bound = Duration::from_secs(20);
    for n in 1..=3u64 {
        let t = tokio::time::timeout(bound, ticks.recv())
            .await
            .unwrap_or_else(|_| panic!("tick {n} never came while the load runtime was busy"))
            .unwrap();
        assert_eq!(t.seq, n);
        // Nothing could connect: the load is held.
        assert_eq!(t.interval.attempted, 0, "{t:?}");
        assert!(!t.last);
    }
    release.send(()).unwrap();

    // Released, the load runs: every connection opens and the run ends by itself.
    let (mut opened, mut closed, mut seq) = (0, 0, 3);
    loop {
        let t = tokio::time::timeout(bound, ticks.recv())
            .await
            .expect("the run did not end after the load was released")
            .unwrap();
        seq += 1;
        assert_eq!(t.seq, seq, "ticks are numbered without gaps");
        opened += t.interval.opened;
        closed += t.interval.closed;
        if t.last {
            break;
        }
    }
    assert_eq!((opened, closed), (3, 3));
    assert_eq!(target.sandbox.report().total.accepted, 3);
    target.stop();
}
