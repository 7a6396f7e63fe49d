//! The standing pool of remote agents. `socketswarm agent --pool wss://HOST:PORT
//! --coordinator-pin sha256:… --allow-target …` (the token in `SOCKETSWARM_AGENT_TOKEN`)
//! on any machine dials `GET /api/agents/pool` on the agent listener (the pool token as
//! `Authorization: Bearer`, compared in constant time, wrong ones throttled per address
//! as wrong access tokens are) and waits there; `GET /api/agents` (on the main listener,
//! behind the access token) lists who is in the pool, where agents join and the pin. With `serve --agents-on joined`, a plan's `agents: N` takes N idle pool
//! agents and `agents: "all"` every idle one when the run starts. An invited agent
//! joins the run through the hub with the run's own secret like any other agent, so the
//! run's protocol (assign, barrier, ticks, done, loss) is the one path; after `bye` it is
//! back in the pool. An agent whose pool connection closes during a run is a casualty
//! of that run (the coordinator ends it with the reason).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use engine::protocol::{FromAgent, ToAgent};

use crate::http::throttle::{LoginThrottle, Verdict};
use crate::secret::{bearer, same};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use super::local::{BoxFuture, Launcher};

/// One agent in the pool, as `GET /api/agents` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolAgent {
    pub id: u64,
    pub host: String,
    pub version: String,
    /// Its open-file limit (about what it can hold).
    pub nofile: u64,
    pub source_addrs: Vec<IpAddr>,
    pub joined_at_ms: i64,
    /// The run it is making load for (its join key), if any.
    pub run: Option<String>,
}

struct Member {
    info: PoolAgent,
    tx: mpsc::Sender<ToAgent>,
}

/// The pool (empty and closed without a pool token).
#[derive(Default)]
pub struct Pool {
    token: Option<String>,
    /// Where agents join (`wss://…`) and the pin of this server's certificate, for
    /// `GET /api/agents`.
    listen: String,
    pin: String,
    /// Wrong pool tokens, per client address (shared with the hub's run secrets).
    throttle: Arc<LoginThrottle>,
    members: Mutex<BTreeMap<u64, Member>>,
    next: AtomicU64,
}

impl Pool {
    /// A pool agents may join with `token` (`None`: no pool, the endpoint answers 404)
    /// at `listen`, where this server's certificate has `pin`.
    pub fn new(
        token: Option<String>,
        listen: String,
        pin: String,
        throttle: Arc<LoginThrottle>,
    ) -> Pool {
        Pool {
            token,
            listen,
            pin,
            throttle,
            ..Pool::default()
        }
    }

    /// Everyone in the pool, oldest first.
    pub fn list(&self) -> Vec<PoolAgent> {
        self.members
            .lock()
            .map(|m| m.values().map(|a| a.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Agents waiting for a run.
    pub fn idle(&self) -> u32 {
        self.list().iter().filter(|a| a.run.is_none()).count() as u32
    }

    /// Takes `n` idle agents (the oldest first) for the run `key`.
    fn take(&self, n: u32, key: &str) -> Result<Vec<(u64, mpsc::Sender<ToAgent>)>, String> {
        let mut m = self.members.lock().map_err(|_| "the pool is unavailable")?;
        let idle: Vec<u64> = m
            .iter()
            .filter(|(_, a)| a.info.run.is_none())
            .map(|(id, _)| *id)
            .take(n as usize)
            .collect();
        if idle.len() < n as usize {
            return Err(format!(
                "agents: {n} asked, {} idle in the pool ({} joined; see GET /api/agents, and start more with `socketswarm agent --pool wss://THIS_SERVER:AGENT_PORT --coordinator-pin … --allow-target …`)",
                idle.len(),
                m.len()
            ));
        }
        Ok(idle
            .into_iter()
            .filter_map(|id| {
                let a = m.get_mut(&id)?;
                a.info.run = Some(key.to_string());
                Some((id, a.tx.clone()))
            })
            .collect())
    }

    /// Back in the pool (those still connected).
    fn release(&self, ids: &[u64]) {
        if let Ok(mut m) = self.members.lock() {
            for id in ids {
                if let Some(a) = m.get_mut(id) {
                    a.info.run = None;
                }
            }
        }
    }

    fn present(&self, id: u64) -> bool {
        self.members.lock().is_ok_and(|m| m.contains_key(&id))
    }

    /// `GET /api/agents/pool` (the agents' WebSocket, behind the pool token), on the
    /// agent listener.
    pub fn router<S: Clone + Send + Sync + 'static>(self: Arc<Self>) -> Router<S> {
        Router::new()
            .route("/api/agents/pool", get(join))
            .with_state(self)
    }

    /// `GET /api/agents` (behind the access token like every API route), on the main
    /// listener.
    pub fn list_router<S: Clone + Send + Sync + 'static>(self: Arc<Self>) -> Router<S> {
        Router::new()
            .route("/api/agents", get(list))
            .with_state(self)
    }
}

async fn list(State(pool): State<Arc<Pool>>) -> Json<serde_json::Value> {
    let agents = pool.list();
    Json(serde_json::json!({
        "pool": pool.token.is_some(),
        "listen": pool.listen,
        "pin": pool.pin,
        "idle": agents.iter().filter(|a| a.run.is_none()).count(),
        "agents": agents,
    }))
}

/// 429 for a secret offered while its address is locked out.
pub(super) fn locked_out(wait: std::time::Duration) -> Response {
    let secs = wait.as_millis().div_ceil(1000).max(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(axum::http::header::RETRY_AFTER, secs.to_string())],
        format!("too many wrong tokens from this address: try again in {secs} s"),
    )
        .into_response()
}

async fn join(
    State(pool): State<Arc<Pool>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(token) = pool.token.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "this server has no agent pool (start it with --agents-on joined --agent-pool-token TOKEN)",
        )
            .into_response();
    };
    let right = same(
        token.as_bytes(),
        bearer(&headers).unwrap_or_default().as_bytes(),
    );
    match pool
        .throttle
        .judge(peer.ip(), right, std::time::Instant::now())
    {
        Verdict::Right => {}
        Verdict::Wrong => {
            tracing::warn!(client = %peer.ip(), "an agent showed a wrong pool token");
            return (StatusCode::UNAUTHORIZED, "wrong pool token").into_response();
        }
        Verdict::LockedOut(wait) => return locked_out(wait),
    }
    ws.max_message_size(64 << 10)
        .on_upgrade(move |socket| member(socket, pool))
}

/// One pool agent's connection: its `hello`, then invitations out until it leaves.
async fn member(socket: WebSocket, pool: Arc<Pool>) {
    let (mut sink, mut stream) = socket.split();
    let Some(FromAgent::Hello {
        version,
        host,
        nofile,
        source_addrs,
        ..
    }) = super::hello::read_hello(&mut sink, &mut stream).await
    else {
        return;
    };
    let id = pool.next.fetch_add(1, Ordering::Relaxed) + 1;
    let (tx, mut rx) = mpsc::channel::<ToAgent>(16);
    if let Ok(mut m) = pool.members.lock() {
        m.insert(
            id,
            Member {
                info: PoolAgent {
                    id,
                    host,
                    version,
                    nofile,
                    source_addrs,
                    joined_at_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                    run: None,
                },
                tx,
            },
        );
    }
    tracing::info!(id, "an agent joined the pool");
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => {
                    if sink.send(Message::Text(m.to_text().into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            f = stream.next() => match f {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if let Ok(mut m) = pool.members.lock() {
        m.remove(&id);
    }
    tracing::info!(id, "an agent left the pool");
}

/// A run's agents taken from the pool: agent i of the run is the i-th taken.
pub struct PoolLauncher {
    pool: Arc<Pool>,
    /// The run's join key (what `GET /api/agents` shows as the agents' run).
    key: String,
    /// The agents taken, by run index, and whether their leaving was reported.
    taken: Mutex<Vec<(u64, bool)>>,
}

impl PoolLauncher {
    pub fn new(pool: Arc<Pool>, key: &str) -> PoolLauncher {
        PoolLauncher {
            pool,
            key: key.to_string(),
            taken: Mutex::new(Vec::new()),
        }
    }
}

impl Launcher for PoolLauncher {
    fn launch<'a>(
        &'a self,
        n: u32,
        join: &'a str,
        secret: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // Agents dial back the way they reached the pool: they get the path only.
            let path = url::Url::parse(join)
                .map(|u| u.path().to_string())
                .map_err(|e| format!("the run's join URL `{join}`: {e}"))?;
            let agents = self.pool.take(n, &self.key)?;
            if let Ok(mut t) = self.taken.lock() {
                *t = agents.iter().map(|(id, _)| (*id, false)).collect();
            }
            for (index, (id, tx)) in agents.into_iter().enumerate() {
                let invite = ToAgent::Invite {
                    path: path.clone(),
                    secret: secret.to_string(),
                    index: index as u32,
                };
                if tx.send(invite).await.is_err() {
                    return Err(format!("pool agent {id} left before its invitation"));
                }
            }
            Ok(())
        })
    }

    fn casualties(&self) -> BoxFuture<'_, Vec<(u32, String)>> {
        let mut gone = Vec::new();
        if let Ok(mut t) = self.taken.lock() {
            for (i, (id, reported)) in t.iter_mut().enumerate() {
                if !*reported && !self.pool.present(*id) {
                    *reported = true;
                    gone.push((
                        i as u32,
                        format!(
                            "pool agent {id} left the pool (its connection to this server closed)"
                        ),
                    ));
                }
            }
        }
        Box::pin(std::future::ready(gone))
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        if let Ok(t) = self.taken.lock() {
            self.pool
                .release(&t.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        }
        Box::pin(std::future::ready(()))
    }
}
