//! Budgets against a hostile target, a hostile import and slow clients: what one party
//! can make the server hold (memory, outcome keys, stored bytes, connections, download
//! slots) stays bounded, the owner is never locked out, and escape bytes a target sends
//! never come back out raw. Each attack was written first and seen to succeed against
//! the code before the budgets (numbers in `docs/security.md`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, bearer_client, spawn_tuned, App};
use crate::hostile::{self, mib, Server};

/// The memory a hostile target may add to the server, as `docs/security.md` states it:
/// twice the in-flight budget (64 MiB by default; allocator slack included) plus 64 MiB
/// for everything else a run holds.
const HOSTILE_BOUND: u64 = (2 * 64 + 64) << 20;

async fn poll_finished(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run: Value = http
            .get(format!("{base}/api/runs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = run["status"].as_str().unwrap_or_default().to_string();
        if !matches!(status.as_str(), "queued" | "running") {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} still {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn launch(http: &reqwest::Client, base: &str, plan: Value) -> String {
    let r = http
        .post(format!("{base}/api/runs"))
        .json(&plan)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn key_count(totals: &Value) -> usize {
    ["failures", "closes"]
        .iter()
        .map(|k| totals[k].as_object().map_or(0, |m| m.len()))
        .sum()
}

// ---- 1: a hostile target's answers and messages --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_target_cannot_grow_the_server_past_its_memory_bound() {
    let server = Server::start(&["--max-concurrent-runs", "3"]);
    let http = reqwest::Client::new();
    // 100 MB answers to HTTP steps (announced) and token requests (chunked: no length
    // to refuse up front); 15 MiB messages.
    let answers = hostile::huge_json(100_000_000).await;
    let messages = hostile::huge_messages(15 << 20).await;
    let echo = format!("ws://{}/echo", server.sandbox);
    let stages =
        json!([{"duration": "200ms", "connections": 4}, {"duration": "3s", "connections": 4}]);
    let steps = json!({"name": "huge step answers", "target": echo, "stages": stages,
        "connect_timeout": "30s",
        "http_steps": [{"method": "GET", "url": format!("http://{answers}/session")}]});
    let tokens = json!({"name": "huge token answers", "target": echo, "stages": stages,
        "connect_timeout": "30s",
        "auth": {"source": {"type": "oauth2", "token_url": format!("http://{answers}/token/chunked"),
                 "client_id": "c", "client_secret": "s"},
                 "policy": {"mode": "per_connection"}}});
    let msgs = json!({"name": "huge messages", "target": format!("ws://{messages}/big"),
        "stages": [{"duration": "200ms", "connections": 12}, {"duration": "4s", "connections": 12}]});
    let before = server.mem("VmHWM");
    let ids = [
        launch(&http, &server.base, steps).await,
        launch(&http, &server.base, tokens).await,
        launch(&http, &server.base, msgs).await,
    ];
    let mut runs = Vec::new();
    for id in &ids {
        runs.push(poll_finished(&http, &server.base, id).await);
    }
    let grown = server.mem("VmHWM").saturating_sub(before);
    eprintln!(
        "peak RSS grew by {:.1} MiB (bound {:.1} MiB); failures {} / {}; closes {}, {} messages",
        mib(grown),
        mib(HOSTILE_BOUND),
        runs[0]["summary"]["totals"]["failures"],
        runs[1]["summary"]["totals"]["failures"],
        runs[2]["summary"]["totals"]["closes"],
        runs[2]["summary"]["totals"]["msgs_received"],
    );
    assert!(
        grown <= HOSTILE_BOUND,
        "a hostile target grew the server's peak RSS by {:.1} MiB, over the stated {:.1} MiB",
        mib(grown),
        mib(HOSTILE_BOUND)
    );
    // Each is a measured, classified outcome.
    let totals = |i: usize| runs[i]["summary"]["totals"].clone();
    assert_eq!(totals(0)["failures"]["step_too_large"], 4, "{}", totals(0));
    assert_eq!(totals(1)["failures"]["token_too_large"], 4, "{}", totals(1));
    let t = totals(2);
    let cut = t["closes"]["session_memory_budget"].as_u64().unwrap_or(0);
    assert!(cut >= 1, "some sessions were cut at the budget: {t}");
    assert_eq!(
        cut + t["msgs_received"].as_u64().unwrap(),
        12,
        "every connection got its message or was cut: {t}"
    );
    // The server still answers.
    let health = http.get(server.url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

// ---- 2: outcome cardinality ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_inventing_close_codes_keeps_the_run_bounded() {
    let server = Server::start(&[]);
    let http = reqwest::Client::new();
    let closer = hostile::inventive_closer(2000).await;
    let id = launch(
        &http,
        &server.base,
        json!({
            "name": "inventive closer",
            "target": format!("ws://{closer}/c"),
            "stages": [{"duration": "200ms", "connections": 40}, {"duration": "5s", "connections": 40}],
            "reconnect": {"mode": "backoff", "max_attempts": "unlimited", "initial": "1ms", "max": "5ms"}
        }),
    )
    .await;
    let run = poll_finished(&http, &server.base, &id).await;
    let totals = &run["summary"]["totals"];
    let keys = key_count(totals);
    let series = run["series"]["drop_rate"]
        .as_object()
        .map_or(0, |m| m.len());
    // `/metrics` for the run (it is listed for ten minutes after it ends).
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = metrics
        .lines()
        .filter(|l| l.contains(&format!("run=\"{id}\"")))
        .count();
    // What each tick cost in the database.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.db().display()))
        .await
        .unwrap();
    let (largest, stored, ticks): (i64, i64, i64) = sqlx::query_as(
        "select max(length(snapshot_json)), sum(length(snapshot_json)), count(*) from run_interval where run_id = ?",
    )
    .bind(&id)
    .fetch_one(&db)
    .await
    .unwrap();
    eprintln!(
        "{} closes, {keys} outcome keys, {series} drop series, {lines} /metrics series; \
         {ticks} ticks stored in {stored} bytes, the largest {largest}",
        totals["closed"]
    );
    assert!(
        totals["closed"].as_u64().unwrap() >= 2000,
        "the target closed enough connections to try 2,000 codes: {}",
        totals["closed"]
    );
    assert!(keys <= 40, "{keys} outcome keys kept for one run");
    assert!(series <= 40, "{series} drop series");
    assert!(lines <= 400, "/metrics has {lines} series for one run");
    assert!(largest <= 4096, "a stored tick of {largest} bytes");
}

/// An export of `ticks` ticks whose outcome keys are 6,700 distinct ones (every status
/// of every stage, every close code), one per tick, all of them in the summary.
fn many_keys_export(ticks: u64) -> String {
    let mut fails = Vec::new();
    for prefix in ["http_", "token_http_", "step_http_"] {
        fails.extend((100..=999).map(|c| format!("{prefix}{c}")));
    }
    let closes: Vec<String> = (1000..=4999).map(|c| format!("server_{c}")).collect();
    let all: Vec<(bool, &String)> = fails
        .iter()
        .map(|k| (true, k))
        .chain(closes.iter().map(|k| (false, k)))
        .collect();
    let mut out = String::from(
        r#"{"schema_version":1,"status":"completed","plan":{"name":"many keys","target":"ws://127.0.0.1:9/x","stages":[{"duration":"1s","connections":1}]},"#,
    );
    let (f_sum, c_sum) = (fails.len(), closes.len());
    let summary = json!({
        "duration_ms": ticks * 1000, "peak_open": 1,
        "totals": {"attempted": f_sum + c_sum, "opened": c_sum, "failed": f_sum, "closed": c_sum,
            "dropped": c_sum,
            "failures": fails.iter().map(|k| (k.clone(), json!(1))).collect::<serde_json::Map<_, _>>(),
            "closes": closes.iter().map(|k| (k.clone(), json!(1))).collect::<serde_json::Map<_, _>>()}
    });
    out.push_str(&format!(r#""summary":{summary},"ticks":["#));
    for s in 1..=ticks {
        let (fail, key) = all[(s as usize - 1) % all.len()];
        let field = if fail { "failures" } else { "closes" };
        if s > 1 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"seq":{s},"elapsed_ms":{},"interval":{{"{field}":{{"{key}":1}}}}}}"#,
            s * 1000
        ));
    }
    out.push_str("]}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_import_with_thousands_of_keys_is_served_within_budget() {
    let server = Server::start(&[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let export = many_keys_export(5000);
    eprintln!("import of {} KB", export.len() / 1000);
    let r = http
        .post(server.url("/api/runs/import"))
        .header("content-type", "application/json")
        .body(export)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let share: Value = http
        .post(server.url(&format!("/api/runs/{id}/share")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = share["id"].as_str().unwrap().to_string();
    let before = server.mem("VmHWM");
    let view = http
        .get(server.url(&format!("/api/shares/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), 200);
    let body = view.bytes().await.unwrap();
    eprintln!("one share view: {} KB", body.len() / 1000);
    let view: Value = serde_json::from_slice(&body).unwrap();
    let keys = key_count(&view["Run"]["summary"]["totals"]);
    // Six views at once, pages and API: served or turned away, within the bound.
    let mut views = Vec::new();
    for i in 0..6 {
        let (http, url) = (
            http.clone(),
            server.url(&if i % 2 == 0 {
                format!("/share/{sid}")
            } else {
                format!("/api/shares/{sid}")
            }),
        );
        views.push(tokio::spawn(async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let len = r.bytes().await.unwrap().len();
            (status, len)
        }));
    }
    let mut answers = Vec::new();
    for v in views {
        answers.push(v.await.unwrap());
    }
    let grown = server.mem("VmHWM").saturating_sub(before);
    eprintln!(
        "peak RSS grew by {:.1} MiB over seven views; six at once answered {answers:?}",
        mib(grown)
    );
    assert!(
        body.len() <= 4 << 20,
        "an unauthenticated share view of {} KB",
        body.len() / 1000
    );
    assert!(keys <= 80, "{keys} outcome keys kept from the import");
    for (status, len) in answers {
        assert!(matches!(status, 200 | 429 | 503), "{status}");
        assert!(len <= 8 << 20, "a view of {} KB", len / 1000);
    }
    assert!(
        grown <= 128 << 20,
        "share views grew the peak RSS by {:.1} MiB",
        mib(grown)
    );
}

/// Exports of a long run are made as they are sent: three at once (two by the owner,
/// one through a share link) of a 40,000-tick run hold a page of it each, not the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_of_a_long_run_hold_a_page_not_the_run() {
    let server = Server::start(&[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let ticks: Vec<String> = (1..=40_000u64)
        .map(|s| {
            format!(
                r#"{{"seq":{s},"elapsed_ms":{},"open":{s},"interval":{{"attempted":1,"opened":1}}}}"#,
                s * 250
            )
        })
        .collect();
    let export = format!(
        r#"{{"schema_version":1,"status":"completed","plan":{{"name":"long","target":"ws://127.0.0.1:9/x","stages":[{{"duration":"10000s","connections":1}}]}},"summary":{{"duration_ms":10000000,"peak_open":40000}},"ticks":[{}]}}"#,
        ticks.join(",")
    );
    let r = http
        .post(server.url("/api/runs/import"))
        .header("content-type", "application/json")
        .body(export)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let share: Value = http
        .post(server.url(&format!("/api/runs/{id}/share")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = share["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.reset_peak();
    let before = server.mem("VmRSS");
    let urls = [
        format!("/api/runs/{id}/export.json"),
        format!("/api/runs/{id}/export.json"),
        format!("/share/{sid}/export.json"),
    ];
    let mut downloads = Vec::new();
    for u in urls {
        let (http, url) = (http.clone(), server.url(&u));
        downloads.push(tokio::spawn(async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }));
    }
    let mut sizes = Vec::new();
    for d in downloads {
        let doc = d.await.unwrap();
        let v: Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["ticks"].as_array().unwrap().len(), 40_000);
        assert_eq!(v["ticks"][39_999]["open"], 40_000);
        sizes.push(doc.len());
    }
    let grown = server.mem("VmHWM").saturating_sub(before);
    eprintln!(
        "three exports of {:?} MB at once: peak RSS +{:.1} MiB",
        sizes.iter().map(|s| s / 1_000_000).collect::<Vec<_>>(),
        mib(grown)
    );
    assert!(
        grown <= 64 << 20,
        "three exports grew the peak RSS by {:.1} MiB",
        mib(grown)
    );
}

// ---- 3: slow clients -------------------------------------------------------------------

const TOKEN: &str = "budgets-owner-token-5f0c2e9a71";

/// A connection dripping a `POST /login` body one byte a second. Returns what the
/// server sent back and how long the connection stayed open.
async fn drip_login(addr: String) -> (String, Duration) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nt"
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return (String::new(), started.elapsed());
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if s.write_all(b"a").await.is_err() {
                    // Closed on us: read what was answered before.
                    let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut got)).await;
                    break;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_before_login_never_lock_the_owner_out() {
    let app = spawn_tuned(|a| {
        a.access_token = Some(TOKEN.into());
        a.max_http_connections = 32;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let drippers: Vec<_> = (0..32)
        .map(|_| tokio::spawn(drip_login(addr.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The owner, on a new connection, while every slot is taken by a dripping body.
    let owner = bearer_client(TOKEN);
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        owner.get(format!("{}/api/runs", app.base)).send(),
    )
    .await
    .expect("the owner is answered")
    .unwrap_or_else(|e| panic!("the owner was locked out: {e:?}"));
    assert_eq!(r.status(), 200, "the owner was locked out");
    for d in drippers {
        let (answer, open) = d.await.unwrap();
        assert!(
            open <= Duration::from_secs(20),
            "a dripping body held its connection for {open:?}"
        );
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 408")
                || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
    }
}

/// Anonymous clients of every slow kind at once — silent sockets, half-sent heads,
/// dripping bodies — fill the cap, and more keep arriving: the owner is answered every
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mix_of_anonymous_slow_clients_locks_the_owner_out() {
    let app = spawn_tuned(|a| {
        a.access_token = Some(TOKEN.into());
        a.max_http_connections = 24;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for i in 0..24 {
        let bytes = match i % 3 {
            0 => String::new(),
            1 => format!("GET /share/x HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {i}\r\n"),
            _ => format!(
                "POST /api/share_view HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 500\r\n\r\nshare_id="
            ),
        };
        held.push(common::raw_connection(&app, bytes.as_bytes()).await);
    }
    // Newcomers that say nothing keep arriving meanwhile.
    let churn_addr = addr.clone();
    let churn = tokio::spawn(async move {
        let mut silent = Vec::new();
        loop {
            if let Ok(s) = tokio::net::TcpStream::connect(&churn_addr).await {
                silent.push(s);
            }
            if silent.len() > 200 {
                silent.remove(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let owner = bearer_client(TOKEN);
    for _ in 0..5 {
        // A fresh connection each time (no pooled one to fall back on).
        let owner_fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .default_headers(
                [(
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {TOKEN}").parse().unwrap(),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            owner_fresh.get(format!("{}/api/runs", app.base)).send(),
        )
        .await
        .expect("the owner is answered")
        .unwrap_or_else(|e| panic!("the owner was locked out: {e:?}"));
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = owner
        .get(format!("{}/api/runs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    churn.abort();
    drop(held);
}

/// Without an access token every route is open, so every body is paced: an import
/// dripped at 1 KiB/s is cut once it falls behind 16 KiB/s after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_to_a_server_without_a_token_is_cut() {
    let app = spawn_tuned(|a| a.header_timeout_ms = 2000).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/runs/import HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if s.write_all(&[b' '; 1024]).await.is_err() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut got)).await;
                    break;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a 1 KiB/s upload still read after 30 s"
        );
    }
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// A 20,000-tick run, imported and shared: its export is tens of MB, more than socket
/// buffers hold.
async fn long_shared_run(app: &App, owner: &reqwest::Client) -> (String, String) {
    let ticks: Vec<String> = (1..=20_000u64)
        .map(|s| format!(r#"{{"seq":{s},"elapsed_ms":{},"open":1}}"#, s * 250))
        .collect();
    let export = format!(
        r#"{{"schema_version":1,"status":"completed","plan":{{"name":"long","target":"ws://127.0.0.1:9/x","stages":[{{"duration":"5000s","connections":1}}]}},"summary":{{"duration_ms":5000000,"peak_open":1}},"ticks":[{}]}}"#,
        ticks.join(",")
    );
    let r = owner
        .post(format!("{}/api/runs/import", app.base))
        .header("content-type", "application/json")
        .body(export)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let share: Value = owner
        .post(format!("{}/api/runs/{id}/share", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (id, share["id"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_downloads_that_never_read_do_not_hold_the_export_slots() {
    let app = spawn_tuned(|a| {
        a.access_token = Some(TOKEN.into());
        a.max_concurrent_exports = 2;
    })
    .await;
    let owner = bearer_client(TOKEN);
    let (id, sid) = long_shared_run(&app, &owner).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Two anonymous downloads whose clients never read.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            format!("GET /share/{sid}/export.json HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    let stalled_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The owner's own export is not kept waiting by them.
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(8),
        owner
            .get(format!("{}/api/runs/{id}/export.json", app.base))
            .send(),
    )
    .await
    .expect("the owner's export starts within 8 s")
    .unwrap();
    assert_eq!(r.status(), 200, "the owner's export was refused");
    let doc = r.bytes().await.unwrap();
    eprintln!(
        "owner's export: {} MB in {:?}",
        doc.len() / 1_000_000,
        t0.elapsed()
    );
    // And the stalled ones give their slots back: another reader gets the share's
    // export once their send timeout has passed.
    let anonymous = reqwest::Client::new();
    let served = loop {
        let r = anonymous
            .get(format!("{}/share/{sid}/export.json", app.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let _ = r.bytes().await;
            break stalled_at.elapsed();
        }
        assert_eq!(r.status(), 503);
        assert!(
            stalled_at.elapsed() < Duration::from_secs(45),
            "clients that never read still hold the share's export slots"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("a new share download was served {served:?} after the stall began");
    drop(stalled);
}

// ---- 4: escape bytes ---------------------------------------------------------------------

/// Characters that must never leave raw: C0 controls (tab and line feed included:
/// evidence is one line), DEL, C1 controls, bidi overrides and isolates.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn strings_with_controls(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.chars().any(is_control) => out.push(format!("{path}: {s:?}")),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                strings_with_controls(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if k.chars().any(is_control) {
                    out.push(format!("{path}: key {k:?}"));
                }
                strings_with_controls(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_bytes_from_a_target_never_come_back_out_raw() {
    let app = common::spawn_app().await;
    let target = hostile::escaping_target().await;
    let plan = json!({
        "name": "escapes",
        "target": format!("ws://{target}/e"),
        "stages": [{"duration": "300ms", "connections": 6}, {"duration": "1s", "connections": 6}]
    });
    let id = app.launch(plan.clone()).await;
    app.follow(&id).await;
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let said = run["summary"]["evidence"].to_string();
    assert!(
        said.contains("RED") && said.contains("BOLD"),
        "the target's words are kept: {said}"
    );
    let mut found = Vec::new();
    strings_with_controls(&run, "run", &mut found);
    assert!(found.is_empty(), "{found:#?}");
    for path in [
        format!("/runs/{id}"),
        format!("/api/runs/{id}/report.html"),
        format!("/api/runs/{id}/series.csv"),
    ] {
        let text = app.fetch(&path).await.text().await.unwrap();
        let raw: Vec<char> = text
            .chars()
            .filter(|c| is_control(*c) && !matches!(c, '\n' | '\r' | '\t'))
            .collect();
        assert!(raw.is_empty(), "{path} emits {raw:?}");
        assert!(!text.contains("\x1b"), "{path}");
    }
    // Evidence an import brings goes through the same edge.
    let export = json!({
        "schema_version": 1, "status": "completed",
        "plan": {"name": "imported escapes", "target": "ws://127.0.0.1:9/x",
                 "stages": [{"duration": "1s", "connections": 1}]},
        "summary": {"duration_ms": 1000, "totals": {"attempted": 1, "failed": 1, "failures": {"http_429": 1}},
            "evidence": {"bodies": {"429": [hostile::ESCAPES]}, "retry_after": {"1\u{1b}[2J": 1},
                "rate_limit_headers": {"x-ratelimit-\u{7}": "\u{1b}]0;t\u{7}"},
                "close_reasons": {"4000": {(hostile::CLOSE_ESCAPES): 1}}}}
    });
    let (status, imported) = app.post("/api/runs/import", &export.to_string()).await;
    assert_eq!(status, 201, "{imported}");
    let (_, run) = app
        .get(&format!("/api/runs/{}", imported["id"].as_str().unwrap()))
        .await;
    let mut found = Vec::new();
    strings_with_controls(&run, "imported", &mut found);
    assert!(found.is_empty(), "{found:#?}");
    assert!(run["summary"]["evidence"].to_string().contains("RED"));
    // The CLI prints what the target said to a terminal.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("escapes.json");
    std::fs::write(&file, plan.to_string()).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_socketswarm"))
        .arg("run")
        .arg(&file)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: Vec<char> = printed
        .chars()
        .filter(|c| is_control(*c) && !matches!(c, '\n'))
        .collect();
    assert!(raw.is_empty(), "the CLI printed {raw:?}:\n{printed}");
}
