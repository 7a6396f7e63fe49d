//! Where agents dial in, on the agent listener (`channel`, TLS with the pinned
//! certificate): `GET /api/agents/join/{key}` upgraded to a WebSocket, with the run's
//! secret as `Authorization: Bearer …`. A fleet registers a key and a secret for its run
//! and receives each agent that joins as an `AgentConn` (its `hello`, and two channels
//! standing for the socket). The access token does not apply here: the per-run secret
//! does (two random UUIDs, 244 random bits, compared in constant time), and wrong secrets are throttled
//! per address as wrong access tokens are (`http::throttle`, shared with the pool).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use engine::protocol::{FromAgent, ToAgent};
use futures_util::{SinkExt, StreamExt};

use crate::http::throttle::{LoginThrottle, Verdict};
use crate::secret::{bearer, same};
use tokio::sync::mpsc;

/// An agent that joined: what it said first, and its socket as channels.
pub struct AgentConn {
    pub hello: FromAgent,
    pub tx: mpsc::Sender<ToAgent>,
    pub rx: mpsc::Receiver<FromAgent>,
}

impl AgentConn {
    /// The index it asked for, if any.
    pub fn index(&self) -> Option<u32> {
        match &self.hello {
            FromAgent::Hello { index, .. } => *index,
            _ => None,
        }
    }
}

struct Registration {
    secret: String,
    joined: mpsc::Sender<AgentConn>,
}

/// The registry of runs expecting agents, and the pool of agents waiting for runs.
#[derive(Default)]
pub struct Hub {
    runs: Mutex<HashMap<String, Registration>>,
    pub pool: Arc<super::pool::Pool>,
    /// Wrong run secrets and pool tokens, per client address.
    throttle: Arc<LoginThrottle>,
}

/// Largest frame an agent may send (a tick with histograms is a few KiB; outcome keys,
/// identities and evidence in it are bounded).
const MAX_FRAME: usize = 1 << 20;

/// Frames read from one agent and not yet taken by its run: with `MAX_FRAME`, what a
/// rogue agent can make the coordinator hold (64 MiB, before parsing's overhead).
const FRAMES_QUEUED: usize = 64;

impl Hub {
    /// A hub whose pool agents join with `pool_token` (`None`: no pool) at `listen`
    /// (`wss://…`), where this server's certificate has `pin`.
    pub fn with_pool(pool_token: Option<String>, listen: String, pin: String) -> Hub {
        let throttle = Arc::new(LoginThrottle::default());
        Hub {
            pool: Arc::new(super::pool::Pool::new(
                pool_token,
                listen,
                pin,
                throttle.clone(),
            )),
            throttle,
            ..Hub::default()
        }
    }

    /// Expects agents for `key` with `secret`; they arrive on the returned channel.
    pub fn register(&self, key: &str, secret: &str) -> mpsc::Receiver<AgentConn> {
        let (tx, rx) = mpsc::channel(64);
        if let Ok(mut m) = self.runs.lock() {
            m.insert(
                key.to_string(),
                Registration {
                    secret: secret.to_string(),
                    joined: tx,
                },
            );
        }
        rx
    }

    pub fn unregister(&self, key: &str) {
        if let Ok(mut m) = self.runs.lock() {
            m.remove(key);
        }
    }

    fn joined(&self, key: &str, bearer: &str) -> Option<mpsc::Sender<AgentConn>> {
        let m = self.runs.lock().ok()?;
        let r = m.get(key)?;
        same(r.secret.as_bytes(), bearer.as_bytes()).then(|| r.joined.clone())
    }

    /// The agent listener's routes: `/api/agents/join/{key}` and the pool's
    /// `/api/agents/pool`, for any app state.
    pub fn router<S: Clone + Send + Sync + 'static>(self: Arc<Self>) -> Router<S> {
        let pool = self.pool.clone().router();
        Router::new()
            .route("/api/agents/join/{key}", get(join))
            .with_state(self)
            .merge(pool)
    }
}

async fn join(
    State(hub): State<Arc<Hub>>,
    Path(key): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let joined = hub.joined(&key, bearer(&headers).unwrap_or_default());
    match hub
        .throttle
        .judge(peer.ip(), joined.is_some(), std::time::Instant::now())
    {
        Verdict::Right => {}
        Verdict::Wrong => {
            tracing::warn!(client = %peer.ip(), "an agent showed an unknown run or a wrong secret");
            return (StatusCode::UNAUTHORIZED, "unknown run or wrong secret").into_response();
        }
        Verdict::LockedOut(wait) => return super::pool::locked_out(wait),
    }
    let Some(joined) = joined else {
        return (StatusCode::UNAUTHORIZED, "unknown run or wrong secret").into_response();
    };
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| pump(socket, joined))
}

/// Reads the agent's `hello`, then relays frames both ways until either side ends.
async fn pump(socket: WebSocket, joined: mpsc::Sender<AgentConn>) {
    let (mut sink, mut stream) = socket.split();
    let Some(hello) = super::hello::read_hello(&mut sink, &mut stream).await else {
        return;
    };
    let (to_tx, mut to_rx) = mpsc::channel::<ToAgent>(256);
    let (from_tx, from_rx) = mpsc::channel::<FromAgent>(FRAMES_QUEUED);
    if joined
        .send(AgentConn {
            hello,
            tx: to_tx,
            rx: from_rx,
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = async move {
        while let Some(m) = to_rx.recv().await {
            if sink.send(Message::Text(m.to_text().into())).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    };
    let reader = async move {
        while let Some(Ok(m)) = stream.next().await {
            let Message::Text(t) = m else { continue };
            match serde_json::from_str::<FromAgent>(&t) {
                Ok(f) => {
                    if from_tx.send(f).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("agent sent a frame that does not parse: {e}"),
            }
        }
    };
    // Either side ending ends the connection; the fleet sees its channel close.
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}
