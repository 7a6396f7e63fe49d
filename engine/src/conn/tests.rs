//! Unit tests of `conn`: backoff and error kinds; a send to a peer that stopped
//! reading, and oversized frames (a real socket pair); an idle VU task's size.

use super::socket::{close_normally, end_of, send_message, Timer};
use super::*;
use crate::plan::Dur;
use tokio::net::{TcpListener, TcpSocket};

// ---- backoff and error kinds
#[test]
fn backoff_grows_caps_and_honours_retry_after() {
    let p = Reconnect::Backoff {
        max_attempts: crate::plan::MaxAttempts::Count(4),
        initial: Dur::millis(100),
        max: Dur::millis(300),
        honor_retry_after: true,
    };
    for streak in 1..4 {
        let d = next_delay(&p, streak, None).unwrap();
        assert!(d <= Duration::from_millis(300));
    }
    assert!(next_delay(&p, 4, None).is_none());
    assert!(next_delay(&p, 1, Some(Duration::from_secs(2))).unwrap() >= Duration::from_secs(2));
    assert!(next_delay(&Reconnect::Never, 1, None).is_none());
}

#[test]
fn io_errors_map_to_kinds() {
    use std::io::{Error, ErrorKind};
    assert_eq!(
        io_kind(&Error::from(ErrorKind::ConnectionRefused)),
        FailKind::Refused
    );
    assert_eq!(
        io_kind(&Error::from(ErrorKind::AddrNotAvailable)),
        FailKind::ClientLimit
    );
    assert_eq!(
        io_kind(&Error::from_raw_os_error(24)),
        FailKind::ClientLimit
    );
    assert_eq!(hex_decode("00ff10"), vec![0, 255, 16]);
}

// ---- a peer that stopped reading; oversized frames
/// A client `Ws` to a peer that accepts and then never reads (small socket buffers
/// on both sides, so a 1 MiB message cannot fit). Returns the peer to keep it open.
async fn stalled_pair() -> (Ws, tokio::net::TcpStream) {
    let ls = TcpSocket::new_v4().unwrap();
    ls.set_recv_buffer_size(4096).unwrap();
    ls.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener: TcpListener = ls.listen(8).unwrap();
    let cs = TcpSocket::new_v4().unwrap();
    cs.set_send_buffer_size(4096).unwrap();
    let (client, accepted) = tokio::join!(
        cs.connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let ws = WebSocketStream::from_raw_socket(
        crate::budget::Metered::new(
            MaybeTls::Plain(client.unwrap()),
            crate::budget::Budget::process(),
        ),
        Role::Client,
        Some(ws_config()),
    )
    .await;
    (ws, accepted.unwrap().0)
}

#[tokio::test]
async fn a_send_to_a_peer_that_stopped_reading_still_flushes_and_obeys_cancel() {
    let (mut ws, _peer) = stalled_pair().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let cancel = Stop::default();
    let vu_cancel = cancel.clone();
    let vu = tokio::spawn(async move {
        let mut rec = Recorder::new(tx, Duration::from_millis(1));
        rec.expect_timeout();
        let msg = Message::binary(vec![0u8; 1 << 20]);
        let end = send_message(&mut ws, msg, &mut rec, &mut Timer::default(), &vu_cancel).await;
        // The close cannot get out either: it gives up after CLOSE_WAIT.
        close_normally(&mut ws, &mut rec).await;
        end
    });
    // The data recorded before the send reaches the aggregator while it is stuck...
    let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("flushed while the send is blocked")
        .unwrap();
    assert_eq!(p.expect_timeouts, 1);
    assert!(!vu.is_finished(), "1 MiB cannot fit in 8 KiB of buffers");
    // ...and a cancel ends the send (and the bounded close) as ours.
    cancel.stop();
    let end = tokio::time::timeout(Duration::from_secs(5), vu)
        .await
        .expect("a cancelled send returns")
        .unwrap();
    assert_eq!(end, Err(CloseKind::Client));
}

#[tokio::test]
async fn frames_over_the_size_limit_end_the_session_as_protocol() {
    let (mut ws, mut peer) = stalled_pair().await;
    use tokio::io::AsyncWriteExt;
    // A binary frame header announcing one byte more than the limit, and no payload.
    let mut head = vec![0x82u8, 127];
    head.extend_from_slice(&(MAX_MESSAGE_BYTES as u64 + 1).to_be_bytes());
    peer.write_all(&head).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the header alone is enough")
        .expect("an error, not the end")
        .unwrap_err();
    assert!(matches!(err, WsError::Capacity(_)), "{err:?}");
    assert_eq!(end_of(&err), CloseKind::TooLarge);
    assert_eq!(end_of(&err).key(), "too_large");
}

#[tokio::test]
async fn messages_past_the_process_budget_end_the_session_as_memory_budget() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let budget: &'static crate::budget::Budget =
        Box::leak(Box::new(crate::budget::Budget::new(1 << 20)));
    let mut ws = WebSocketStream::from_raw_socket(
        crate::budget::Metered::new(MaybeTls::Plain(client.unwrap()), budget),
        Role::Client,
        Some(ws_config()),
    )
    .await;
    let mut peer = accepted.unwrap().0;
    // Small messages come and go: each is given back once handled.
    for _ in 0..64 {
        let mut frame = vec![0x82u8, 126];
        frame.extend_from_slice(&(60_000u16).to_be_bytes());
        frame.extend_from_slice(&[1u8; 60_000]);
        peer.write_all(&frame).await.unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.len(), 60_000);
        drop(m);
        ws.get_mut().settle();
    }
    assert_eq!(budget.usage().used, 0);
    // One message larger than the whole budget: cut off while it arrives.
    let big = 2usize << 20;
    let mut frame = vec![0x82u8, 127];
    frame.extend_from_slice(&(big as u64).to_be_bytes());
    let writer = tokio::spawn(async move {
        let _ = peer.write_all(&frame).await;
        let _ = peer.write_all(&vec![2u8; big]).await;
        peer
    });
    let err = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("ends")
        .expect("an error, not the end")
        .unwrap_err();
    assert_eq!(end_of(&err), CloseKind::MemoryBudget, "{err:?}");
    assert_eq!(end_of(&err).key(), "session_memory_budget");
    drop(ws);
    assert_eq!(
        budget.usage().used,
        0,
        "a dropped connection gives its bytes back"
    );
    assert!(budget.usage().refused >= 1);
    writer.abort();
}

#[tokio::test]
async fn a_message_in_many_fragments_counts_as_one() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let budget: &'static crate::budget::Budget =
        Box::leak(Box::new(crate::budget::Budget::new(1 << 20)));
    let mut ws = WebSocketStream::from_raw_socket(
        crate::budget::Metered::new(MaybeTls::Plain(client.unwrap()), budget),
        Role::Client,
        Some(ws_config()),
    )
    .await;
    let mut peer = accepted.unwrap().0;
    // 2 MiB in 32 KiB fragments: no frame is large, the message is.
    let writer = tokio::spawn(async move {
        let n = 64;
        for i in 0..n {
            let opcode = if i == 0 { 0x02 } else { 0x00 };
            let fin = if i == n - 1 { 0x80 } else { 0x00 };
            let mut frame = vec![fin | opcode, 126];
            frame.extend_from_slice(&(32_768u16).to_be_bytes());
            frame.extend_from_slice(&[3u8; 32_768]);
            if peer.write_all(&frame).await.is_err() {
                break;
            }
        }
        peer
    });
    let err = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("ends")
        .expect("an error, not the end")
        .unwrap_err();
    assert_eq!(end_of(&err), CloseKind::MemoryBudget, "{err:?}");
    drop(ws);
    assert_eq!(budget.usage().used, 0);
    writer.abort();
}

// ---- the size of an idle VU's task
#[test]
fn idle_vu_task_stays_small() {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let sh = Arc::new(Shared {
        host_header: "h".into(),
        resource: Template::parse("/").unwrap(),
        addrs: vec!["127.0.0.1:1".parse().unwrap()],
        sources: Vec::new(),
        share: crate::schedule::Share::ALL,
        headers: Vec::new(),
        protocols: Vec::new(),
        connect_timeout: Duration::from_secs(1),
        ops: Vec::new(),
        vars: Vec::new(),
        responders: Vec::new(),
        reconnect: Reconnect::Never,
        flush_every: Duration::from_millis(250),
        tx,
        tls: None,
        tokens: None,
        rotation: None,
        http_steps: Vec::new(),
        http: None,
        pinned: Default::default(),
        secrets: Default::default(),
        gauges: Default::default(),
        budget: crate::budget::Budget::process(),
        identities: Vec::new(),
    });
    let fut = run_vu(sh, 0, Instant::now(), Stop::default());
    let size = std::mem::size_of_val(&fut);
    println!(
        "run_vu future: {size} bytes; Ws: {}",
        std::mem::size_of::<Ws>()
    );
    // tokio rounds a task up to 128 bytes and adds ~120 of its own: a future of at
    // most 392 bytes makes a 512-byte task (it was 1,792). Every held connection
    // pays this (bench/LEAN.md).
    assert!(size <= 392, "run_vu future is {size} bytes");
}
