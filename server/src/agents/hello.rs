//! An agent connection's first frame, read the same way for run agents (`hub`) and
//! pool agents (`pool`): both endpoints depend on this module, neither on the other's.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use engine::protocol::{FromAgent, PROTOCOL};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

/// An agent connection's first frame: its `hello` within 10 s, in this server's protocol
/// (another protocol is closed with 1002 and the reason). `None`: the connection is over.
pub(super) async fn read_hello(
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
) -> Option<FromAgent> {
    let hello = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<FromAgent>(&t).ok(),
        _ => None,
    };
    let hello @ FromAgent::Hello { protocol, .. } = hello? else {
        return None;
    };
    if protocol != PROTOCOL {
        let _ = sink
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: 1002,
                reason: format!("protocol {protocol}; this coordinator speaks {PROTOCOL}").into(),
            })))
            .await;
        return None;
    }
    Some(hello)
}
