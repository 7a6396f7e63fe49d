//! No ambient proxy: the proxy variables of the server's environment (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`, lower case too) never send a run's requests elsewhere.
//! Seen: with `HTTP_PROXY` set, the OAuth token request (client secret in its body) went
//! to a proxy outside the allowlist, which resolves names itself — past the pinning.
//! The real binary runs with those variables set (so the agent processes it starts
//! inherit them too); the "proxy" listens on 127.0.0.2, off the allowlist.

use serde_json::{json, Value};

use crate::security_support::{http_recorder, json, start_binary};

const SECRET: &str = "proxy-client-secret-CANARY-61d0";

async fn launch_and_finish(http: &reqwest::Client, base: &str, plan: &Value) -> Value {
    let r = http
        .post(format!("{base}/api/runs"))
        .header("content-type", "application/json")
        .body(plan.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let run: Value = http
            .get(format!("{base}/api/runs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["status"] != "running" && run["status"] != "queued" {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_never_carry_a_run_off_the_list() {
    let (proxy, proxy_hits) = http_recorder("127.0.0.2", |_: &str| {
        json(
            200,
            r#"{"access_token":"from-the-proxy","expires_in":3600,"id":"p"}"#,
        )
    })
    .await;
    let (helper, helper_hits) = http_recorder("127.0.0.1", |path: &str| {
        if path.starts_with("/token") {
            json(
                200,
                r#"{"access_token":"tok-from-helper","expires_in":3600}"#,
            )
        } else {
            json(200, r#"{"id":"s-1"}"#)
        }
    })
    .await;
    let proxy_url = format!("http://{proxy}");
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|k| (*k, proxy_url.as_str()))
    .collect();
    let p = start_binary(
        &dir.path().join("p.db"),
        &["--allow-target", "127.0.0.1"],
        &env,
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for agents in [None, Some(2)] {
        let mut plan = json!({
            "name": "proxied",
            "target": format!("ws://{}/echo", p.sandbox),
            "stages": [{"duration": "400ms", "connections": 2}],
            "connect_timeout": "2s",
            "auth": {"source": {"type": "oauth2", "token_url": format!("http://{helper}/token"),
                "client_id": "cid", "client_secret": SECRET}},
            "http_steps": [{"method": "POST", "url": format!("http://{helper}/session"),
                "capture": {"sid": "id"}}]
        });
        if let Some(n) = agents {
            plan["agents"] = json!(n);
        }
        let run = launch_and_finish(&http, &p.base, &plan).await;
        assert_eq!(run["status"], "completed", "agents {agents:?}: {run}");
        assert_eq!(
            proxy_hits.count(),
            0,
            "agents {agents:?}: went through the proxy: {:?}",
            proxy_hits.all()
        );
    }
    let hits = helper_hits.all();
    assert!(
        hits.iter().any(|h| h.path.starts_with("/token")),
        "{hits:?}"
    );
    assert!(
        hits.iter().any(|h| h.path.starts_with("/session")),
        "{hits:?}"
    );
}
