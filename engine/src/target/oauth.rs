//! The sandbox's mock credential endpoints: `POST /oauth/token` (OAuth2 client
//! credentials; mints bearer tokens for `auth=bearer` profiles) and `POST …/session`
//! (a pre-handshake HTTP step; mints the session ids `need_session=1` profiles check).
//! Tokens and session ids are kept in [`Sandbox`]'s issued map (`mint_token`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::http::{respond, Head};
use super::profile::Profile;
use super::Sandbox;
use crate::tls::MaybeTls;

/// `POST …/session`: a pre-handshake HTTP step target; creates a session for
/// `need_session=1`.
pub(super) async fn create_session(stream: &mut MaybeTls, sandbox: &Sandbox) {
    let id = sandbox
        .mint_token(Duration::from_secs(3600))
        .replacen("tok-", "sess-", 1);
    if let Ok(mut m) = sandbox.issued.lock() {
        m.insert(id.clone(), Instant::now() + Duration::from_secs(3600));
    }
    sandbox
        .profile("/session")
        .accepted
        .fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({"session_id": id, "ok": true}).to_string();
    respond(stream, 201, "Created", "", "application/json", &body).await
}

/// The one client secret `strict_client=1` accepts (the sandbox's registered client).
pub(super) const SANDBOX_CLIENT_SECRET: &str = "sandbox-client-secret";

/// The mock OAuth2 token endpoint: `POST /oauth/token?ttl=60s&rate=R&burst=B`. Any
/// client id and secret are accepted (with `strict_client=1`, only the secret
/// `SANDBOX_CLIENT_SECRET`, read from the form `body`); tokens expire after `ttl`
/// (default 60 s).
pub(super) async fn oauth_token(
    stream: &mut MaybeTls,
    sandbox: &Sandbox,
    head: &Head,
    body: &[u8],
) -> () {
    if head.method != "POST" {
        return respond(
            stream,
            405,
            "Method Not Allowed",
            "Allow: POST\r\n",
            "application/json",
            r#"{"error":"use POST"}"#,
        )
        .await;
    }
    let (profile, key) = match Profile::parse(&head.path, &head.query) {
        Ok(p) => p,
        Err(msg) => {
            return respond(
                stream,
                400,
                "Bad Request",
                "",
                "application/json",
                &serde_json::json!({"error": msg}).to_string(),
            )
            .await
        }
    };
    let stats = sandbox.profile(&key);
    let secret_ok = || {
        url::form_urlencoded::parse(body)
            .any(|(k, v)| k == "client_secret" && v == SANDBOX_CLIENT_SECRET)
    };
    if profile.strict_client && !secret_ok() {
        stats.reject(401);
        return respond(
            stream,
            401,
            "Unauthorized",
            "",
            "application/json",
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        )
        .await;
    }
    if let Some(rate) = profile.rate {
        let verdict = stats.take_rate(rate, profile.burst);
        if verdict.is_err() {
            stats.reject(429);
            return respond(
                stream,
                429,
                "Too Many Requests",
                "Retry-After: 1\r\n",
                "application/json",
                r#"{"error":"slow_down"}"#,
            )
            .await;
        }
    }
    let ttl = profile.ttl.unwrap_or(Duration::from_secs(60));
    let token = sandbox.mint_token(ttl);
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs_f64()}).to_string();
    respond(
        stream,
        200,
        "OK",
        "Cache-Control: no-store\r\n",
        "application/json",
        &body,
    )
    .await
}
