//! The coordinator–agent protocol, with this test as the coordinator and the real
//! `socketswarm agent` process as the agent: the start barrier, ticks resent after a
//! broken connection (nothing lost, the agent's `done` equals the ticks taken once
//! each), `cancel` mid-hold, and an agent whose coordinator vanishes stopping its load.
//! The test coordinator serves TLS with an identity of its own, whose pin the agent is
//! given (as a real coordinator's agent listener does).
//! Run: `cargo test -p server --test agent_protocol`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine::protocol::{FromAgent, ToAgent, PROTOCOL};
use engine::report::Totals;
use engine::schedule::Share;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>;

/// The test coordinator's TLS identity (made once per process) and its pin.
fn identity() -> &'static server::agents::channel::Identity {
    static ID: std::sync::OnceLock<server::agents::channel::Identity> = std::sync::OnceLock::new();
    ID.get_or_init(|| server::agents::channel::Identity::generate().unwrap())
}

/// The sandbox target in this process, for its own counters.
async fn sandbox() -> (String, Arc<engine::target::Sandbox>, CancellationToken) {
    let l = engine::target::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let sb = Arc::new(engine::target::Sandbox::default());
    let stop = CancellationToken::new();
    tokio::spawn(engine::target::serve(l, sb.clone(), stop.clone()));
    (format!("ws://{addr}"), sb, stop)
}

fn open(sb: &engine::target::Sandbox, tag: &str) -> (u64, u64) {
    let r = sb.report();
    r.profiles
        .get(&format!("/echo?tag={tag}"))
        .map(|c| (c.accepted, c.open))
        .unwrap_or((0, 0))
}

/// Polls `f` every 20 ms until it holds (at most 20 s).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn agent(join: &str, grace_ms: u64) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_socketswarm"))
        .args(["agent", "--join", join, "--token", "s3cret", "--index", "0"])
        .args(["--coordinator-pin", &identity().pin])
        .args(["--grace-ms", &grace_ms.to_string()])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn accept(l: &TcpListener) -> Ws {
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(20), l.accept())
        .await
        .expect("the agent dialled in")
        .unwrap();
    let tls = identity().acceptor().unwrap().accept(tcp).await.unwrap();
    tokio_tungstenite::accept_async(tls).await.unwrap()
}

async fn recv(ws: &mut Ws) -> Option<FromAgent> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => return None,
            Err(_) => panic!("the agent said nothing for 20 s"),
        }
    }
}

async fn send(ws: &mut Ws, m: ToAgent) {
    ws.send(Message::Text(m.to_text().into())).await.unwrap();
}

/// hello → assign → ready, for a plan of `n` connections held `hold`.
async fn assign(ws: &mut Ws, target: &str, tag: &str, n: u32, hold: &str) {
    let hello = recv(ws).await.unwrap();
    assert!(
        matches!(
            hello,
            FromAgent::Hello {
                index: Some(0),
                protocol: PROTOCOL,
                ..
            }
        ),
        "{hello:?}"
    );
    let plan = json!({
        "name": tag,
        "target": format!("{target}/echo?tag={tag}"),
        "reconnect": {"mode": "never"},
        "stages": [{"duration": "1s", "connections": n}, {"duration": hold, "connections": n}]
    });
    send(
        ws,
        ToAgent::Assign {
            phase: 0,
            plan: Box::new(serde_json::from_value(plan).unwrap()),
            share: Share::ALL,
            tick_ms: 100,
            allow_targets: Vec::new(),
        },
    )
    .await;
    let ready = recv(ws).await.unwrap();
    assert_eq!(ready, FromAgent::Ready { phase: 0 });
}

/// A sandbox, this test listening as the coordinator, and a real agent dialled in
/// (its connection accepted).
struct Rig {
    target: String,
    sb: Arc<engine::target::Sandbox>,
    _stop: CancellationToken,
    coord: TcpListener,
    child: tokio::process::Child,
}

async fn rig(grace_ms: u64) -> (Rig, Ws) {
    let (target, sb, stop) = sandbox().await;
    let coord = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join = format!("wss://{}/api/agents/join/k", coord.local_addr().unwrap());
    let child = agent(&join, grace_ms);
    let ws = accept(&coord).await;
    let rig = Rig {
        target,
        sb,
        _stop: stop,
        coord,
        child,
    };
    (rig, ws)
}

/// Reads ticks (acknowledging them when `ack`) until the agent holds `n` open.
async fn until_open(ws: &mut Ws, n: u64, ack: bool) {
    let mut last_open = 0;
    while last_open < n {
        if let Some(FromAgent::Tick { phase, tick }) = recv(ws).await {
            last_open = tick.open;
            if ack {
                send(
                    ws,
                    ToAgent::Ack {
                        phase,
                        seq: tick.seq,
                    },
                )
                .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_are_resent_after_a_broken_connection_and_none_is_lost() {
    let (mut rig, mut ws) = rig(10_000).await;
    let (target, sb) = (rig.target.clone(), rig.sb.clone());
    assign(&mut ws, &target, "resend", 30, "2s").await;
    // The barrier: set up and ready, but no load before `start`.
    assert_eq!(open(&sb, "resend"), (0, 0));
    send(&mut ws, ToAgent::Start { phase: 0, in_ms: 0 }).await;
    // Take a few ticks without acknowledging them, then break the connection.
    let mut taken: BTreeMap<u64, Totals> = BTreeMap::new();
    let mut before = Vec::new();
    while before.len() < 4 {
        if let Some(FromAgent::Tick { tick, .. }) = recv(&mut ws).await {
            before.push(tick.seq);
            taken.insert(tick.seq, tick.interval.clone());
        }
    }
    drop(ws);
    // It comes back, says hello with its index and resends every unacknowledged tick.
    let mut ws = accept(&rig.coord).await;
    let hello = recv(&mut ws).await.unwrap();
    assert!(matches!(hello, FromAgent::Hello { index: Some(0), .. }));
    let mut resent = Vec::new();
    let done = loop {
        match recv(&mut ws).await.expect("the agent finished its share") {
            FromAgent::Tick { phase, tick } => {
                if before.contains(&tick.seq) {
                    resent.push(tick.seq);
                }
                send(
                    &mut ws,
                    ToAgent::Ack {
                        phase,
                        seq: tick.seq,
                    },
                )
                .await;
                taken.entry(tick.seq).or_insert(tick.interval.clone());
            }
            FromAgent::Done { totals, ticks, .. } => break (totals, ticks),
            other => panic!("{other:?}"),
        }
    };
    for s in &before {
        assert!(resent.contains(s), "tick {s} was not resent: {resent:?}");
    }
    // Taken once each, the ticks add up to what the agent says it did, and to what the
    // target saw.
    let mut sum = Totals::default();
    for t in taken.values() {
        sum.merge(t);
    }
    let (totals, ticks) = done;
    assert_eq!(ticks, taken.len() as u64);
    assert_eq!(sum.attempted, 30);
    assert_eq!(sum.attempted, totals.attempted);
    assert_eq!(sum.opened, totals.opened);
    assert_eq!(open(&sb, "resend").0, sum.opened);
    send(&mut ws, ToAgent::Bye).await;
    let status = tokio::time::timeout(Duration::from_secs(20), rig.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_load_mid_hold() {
    let (rig, mut ws) = rig(10_000).await;
    let sb = &rig.sb;
    // A hold of 10 minutes: only `cancel` can end it within the test.
    assign(&mut ws, &rig.target, "cancel", 20, "600s").await;
    send(&mut ws, ToAgent::Start { phase: 0, in_ms: 0 }).await;
    until_open(&mut ws, 20, true).await;
    assert_eq!(open(sb, "cancel"), (20, 20));
    send(&mut ws, ToAgent::Cancel).await;
    // The agent ends its share: a last tick with nothing open, then `done`.
    let totals = loop {
        match recv(&mut ws).await.expect("done after cancel") {
            FromAgent::Tick { phase, tick } => {
                send(
                    &mut ws,
                    ToAgent::Ack {
                        phase,
                        seq: tick.seq,
                    },
                )
                .await;
                if tick.last {
                    assert_eq!(tick.open, 0);
                }
            }
            FromAgent::Done { totals, .. } => break totals,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(totals.opened, 20);
    until("the target saw every connection close", || {
        open(sb, "cancel").1 == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_coordinator_vanished_stops_its_load() {
    let (rig, mut ws) = rig(500).await;
    let Rig {
        target,
        sb,
        _stop,
        coord,
        mut child,
    } = rig;
    assign(&mut ws, &target, "vanish", 20, "600s").await;
    send(&mut ws, ToAgent::Start { phase: 0, in_ms: 0 }).await;
    until_open(&mut ws, 20, false).await;
    // The coordinator disappears: its connection and its listener.
    drop(ws);
    drop(coord);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the agent gave up after its grace period")
        .unwrap();
    assert_eq!(status.code(), Some(1));
    until("the target saw the load stop", || {
        open(&sb, "vanish").1 == 0
    })
    .await;
    assert_eq!(open(&sb, "vanish").0, 20);
}
