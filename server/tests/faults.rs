//! The fault suite: real runs through the JSON API against targets that misbehave on
//! purpose — killed mid-run, resetting, never answering, gone half-open, sending
//! malformed or oversized frames, speaking plain TCP to `wss://`, token endpoints down —
//! and an SSE client that drops and resumes. Every case checks that nothing panicked,
//! the run ended with the right status, the engine's counts equal what the fault
//! server itself counted, and the run's ticks and summary are stored.
//!
//! The fault servers live in `faults_support/`, on raw tokio sockets (127.0.0.1:0), each
//! counting what it did with atomics. Run: `cargo test -p server --test faults`.
#![allow(clippy::unwrap_used)]
mod common;
mod faults_support;

use std::time::{Duration, Instant};

use common::{plan, spawn_app};
use faults_support::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

// ---------------------------------------------------------------------------------
// 1. The target dies mid-run
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_mid_run_counts_drops_then_refusals() {
    watch_panics();
    let app = spawn_app().await;
    const OPEN: u64 = 10;
    // The server dies (listener and every connection dropped) once all ten VUs proved
    // they are open: each sends a message as its session starts.
    let fault = spawn_fault(|tcp, cx| async move {
        let Some(mut ws) = accept_ws(tcp, &cx.counts).await else {
            return;
        };
        if let Some(Ok(Message::Text(_))) = ws.next().await {
            cx.counts.bump(&cx.counts.msgs_in);
            if n(&cx.counts.msgs_in) == OPEN {
                cx.counts.bump(&cx.counts.faults[0]);
                cx.kill.cancel();
            }
        }
        cx.kill.cancelled().await;
    })
    .await;
    // Ten VUs by 0.5 s; ten more from 1.5 s on, long after the kill. Every VU retries
    // twice after a failure or a drop (three attempts in a row), 50-100 ms apart.
    let mut p = json!({
        "name": "killed",
        "target": fault.ws("/"),
        "stages": [
            {"duration": "500ms", "connections": 10}, {"duration": "1s", "connections": 10},
            {"duration": "500ms", "connections": 20}, {"duration": "1s", "connections": 20}
        ],
        "connect_timeout": "1s",
        "script": [{"send": "open {{vu}}"}],
    });
    p["reconnect"] =
        json!({"mode": "backoff", "max_attempts": 3, "initial": "50ms", "max": "100ms"});
    let f = finish(&app, p, "completed").await;

    assert_eq!(n(&fault.counts.faults[0]), 1, "killed once");
    assert_eq!(n(&fault.counts.upgraded), OPEN);
    assert_eq!(f.total("opened"), n(&fault.counts.upgraded));
    assert_eq!(f.run["summary"]["peak_open"], OPEN);
    assert_eq!(f.total("msgs_sent"), n(&fault.counts.msgs_in));
    // The kill ends every open session without a close frame.
    assert_eq!(f.close("abnormal_1006"), OPEN, "{}", f.totals());
    assert_eq!(f.total("dropped"), OPEN);
    // Then every attempt is refused: 3 in a row for each dropped VU and each late VU.
    assert_eq!(f.failure("refused"), 20 * 3, "{}", f.totals());
    assert_eq!(f.total("failed"), 20 * 3);
    assert_eq!(f.total("attempted"), OPEN + 20 * 3);
    assert_eq!(
        n(&fault.counts.accepted),
        OPEN,
        "nothing reached a dead target"
    );
    assert_eq!(
        f.run["diagnosis"]["kind"], "server_drops",
        "{}",
        f.run["diagnosis"]
    );
}

// ---------------------------------------------------------------------------------
// 2. Connections reset (RST) during and after the handshake
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_before_and_after_the_handshake_are_counted_apart() {
    watch_panics();
    let app = spawn_app().await;
    // Even VUs: reset as soon as the upgrade request is read (no answer). Odd VUs:
    // upgraded, then reset once their first message has arrived.
    let fault = spawn_fault(|mut tcp, cx| async move {
        let Some((path, key)) = read_upgrade(&mut tcp).await else {
            return;
        };
        cx.counts.bump(&cx.counts.requests);
        if vu_of(&path).is_multiple_of(2) {
            tcp.set_zero_linger().unwrap();
            cx.counts.bump(&cx.counts.faults[0]);
            return;
        }
        if tcp
            .write_all(switching_protocols(&key).as_bytes())
            .await
            .is_err()
        {
            return;
        }
        cx.counts.bump(&cx.counts.upgraded);
        let mut ws = WebSocketStream::from_raw_socket(tcp, Role::Server, None).await;
        if let Some(Ok(Message::Text(_))) = ws.next().await {
            cx.counts.bump(&cx.counts.msgs_in);
        }
        ws.get_ref().set_zero_linger().unwrap();
        cx.counts.bump(&cx.counts.faults[1]);
    })
    .await;
    let mut p = plan("resets", &fault.ws("/{{vu}}"), 10, "300ms", "1200ms");
    p["script"] =
        json!([{"send": "hi {{vu}}"}, {"expect": {"contains": "hi {{vu}}", "timeout": "3s"}}]);
    let f = finish(&app, p, "completed").await;

    assert_eq!(n(&fault.counts.requests), 10);
    assert_eq!(f.total("attempted"), 10);
    assert_eq!(
        f.failure("reset"),
        n(&fault.counts.faults[0]),
        "{}",
        f.totals()
    );
    assert_eq!(f.failure("reset"), 5);
    assert_eq!(f.total("opened"), n(&fault.counts.upgraded));
    assert_eq!(f.total("opened"), 5);
    assert_eq!(f.close("abnormal_1006"), n(&fault.counts.faults[1]));
    assert_eq!(f.close("abnormal_1006"), 5, "{}", f.totals());
    assert_eq!(f.total("msgs_sent"), n(&fault.counts.msgs_in));
    assert_eq!(f.total("msgs_received"), 0);
    assert_eq!(f.total("expect_timeouts"), 0, "the reset ended the wait");
}

// ---------------------------------------------------------------------------------
// 3. Handshakes that are never answered
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_handshakes_time_out_per_connect_timeout() {
    watch_panics();
    let app = spawn_app().await;
    // Accepts, reads the upgrade request, never answers; notes when the client gives up.
    let fault = spawn_fault(|mut tcp, cx| async move {
        if read_upgrade(&mut tcp).await.is_some() {
            cx.counts.bump(&cx.counts.requests);
        }
        hold_until_client_leaves(&mut tcp, &cx).await;
    })
    .await;
    let mut p = plan("silent", &fault.ws("/"), 10, "300ms", "2s");
    p["connect_timeout"] = json!("1s");
    let started = Instant::now();
    let f = finish(&app, p, "completed").await;
    let took = started.elapsed();

    assert_eq!(f.total("attempted"), 10);
    assert_eq!(f.failure("timeout"), 10, "{}", f.totals());
    assert_eq!(f.total("opened"), 0);
    assert_eq!(n(&fault.counts.requests), 10);
    assert!(
        fault
            .counts
            .wait_for(Duration::from_secs(5), |c| n(&c.client_gone) == 10)
            .await,
        "every timed-out client hung up: {}",
        n(&fault.counts.client_gone)
    );
    // On time: the 2.3 s plan plus the end-of-run close, not connect_timeout * VUs.
    let ms = f.run["summary"]["duration_ms"].as_u64().unwrap();
    assert!((2300..3300).contains(&ms), "ran {ms} ms");
    assert!(
        took < Duration::from_secs(6),
        "launch to done took {took:?}"
    );
}

// ---------------------------------------------------------------------------------
// 4. Half-open: the server goes silent, then the run is cancelled
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_target_is_detected_and_a_cancel_still_ends_the_run_promptly() {
    watch_panics();
    let app = spawn_app().await;
    const VUS: u64 = 5;
    // Echoes the first message, then neither reads nor writes again (socket kept open).
    let fault = spawn_fault(|tcp, cx| async move {
        let Some(mut ws) = accept_ws(tcp, &cx.counts).await else {
            return;
        };
        if let Some(Ok(m @ Message::Text(_))) = ws.next().await {
            cx.counts.bump(&cx.counts.msgs_in);
            if futures_util::SinkExt::send(&mut ws, m).await.is_ok() {
                cx.counts.bump(&cx.counts.msgs_out);
            }
        }
        cx.counts.bump(&cx.counts.faults[0]);
        cx.kill.cancelled().await;
    })
    .await;
    // After the first echo: an expect and a ping that get nothing back, then 32 KiB
    // messages every 5 ms until the socket buffers are full and a send blocks.
    let big = "x".repeat(32 * 1024);
    let mut p = plan("half-open", &fault.ws("/"), VUS as u32, "200ms", "30s");
    p["script"] = json!([
        {"send": "a {{vu}}"}, {"expect": {"contains": "a {{vu}}", "timeout": "2s"}},
        {"send": "b {{vu}}"}, {"expect": {"contains": "b {{vu}}", "timeout": "300ms"}},
        {"ping": "300ms"},
        {"repeat": {"every": "5ms", "steps": [{"send": big}]}}
    ]);
    let id = app.launch(p).await;
    let mut sse = Sse::open(&app, &id, None).await;
    // Cancel once every VU has timed out on the expect and the ping, and sends have
    // stalled (no message went out in a whole tick).
    let mut last_sent = None;
    let mut cancelled_at = None;
    let done = loop {
        let Some((event, data)) = sse.next().await else {
            panic!("stream ended without `done`");
        };
        if event == "done" {
            break data;
        }
        let t = &data["totals"];
        let sent = t["msgs_sent"].as_u64().unwrap();
        if cancelled_at.is_none()
            && t["expect_timeouts"] == VUS
            && t["ping_timeouts"] == VUS
            && sent > 2 * VUS
            && last_sent == Some(sent)
        {
            let (status, _) = app.post(&format!("/api/runs/{id}/cancel"), "").await;
            assert_eq!(status, 202);
            cancelled_at = Some(Instant::now());
        }
        last_sent = Some(sent);
        assert!(
            data["elapsed_ms"].as_u64().unwrap() < 20_000,
            "no stalled sends with current counts seen: {t}"
        );
    };
    let after_cancel = cancelled_at.expect("cancelled").elapsed();
    assert_eq!(done["status"], "cancelled", "{done}");
    let f = stored(&app, &id, "cancelled").await;

    // Blocked sends must not hold the run: well inside the 5 s grace for stuck VUs.
    assert!(
        after_cancel < Duration::from_secs(3),
        "cancel to done took {after_cancel:?}"
    );
    assert_eq!(f.run["summary"]["end_reason"], "cancelled");
    assert_eq!(f.total("opened"), VUS);
    assert_eq!(f.total("opened"), n(&fault.counts.upgraded));
    assert_eq!(f.total("expect_timeouts"), VUS, "{}", f.totals());
    assert_eq!(f.total("ping_timeouts"), VUS);
    assert_eq!(f.total("msgs_received"), n(&fault.counts.msgs_out));
    assert_eq!(
        n(&fault.counts.msgs_in),
        VUS,
        "the server read only the first"
    );
    assert_eq!(f.run["summary"]["latency"]["ws_rtt"]["count"], VUS);
    assert!(f.total("msgs_sent") > 2 * VUS, "{}", f.totals());
    assert_eq!(f.close("client"), VUS, "{}", f.totals());
    assert_eq!(n(&fault.counts.faults[0]), VUS);
}

// ---------------------------------------------------------------------------------
// 5. Malformed and oversized frames, and a bad upgrade answer
// ---------------------------------------------------------------------------------

/// The engine's frame and message size limit (`conn.rs`).
const MAX_MESSAGE: u64 = 16 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_are_protocol_and_size_errors() {
    watch_panics();
    let app = spawn_app().await;
    // VU % 3 == 0: garbage right behind a good 101 (same write). == 1: a good 101, then
    // a binary frame header announcing one byte more than the limit. == 2: a 101 with
    // a wrong Sec-WebSocket-Accept.
    let fault = spawn_fault(|mut tcp, cx| async move {
        let Some((path, key)) = read_upgrade(&mut tcp).await else {
            return;
        };
        cx.counts.bump(&cx.counts.requests);
        let variant = (vu_of(&path) % 3) as usize;
        let mut bytes = match variant {
            2 => switching_protocols("not the client's key").into_bytes(),
            _ => switching_protocols(&key).into_bytes(),
        };
        if variant == 0 {
            bytes.extend_from_slice(&[0xff; 16]);
        }
        if tcp.write_all(&bytes).await.is_err() {
            return;
        }
        if variant != 2 {
            cx.counts.bump(&cx.counts.upgraded);
        }
        if variant == 1 {
            let mut frame = vec![0x82, 127];
            frame.extend_from_slice(&(MAX_MESSAGE + 1).to_be_bytes());
            frame.extend_from_slice(&[0u8; 64]);
            if tcp.write_all(&frame).await.is_err() {
                return;
            }
        }
        cx.counts.bump(&cx.counts.faults[variant]);
        hold_until_client_leaves(&mut tcp, &cx).await;
    })
    .await;
    let f = finish(
        &app,
        plan("malformed", &fault.ws("/{{vu}}"), 9, "300ms", "1200ms"),
        "completed",
    )
    .await;

    assert_eq!(f.total("attempted"), 9);
    assert_eq!(
        f.failure("protocol"),
        n(&fault.counts.faults[2]),
        "{}",
        f.totals()
    );
    assert_eq!(f.failure("protocol"), 3);
    assert_eq!(f.total("opened"), n(&fault.counts.upgraded));
    assert_eq!(f.total("opened"), 6);
    assert_eq!(
        f.close("protocol_violation"),
        n(&fault.counts.faults[0]),
        "{}",
        f.totals()
    );
    assert_eq!(f.close("protocol_violation"), 3, "garbage after the 101");
    assert_eq!(
        f.close("too_large"),
        n(&fault.counts.faults[1]),
        "{}",
        f.totals()
    );
    assert_eq!(f.close("too_large"), 3, "a frame over 16 MiB announced");
    assert_eq!(
        f.total("bytes_received"),
        0,
        "no oversized payload was buffered"
    );
    assert!(
        fault
            .counts
            .wait_for(Duration::from_secs(5), |c| n(&c.client_gone) == 9)
            .await,
        "the engine hung up on every bad peer: {}",
        n(&fault.counts.client_gone)
    );
}

// ---------------------------------------------------------------------------------
// 6. TLS handshakes that fail
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_counted_for_every_attempt() {
    watch_panics();
    let app = spawn_app().await;
    // A plain HTTP server on the wss:// port: answers the ClientHello with a 400.
    let fault = spawn_fault(|mut tcp, cx| async move {
        let mut first = [0u8; 1];
        if tcp.read_exact(&mut first).await.is_err() {
            return;
        }
        if first[0] == 0x16 {
            // A TLS handshake record: the ClientHello.
            cx.counts.bump(&cx.counts.faults[0]);
        }
        let _ = tcp
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        hold_until_client_leaves(&mut tcp, &cx).await;
    })
    .await;
    let f = finish(
        &app,
        plan(
            "wss to plain",
            &format!("wss://{}/", fault.addr),
            6,
            "200ms",
            "800ms",
        ),
        "completed",
    )
    .await;
    assert_eq!(f.total("attempted"), 6);
    assert_eq!(f.failure("tls"), 6, "{}", f.totals());
    assert_eq!(f.failure("tls"), n(&fault.counts.faults[0]));

    // The sandbox's self-signed certificate without `insecure_tls`: every attempt,
    // retries included, fails as `tls` and nothing reaches the WebSocket layer.
    let mut p = plan(
        "wss untrusted",
        &format!("wss://{}/echo?tag=untrusted", app.sandbox_tls),
        6,
        "200ms",
        "1s",
    );
    p["reconnect"] =
        json!({"mode": "backoff", "max_attempts": 2, "initial": "50ms", "max": "100ms"});
    let f = finish(&app, p, "completed").await;
    assert_eq!(f.total("attempted"), 12, "{}", f.totals());
    assert_eq!(f.failure("tls"), 12);
    assert!(app.sandbox_profile("/echo?tag=untrusted").await.is_null());
}

// ---------------------------------------------------------------------------------
// 7. The token endpoint is down
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_token_endpoint_fails_every_attempt_before_any_handshake() {
    watch_panics();
    let app = spawn_app().await;
    // The WebSocket target: must never be reached without a token.
    let target = spawn_fault(|mut tcp, cx| async move {
        hold_until_client_leaves(&mut tcp, &cx).await;
    })
    .await;
    // A token endpoint that answers every request with 500.
    let broken = spawn_fault(|mut tcp, cx| async move {
        if read_http_request(&mut tcp).await.is_none() {
            return;
        }
        cx.counts.bump(&cx.counts.requests);
        let body = r#"{"error":"server_error"}"#;
        let answer = format!("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
        hold_until_client_leaves(&mut tcp, &cx).await;
    })
    .await;
    // A token endpoint that reads the request and never answers.
    let hanging = spawn_fault(|mut tcp, cx| async move {
        if read_http_request(&mut tcp).await.is_some() {
            cx.counts.bump(&cx.counts.requests);
        }
        hold_until_client_leaves(&mut tcp, &cx).await;
    })
    .await;
    // A closed port: bound, then let go.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let with_token_url = |url: String| {
        let mut p = plan("token down", &target.ws("/"), 5, "200ms", "500ms");
        p["auth"] = json!({"source": {"type": "oauth2", "token_url": url, "client_id": "c", "client_secret": "s"}});
        p
    };

    let f = finish(
        &app,
        with_token_url(format!("http://{closed}/oauth/token")),
        "completed",
    )
    .await;
    assert_eq!(f.total("attempted"), 5);
    assert_eq!(f.failure("token_error"), 5, "{}", f.totals());
    assert_eq!(
        f.run["summary"]["latency"]["token_fetch"]["count"], 5,
        "one fetch per attempt"
    );
    assert_eq!(f.run["diagnosis"]["kind"], "auth_failure");

    let f = finish(
        &app,
        with_token_url(format!("http://{}/oauth/token", broken.addr)),
        "completed",
    )
    .await;
    assert_eq!(f.total("attempted"), 5);
    assert_eq!(f.failure("token_http_500"), 5, "{}", f.totals());
    assert_eq!(f.failure("token_http_500"), n(&broken.counts.requests));
    assert_eq!(f.run["diagnosis"]["kind"], "auth_failure");

    // A fetch that gets no answer gives up after the plan's connect_timeout (1 s here),
    // within the run, instead of being cut off by its end as `aborted`.
    let mut p = with_token_url(format!("http://{}/oauth/token", hanging.addr));
    p["auth"]["policy"] = json!({"mode": "pool", "size": 5});
    p["connect_timeout"] = json!("1s");
    p["stages"] =
        json!([{"duration": "200ms", "connections": 5}, {"duration": "1800ms", "connections": 5}]);
    let f = finish(&app, p, "completed").await;
    assert_eq!(f.total("attempted"), 5);
    assert_eq!(f.failure("token_error"), 5, "{}", f.totals());
    assert_eq!(f.failure("token_error"), n(&hanging.counts.requests));
    assert!(
        hanging
            .counts
            .wait_for(Duration::from_secs(5), |c| n(&c.client_gone) == 5)
            .await,
        "every fetch hung up: {}",
        n(&hanging.counts.client_gone)
    );
    assert_eq!(
        n(&target.counts.accepted),
        0,
        "no handshake without a token"
    );
}

/// Reads one HTTP request (head and a body of up to 64 KiB by Content-Length).
async fn read_http_request(tcp: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return None;
        }
        match tcp.read(&mut chunk).await {
            Ok(got) if got > 0 => buf.extend_from_slice(&chunk[..got]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length.min(64 * 1024) {
        match tcp.read(&mut chunk).await {
            Ok(got) if got > 0 => buf.extend_from_slice(&chunk[..got]),
            _ => return None,
        }
    }
    Some(())
}

// ---------------------------------------------------------------------------------
// 8. An SSE client drops mid-run and resumes with Last-Event-ID
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_that_reconnects_mid_run_gets_every_tick_once() {
    watch_panics();
    let app = spawn_app().await;
    let mut p = plan(
        "sse resume",
        &app.ws("/echo?tag=resume"),
        5,
        "200ms",
        "2800ms",
    );
    p["script"] = json!([{"repeat": {"every": "200ms", "steps": [{"send": "m {{vu}}"}, {"expect": {"contains": "m {{vu}}"}}]}}]);
    let id = app.launch(p).await;

    // First connection: read three snapshots, then drop the connection.
    let mut first = Vec::new();
    {
        let mut sse = Sse::open(&app, &id, None).await;
        while first.len() < 3 {
            let (event, data) = sse.next().await.expect("stream open");
            assert_eq!(event, "snapshot", "the run is still live");
            first.push(data["seq"].as_u64().unwrap());
        }
    }
    let last_seen = *first.last().unwrap();
    // Let the run go on without us: watch (on another connection) until three more
    // ticks passed, so the resumed stream has to replay some from the database.
    {
        let mut sse = Sse::open(&app, &id, None).await;
        loop {
            let (event, data) = sse.next().await.expect("stream open");
            assert_eq!(event, "snapshot", "the run is still live");
            if data["seq"].as_u64().unwrap() >= last_seen + 3 {
                break;
            }
        }
    }
    let mut resumed = Vec::new();
    let mut sse = Sse::open(&app, &id, Some(last_seen)).await;
    let done = loop {
        match sse.next().await.expect("stream ends with done") {
            (e, data) if e == "done" => break data,
            (_, data) => resumed.push(data["seq"].as_u64().unwrap()),
        }
    };
    assert_eq!(done["status"], "completed", "{done}");
    let f = stored(&app, &id, "completed").await;
    let last = f.ticks.len() as u64;
    assert_eq!(
        resumed,
        (last_seen + 1..=last).collect::<Vec<_>>(),
        "every tick after Last-Event-ID exactly once (first connection saw {first:?})"
    );
    for w in first.windows(2) {
        assert_eq!(w[1], w[0] + 1, "live ticks without gaps: {first:?}");
    }
    // And the run's counts still agree with the sandbox's.
    let sb = app.sandbox_profile("/echo?tag=resume").await;
    assert_eq!(f.total("opened"), 5);
    assert_eq!(sb["accepted"], 5);
    assert_eq!(f.total("msgs_sent"), sb["msgs_in"].as_u64().unwrap());
    assert_eq!(f.total("msgs_received"), sb["msgs_out"].as_u64().unwrap());
    assert_eq!(f.close("client"), 5);
}
