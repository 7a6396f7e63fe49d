//! Tokens for the handshake: a static pool or OAuth2 client credentials, shared by
//! connections according to the plan's `TokenPolicy`.
//!
//! Invariants: every token fetch is measured (`token_fetch` latency; failures become
//! the connection attempt's outcome, `token_http_<status>` or `token_error`). A slot's
//! token is fetched once and reused until `refresh_before` its expiry; concurrent VUs of
//! one slot wait on that slot's lock instead of fetching twice (single flight).

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::outcome::FailKind;
use crate::plan::{Auth, TokenPolicy, TokenSource};
use crate::schedule::Share;
use crate::stats::{Metric, Recorder};

enum Source {
    Static(Vec<String>),
    Oauth2 {
        url: String,
        form: Vec<(String, String)>,
    },
}

/// A token and when to take the next one: a slot's cached token, and what a
/// connection holds (its rotation is due at `refresh_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) token: String,
    /// When to fetch a new one (`None`: never expires).
    pub(crate) refresh_at: Option<Instant>,
}

type Cached = Lease;

/// When a token fetched at `fetched` that lives `expires_in` is refreshed:
/// `refresh_before` ahead of its expiry — but after at least a tenth of its life, so a
/// `refresh_before` at or past the lifetime cannot make every use fetch again (and a
/// rotating connection rotate without pause). `None` (no usable `expires_in`): never.
/// Pure; the one rule the slot cache and live connections' rotation follow.
pub(crate) fn refresh_at(
    fetched: Instant,
    expires_in: Option<f64>,
    refresh_before: Duration,
) -> Option<Instant> {
    let life = expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(10.0 * 365.0 * 86_400.0)))?;
    let lead = refresh_before.min(life.mul_f64(0.9));
    Some(fetched + life - lead)
}

/// One slot: its token, and how its last fetch failed (shared with the attempts that
/// were waiting for that fetch, so a dead endpoint costs one timeout, not one per VU).
#[derive(Default)]
struct Slot {
    cached: Option<Cached>,
    failed: Option<(FailKind, Instant)>,
}

/// The run's tokens.
pub(crate) struct TokenPool {
    source: Source,
    policy: TokenPolicy,
    /// The run's slots (0 for `PerConnection`) and this agent's part of them.
    total: u32,
    share: Share,
    /// One cache per slot this agent owns (none for `PerConnection`, which never
    /// reuses a token).
    slots: Vec<tokio::sync::Mutex<Slot>>,
    http: reqwest::Client,
    refresh_before: Duration,
    /// The process's budget for bytes held for targets (answers being read).
    budget: &'static crate::budget::Budget,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<f64>,
}

impl TokenPool {
    /// Resolves secrets and sizes the slots; errors are setup errors (the run fails to start).
    /// A token request may take `timeout` in all (the plan's `connect_timeout`, as for
    /// HTTP steps): a token endpoint that never answers fails attempts as `token_error`
    /// within the run instead of leaving them to be cut off as `aborted`.
    pub(crate) fn new(
        auth: &Auth,
        peak: u32,
        share: Share,
        tls: &rustls::ClientConfig,
        timeout: Duration,
        pinned: &crate::outbound::Pinned,
    ) -> Result<TokenPool, String> {
        let source = match &auth.source {
            TokenSource::Static { tokens } => {
                let values = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| t.resolve().ok_or_else(|| format!("auth.source.tokens[{i}] is not available (unset env var or redacted)")))
                    .collect::<Result<Vec<_>, _>>()?;
                Source::Static(values)
            }
            TokenSource::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
            } => {
                let secret = client_secret.resolve().ok_or(
                    "auth.source.client_secret is not available (unset env var or redacted)",
                )?;
                let mut form = vec![
                    ("grant_type".to_string(), "client_credentials".to_string()),
                    ("client_id".to_string(), client_id.clone()),
                    ("client_secret".to_string(), secret),
                ];
                if let Some(s) = scope {
                    form.push(("scope".into(), s.clone()));
                }
                if let Some(a) = audience {
                    form.push(("audience".into(), a.clone()));
                }
                Source::Oauth2 {
                    url: token_url.clone(),
                    form,
                }
            }
        };
        let total = auth.slots(peak).unwrap_or(0);
        // This agent caches only the slots it owns (see `sharded_slot`).
        let n = if total == 0 {
            0
        } else {
            share.target(total).max(1) as usize
        };
        // Pinned to the allowed addresses, and no redirects: a token endpoint answering
        // 307 must not make us send the client secret elsewhere.
        let http = pinned
            .client(
                reqwest::Client::builder()
                    .use_preconfigured_tls(tls.clone())
                    .timeout(timeout),
            )
            .build()
            .map_err(|e| format!("could not build the token HTTP client: {e}"))?;
        Ok(TokenPool {
            source,
            policy: auth.policy.clone(),
            total,
            share,
            slots: (0..n)
                .map(|_| tokio::sync::Mutex::new(Slot::default()))
                .collect(),
            http,
            refresh_before: auth.refresh_before.0,
            budget: crate::budget::Budget::process(),
        })
    }

    /// The slot (token identity) connection `vu` uses; per-connection tokens use the VU.
    pub(crate) fn slot_of(&self, vu: u64) -> u32 {
        u32::try_from(self.place(vu).0).unwrap_or(u32::MAX)
    }

    /// Where `vu`'s token comes from: its slot (the identity the diagnosis sees) and,
    /// for fetched tokens, the index of this agent's cache for it.
    fn place(&self, vu: u64) -> (u64, Option<usize>) {
        if let Source::Static(_) = self.source {
            // Given, not fetched: the single-process mapping, whichever agent holds vu.
            return (plain_slot(&self.policy, vu), None);
        }
        let (slot, local) = sharded_slot(&self.policy, self.total, self.share, vu);
        (slot, local.filter(|&l| l < self.slots.len()))
    }

    /// The token for `vu`'s next attempt (or its connection's rotation), fetching (and
    /// measuring) it if needed, with when to take the next one.
    pub(crate) async fn get(&self, vu: u64, rec: &mut Recorder) -> Result<Lease, FailKind> {
        let (slot, local) = self.place(vu);
        if let Source::Static(list) = &self.source {
            return Ok(Lease {
                token: list[(slot % list.len().max(1) as u64) as usize].clone(),
                refresh_at: None,
            });
        }
        let Some(cache) = local.and_then(|l| self.slots.get(l)) else {
            return self.fetch(rec).await;
        };
        let asked = Instant::now();
        let mut guard = cache.lock().await;
        if let Some(c) = guard.cached.as_ref() {
            if c.refresh_at.is_none_or(|t| Instant::now() < t) {
                return Ok(c.clone());
            }
        }
        // A fetch that failed while this attempt waited for the lock is its answer too.
        if let Some((kind, at)) = guard.failed {
            if at >= asked {
                return Err(kind);
            }
        }
        match self.fetch(rec).await {
            Ok(fresh) => {
                guard.cached = Some(fresh.clone());
                guard.failed = None;
                Ok(fresh)
            }
            Err(kind) => {
                guard.failed = Some((kind, Instant::now()));
                Err(kind)
            }
        }
    }

    async fn fetch(&self, rec: &mut Recorder) -> Result<Cached, FailKind> {
        let Source::Oauth2 { url, form } = &self.source else {
            return Err(FailKind::TokenError);
        };
        let t0 = Instant::now();
        let resp = self.http.post(url).form(form).send().await;
        let result = match resp {
            Err(_) => Err(FailKind::TokenError),
            Ok(r) if !r.status().is_success() => Err(FailKind::TokenStatus(r.status().as_u16())),
            // Read within its cap and the process's budget.
            Ok(r) => {
                match crate::budget::read_answer(r, crate::report::MAX_TOKEN_ANSWER, self.budget)
                    .await
                {
                    Ok((body, _hold)) => match serde_json::from_slice::<TokenResponse>(&body) {
                        Ok(t) => Ok(Lease {
                            refresh_at: refresh_at(t0, t.expires_in, self.refresh_before),
                            token: t.access_token,
                        }),
                        Err(_) => Err(FailKind::TokenError),
                    },
                    Err(crate::budget::AnswerError::TooLarge) => Err(FailKind::TokenTooLarge),
                    Err(crate::budget::AnswerError::OverBudget) => Err(FailKind::MemoryBudget),
                    Err(crate::budget::AnswerError::Failed) => Err(FailKind::TokenError),
                }
            }
        };
        rec.sample(Metric::TokenFetch, t0.elapsed());
        result
    }
}

/// The slot of connection `vu` in one process: the policy as written.
pub(crate) fn plain_slot(policy: &TokenPolicy, vu: u64) -> u64 {
    match policy {
        TokenPolicy::Shared => 0,
        TokenPolicy::Pool { size } => vu % u64::from((*size).max(1)),
        TokenPolicy::PerConnections { connections } => vu / u64::from((*connections).max(1)),
        TokenPolicy::PerConnection => vu,
    }
}

/// The slot of connection `vu` (a global slot, `vu ≡ i (mod N)`) of agent `share` when
/// the run's `total` fetched token slots are split among its agents, and the index of
/// the agent's own cache for it. Agent i owns the slots s ≡ i (mod N) below `total`
/// (the connections' own split, `Share::target`), so N agents fetch the tokens one
/// process would — not N times them; an agent that owns none (fewer slots than agents,
/// e.g. one shared token) fetches one of its own, slot i, so its identity is not
/// confused with another agent's token. Its k-th connection takes its owned slots as
/// the policy takes the run's: round robin (`Pool`) or `connections` at a time
/// (`PerConnections`). With one agent this is `plain_slot` for every connection of the
/// run's peak. Pure; `PerConnection` tokens are never cached.
pub(crate) fn sharded_slot(
    policy: &TokenPolicy,
    total: u32,
    share: Share,
    vu: u64,
) -> (u64, Option<usize>) {
    let k = share.ordinal(vu);
    let owned = u64::from(share.target(total));
    if matches!(policy, TokenPolicy::PerConnection) {
        return (vu, None);
    }
    if owned == 0 {
        return (u64::from(share.index), Some(0));
    }
    let local = match policy {
        TokenPolicy::Pool { .. } => k % owned,
        TokenPolicy::PerConnections { connections } => {
            (k / u64::from((*connections).max(1))) % owned
        }
        TokenPolicy::Shared | TokenPolicy::PerConnection => 0,
    };
    (share.slot(local), usize::try_from(local).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Secret;

    /// One shared OAuth2 client-credentials token from `url`.
    fn shared_oauth(url: String) -> Auth {
        Auth {
            source: TokenSource::Oauth2 {
                token_url: url,
                client_id: "c".into(),
                client_secret: Secret::Value("s".into()),
                scope: None,
                audience: None,
            },
            policy: TokenPolicy::Shared,
            header: "Authorization".into(),
            value: "Bearer {{token}}".into(),
            refresh_before: crate::plan::Dur::secs(30),
            rotation: None,
        }
    }

    fn pool(policy: TokenPolicy) -> TokenPool {
        let auth = Auth {
            source: TokenSource::Static {
                tokens: vec![
                    Secret::Value("a".into()),
                    Secret::Value("b".into()),
                    Secret::Value("c".into()),
                ],
            },
            policy,
            header: "Authorization".into(),
            value: "Bearer {{token}}".into(),
            refresh_before: crate::plan::Dur::secs(30),
            rotation: None,
        };
        TokenPool::new(
            &auth,
            10,
            Share::ALL,
            &crate::tls::client_config(false).unwrap(),
            Duration::from_secs(10),
            &Default::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_token_endpoint_that_never_answers_fails_within_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        // Accepts and holds the connection, never answering.
        let _held = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(tcp);
        });
        let auth = shared_oauth(url);
        let tls = crate::tls::client_config(false).unwrap();
        let p = TokenPool::new(
            &auth,
            1,
            Share::ALL,
            &tls,
            Duration::from_millis(200),
            &Default::default(),
        )
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut rec = Recorder::new(tx, Duration::from_secs(1));
        let got = tokio::time::timeout(Duration::from_secs(5), p.get(0, &mut rec))
            .await
            .expect("gave up after the 200 ms timeout, not the old fixed 10 s");
        assert_eq!(got, Err(FailKind::TokenError));
        rec.finish().await;
        let partial = rx.recv().await.unwrap();
        assert_eq!(partial.samples.len(), 1, "the failed fetch is timed");
    }

    #[tokio::test]
    async fn waiters_share_one_failed_fetch_instead_of_each_timing_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = accepted.clone();
        // Accepts connections and never answers.
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(tcp);
            }
        });
        let auth = shared_oauth(url);
        let tls = crate::tls::client_config(false).unwrap();
        let p = TokenPool::new(
            &auth,
            5,
            Share::ALL,
            &tls,
            Duration::from_millis(200),
            &Default::default(),
        )
        .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let mut recs: Vec<Recorder> = (0..5)
            .map(|_| Recorder::new(tx.clone(), Duration::from_secs(1)))
            .collect();
        let results = futures_util::future::join_all(
            recs.iter_mut()
                .enumerate()
                .map(|(vu, rec)| p.get(vu as u64, rec)),
        )
        .await;
        assert!(results.iter().all(|r| *r == Err(FailKind::TokenError)));
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one request for five waiting attempts"
        );
        // A later attempt tries again (the endpoint may be back).
        let mut rec = Recorder::new(tx, Duration::from_secs(1));
        assert_eq!(p.get(0, &mut rec).await, Err(FailKind::TokenError));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn policies_map_connections_to_slots() {
        assert_eq!(
            (0..4)
                .map(|v| pool(TokenPolicy::Shared).slot_of(v))
                .collect::<Vec<_>>(),
            vec![0, 0, 0, 0]
        );
        let p = pool(TokenPolicy::Pool { size: 2 });
        assert_eq!(
            (0..4).map(|v| p.slot_of(v)).collect::<Vec<_>>(),
            vec![0, 1, 0, 1]
        );
        let p = pool(TokenPolicy::PerConnections { connections: 3 });
        assert_eq!(
            (0..7).map(|v| p.slot_of(v)).collect::<Vec<_>>(),
            vec![0, 0, 0, 1, 1, 1, 2]
        );
        assert_eq!(pool(TokenPolicy::PerConnection).slot_of(5), 5);
    }

    /// Every split of every run size: no slot is fetched by two agents, N agents fetch
    /// what one process would (plus one each for agents owning none), and one agent is
    /// the policy as written.
    #[test]
    fn split_token_slots_are_fetched_once_across_agents() {
        use std::collections::{BTreeMap, BTreeSet};
        let policies = [
            TokenPolicy::Shared,
            TokenPolicy::Pool { size: 1 },
            TokenPolicy::Pool { size: 3 },
            TokenPolicy::Pool { size: 10 },
            TokenPolicy::PerConnections { connections: 1 },
            TokenPolicy::PerConnections { connections: 4 },
            TokenPolicy::PerConnections { connections: 7 },
        ];
        for policy in &policies {
            for peak in [1u32, 2, 5, 12, 40, 97] {
                let auth = Auth::new(TokenSource::Static { tokens: vec![] }, policy.clone());
                let total = auth.slots(peak).unwrap();
                let single: BTreeSet<u64> = (0..u64::from(peak))
                    .map(|vu| sharded_slot(policy, total, Share::ALL, vu).0)
                    .collect();
                for vu in 0..u64::from(peak) {
                    assert_eq!(
                        sharded_slot(policy, total, Share::ALL, vu).0,
                        plain_slot(policy, vu),
                        "{policy:?} peak {peak} vu {vu}"
                    );
                }
                for of in 1..=8u32 {
                    let mut owner: BTreeMap<u64, u32> = BTreeMap::new();
                    for index in 0..of {
                        let share = Share { index, of };
                        let mut uses: BTreeMap<u64, u64> = BTreeMap::new();
                        for k in 0..u64::from(share.target(peak)) {
                            let vu = share.slot(k);
                            let (slot, local) = sharded_slot(policy, total, share, vu);
                            assert!(local.is_some());
                            *uses.entry(slot).or_default() += 1;
                            let o = *owner.entry(slot).or_insert(index);
                            assert_eq!(o, index, "{policy:?} peak {peak}: slot {slot} fetched by agents {o} and {index} of {of}");
                        }
                        if let TokenPolicy::Pool { .. } = policy {
                            let (lo, hi) = (uses.values().min(), uses.values().max());
                            if let (Some(lo), Some(hi)) = (lo, hi) {
                                assert!(
                                    hi - lo <= 1,
                                    "{policy:?} peak {peak} agent {index}/{of}: {uses:?}"
                                );
                            }
                        }
                    }
                    let agents_with_connections = of.min(peak) as usize;
                    let bound = single.len().max(agents_with_connections);
                    assert!(
                        owner.len() <= bound,
                        "{policy:?} peak {peak} over {of}: {} tokens fetched, one process fetches {}",
                        owner.len(),
                        single.len()
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn static_tokens_round_robin_by_slot() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let mut rec = Recorder::new(tx, Duration::from_secs(1));
        let p = pool(TokenPolicy::Pool { size: 3 });
        assert_eq!(p.get(0, &mut rec).await.unwrap().token, "a");
        assert_eq!(p.get(1, &mut rec).await.unwrap().token, "b");
        let c = p.get(5, &mut rec).await.unwrap();
        assert_eq!((c.token.as_str(), c.refresh_at), ("c", None));
    }

    #[test]
    fn tokens_are_refreshed_ahead_of_expiry_but_not_before_a_tenth_of_their_life() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(refresh_at(t0, Some(60.0), s(30)), Some(t0 + s(30)));
        assert_eq!(refresh_at(t0, Some(60.0), s(0)), Some(t0 + s(60)));
        assert_eq!(
            refresh_at(t0, Some(1.0), Duration::from_millis(400)),
            Some(t0 + Duration::from_millis(600))
        );
        // refresh_before at or past the lifetime: after a tenth of it, not at once.
        assert_eq!(refresh_at(t0, Some(10.0), s(30)), Some(t0 + s(1)));
        assert_eq!(refresh_at(t0, Some(10.0), s(10)), Some(t0 + s(1)));
        for bad in [
            None,
            Some(0.0),
            Some(-5.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
        ] {
            assert_eq!(refresh_at(t0, bad, s(30)), None, "{bad:?}");
        }
        assert!(refresh_at(t0, Some(1e300), s(30)).is_some(), "no overflow");
    }
}
