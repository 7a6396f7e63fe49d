//! The web surface under attack (holes 4, 5, 8b–8d and 8f–8j of the attack report,
//! `/work/scratch/attacks/RESULTS.md`): stored markup, DNS rebinding, token guessing,
//! weak tokens, open redirects, CSV and report injection, dot-segment paths and a sandbox
//! bound beyond loopback. Every test sends what the attacker sent and asserts it fails.

use serde_json::{json, Value};

use crate::common::{args, raw, spawn_app, spawn_with, App};

/// An export (`POST /api/runs/import`) of a finished 3-second run whose ticks carry
/// `names` as failure classes.
fn export_with_failures(names: &[&str]) -> String {
    let failures = |k: u64| -> Value {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), json!(k + i as u64)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let ticks: Vec<Value> = (1..=3u64)
        .map(|s| {
            json!({"seq": s, "elapsed_ms": s * 1000, "target": 10, "open": 5,
                   "totals": {"attempted": 10 * s, "failures": failures(s)},
                   "interval": {"attempted": 10, "failures": failures(1)}})
        })
        .collect();
    json!({
        "schema_version": 1,
        "status": "completed",
        "plan": {"name": "imported", "target": "ws://127.0.0.1:9/echo",
                 "stages": [{"duration": "3s", "connections": 10}]},
        "summary": {"duration_ms": 3000, "peak_open": 5,
                    "totals": {"attempted": 30, "failures": failures(3)}},
        "ticks": ticks,
    })
    .to_string()
}

/// Imports `names` as failure classes; returns the run id and a share id for it.
async fn import_with_failures(app: &App, names: &[&str]) -> (String, String) {
    let (status, run) = app
        .post("/api/runs/import", &export_with_failures(names))
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let (status, share) = app.post(&format!("/api/runs/{id}/share"), "").await;
    assert_eq!(status, 201, "{share}");
    (id, share["id"].as_str().unwrap().to_string())
}

/// `GET path`, which must answer 200; its body.
async fn text(app: &App, path: &str) -> String {
    let r = app.fetch(path).await;
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.unwrap()
}

// ---- 8f: CSV injection -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_stay_in_their_column_and_never_start_a_formula() {
    let app = spawn_app().await;
    let names = [
        "a,=HYPERLINK(\"http://127.0.0.1:1/?leak\"),b",
        "c,+1+2,d",
        "e,-1+2,f",
        "g,@SUM(1+1),h",
        "i\n=2+3\nj",
    ];
    // Outcome names come from the engine's closed set; an import cannot bring others
    // (and should one reach a CSV anyway, `Series::to_csv` quotes and defuses its cells:
    // engine/src/report.rs `csv_quotes_header_cells_so_names_stay_in_their_column`).
    let (status, body) = app
        .post("/api/runs/import", &export_with_failures(&names))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("summary.totals.failures"),
        "{body}"
    );
    let (_, runs) = app.get("/api/runs").await;
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(0),
        "nothing stored: {runs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_data_cannot_open_markup_inside_its_script() {
    let app = spawn_app().await;
    // Refused at the door (outcome names are a closed set); the report's data is
    // escaped anyway (app/src/components/chart.rs `script_json_cannot_open_or_close_markup`).
    let (status, body) = app
        .post(
            "/api/runs/import",
            &export_with_failures(&["<!--<script>", "x</script><b>&\u{2028}"]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("<!--<script>"),
        "names the key: {body}"
    );
}

/// Up to 80 characters either side of `needle` in `hay`, for failure messages.
fn around(hay: &str, needle: &str) -> String {
    let at = hay.find(needle).unwrap_or(0);
    let from = hay.floor_char_boundary(at.saturating_sub(80));
    let to = hay.ceil_char_boundary((at + needle.len() + 80).min(hay.len()));
    hay[from..to].to_string()
}

// ---- 4: stored HTML injection through <textarea> ------------------------------------

/// Markup that closes a `<textarea>` and adds a heading and a redirect, tagged `tag`.
fn markup(tag: &str) -> String {
    format!(
        "</textarea><h1 id={tag}>INJECTED-{tag}</h1><meta http-equiv=refresh content='0;url=http://127.0.0.1:1/'>"
    )
}

fn common_plan(app: &App) -> Value {
    crate::common::plan("p", &app.ws("/echo"), 1, "1s", "1s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_markup_in_a_note_or_a_plan_stays_text() {
    let app = spawn_app().await;
    let (id, _) = import_with_failures(&app, &["http_429"]).await;
    let note = json!({"tags": ["x"], "note": markup("RUNNOTE")}).to_string();
    let (status, body) = app
        .send("PUT", &format!("/api/runs/{id}/meta"), &note)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut plan = common_plan(&app);
    plan["name"] = markup("PLANNAME").into();
    plan["script"] = json!([{"send": markup("PLANBODY")}]);
    let (status, saved) = app.post("/api/plans", &plan.to_string()).await;
    assert_eq!(status, 201, "{saved}");
    let pid = saved["id"].as_str().unwrap();

    for (path, tag) in [
        (format!("/runs/{id}"), "RUNNOTE"),
        (format!("/plans/{pid}"), "PLANNAME"),
        (format!("/plans/{pid}"), "PLANBODY"),
    ] {
        let html = text(&app, &path).await;
        assert!(
            !html.contains(&format!("<h1 id={tag}>")),
            "{path}: the stored `{tag}` markup is live: …{}…",
            around(&html, &format!("<h1 id={tag}>"))
        );
        assert!(
            html.contains(&format!("&lt;/textarea&gt;&lt;h1 id={tag}&gt;")),
            "{path}: the `{tag}` text is shown, escaped"
        );
    }
    // Defence in depth: markup that gets through anyway cannot style the page.
    let r = app.fetch(&format!("/plans/{pid}")).await;
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("style-src 'self';"), "{csp}");
}

// ---- 8d: open redirect after login -------------------------------------------------------

/// A token that passes the startup rules (24+ characters, varied).
const TOKEN: &str = "Sw4rm-attack-tests-9QzK2xLv";

async fn app_with(f: impl FnOnce(&mut server::config::ServeArgs)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path().join("t.db"));
    f(&mut a);
    spawn_with(a, dir).await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sends_nobody_off_site() {
    let app = app_with(|a| a.access_token = Some(TOKEN.into())).await;
    let http = no_redirects();
    for next in [
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/ /evil.example/",
        "/\\evil.example/",
        "/\u{0}/evil.example/",
        "//evil.example/",
        "/runs\\..\\\\evil.example",
        "https://evil.example/",
    ] {
        let r = http
            .post(format!("{}/login", app.base))
            .form(&[("token", TOKEN), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], "/", "next = {next:?}");
        let page = text(&app, &format!("/login?next={}", app::api::encode(next))).await;
        assert!(
            page.contains(r#"name="next" value="/""#),
            "the login form keeps {next:?}"
        );
    }
    let r = http
        .post(format!("{}/login", app.base))
        .form(&[("token", TOKEN), ("next", "/runs?tag=a b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/", "a space is refused too");
    let r = http
        .post(format!("{}/login", app.base))
        .form(&[("token", TOKEN), ("next", "/runs?tag=a")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        "/runs?tag=a",
        "local paths are kept"
    );
}

// ---- 8c: weak access tokens --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_access_token_is_refused_at_startup() {
    for weak in [
        "aaaaaaaaaaaaaaaa",
        "0123456789abcdef0123",
        "abcabcabcabcabcabcabcabcabcabc",
        "0123456789012345678901234567",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path().join("t.db"));
        a.access_token = Some(weak.into());
        match server::start(a).await {
            Ok(running) => {
                running.stop().await;
                panic!("started with the weak token {weak:?}");
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("--access-token"), "{e}");
                assert!(e.contains("SOCKETSWARM_ACCESS_TOKEN"), "{e}");
                assert!(e.contains("openssl rand -hex 24"), "{e}");
                assert!(!e.contains(weak), "the error repeats the token: {e}");
            }
        }
    }
    let mut a = args("x.db".into());
    a.access_token = Some(TOKEN.into());
    assert!(a.validate().is_ok(), "a strong token passes");
}

// ---- 8j: the sandbox beyond loopback ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_stays_on_loopback_unless_allowed() {
    for (flag, set) in [
        (
            "--sandbox",
            (|a: &mut server::config::ServeArgs| a.sandbox = "0.0.0.0:0".into())
                as fn(&mut server::config::ServeArgs),
        ),
        ("--sandbox-tls", |a| a.sandbox_tls = "0.0.0.0:0".into()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path().join("t.db"));
        set(&mut a);
        match server::start(a).await {
            Ok(running) => {
                let at = (running.sandbox, running.sandbox_tls);
                running.stop().await;
                panic!("{flag} 0.0.0.0:0 started the sandbox on {at:?} without a word");
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(flag) && e.contains("--allow-remote"), "{e}");
            }
        }
        let mut a = args(dir.path().join("t.db"));
        set(&mut a);
        a.allow_remote = true;
        assert!(a.validate().is_ok(), "{flag}: --allow-remote accepts it");
    }
}

// ---- 8h: dot segments past the token guard -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segment_paths_are_refused_before_routing() {
    let app = app_with(|a| a.access_token = Some(TOKEN.into())).await;
    for path in [
        "/share/../runs",
        "/share/../runs/new",
        "/share/../plans",
        "/pkg/../runs",
        "/api/shares/../../runs",
        "/api/shares/../../api/runs",
        "/share/%2e%2e/runs",
        "/share/%2E./runs",
        "/share/.%2e/api/runs",
        "/share/./x",
        "/share/abc/./report.html",
        "/share//runs",
        "//runs",
        "/share/..",
    ] {
        let (status, answer) = raw(&app, "GET", path, &[], "").await;
        assert_eq!(status, 400, "GET {path}: {answer}");
        assert!(
            !answer.contains("<h1>"),
            "GET {path} renders a page: {answer}"
        );
    }
    // Public routes match exactly: a share id is one segment, downloads are named.
    let (status, _) = raw(&app, "GET", "/share/abc/runs", &[], "").await;
    assert_eq!(
        status, 303,
        "/share/abc/runs is not a share route: to the login"
    );
    let (status, _) = raw(&app, "GET", "/api/shares/abc/x", &[], "").await;
    assert_eq!(status, 401);
    let (status, _) = raw(&app, "GET", "/runs", &[], "").await;
    assert_eq!(status, 303);
}

// ---- 5: DNS rebinding of the UI -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_is_misdirected_on_every_route() {
    let app = spawn_app().await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let evil_host = format!("rebind.example:{port}");
    let evil_origin = format!("http://{evil_host}");
    let plan = common_plan(&app).to_string();
    let evil = [
        ("Host", evil_host.as_str()),
        ("Origin", evil_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("Content-Type", "application/json"),
    ];
    let (status, answer) = raw(&app, "POST", "/api/runs", &evil, &plan).await;
    assert_eq!(status, 421, "a rebound page launched a run: {answer}");
    assert!(answer.contains("--public-url"), "{answer}");
    for path in [
        "/api/runs",
        "/runs",
        "/api/health",
        "/api/runs/x/events",
        "/share/0123456789abcdef",
        "/pkg/socketswarm.css",
        "/login",
    ] {
        let (status, answer) = raw(&app, "GET", path, &evil[..1], "").await;
        assert_eq!(status, 421, "GET {path} with Host {evil_host}: {answer}");
    }
    let (_, list) = app.get("/api/runs").await;
    assert_eq!(list, json!([]), "nothing was launched");
    // The names this server is reachable as still work.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, answer) = raw(&app, "GET", "/api/health", &[("Host", &host)], "").await;
        assert_eq!(status, 200, "Host {host}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_url_is_one_more_name_and_is_checked_at_startup() {
    let app = app_with(|a| a.public_url = Some("http://Swarm.example:8080".into())).await;
    for (host, want) in [
        ("swarm.example:8080", 200),
        ("SWARM.EXAMPLE:8080", 200),
        ("swarm.example", 421),
        ("rebind.example:8080", 421),
    ] {
        let (status, answer) = raw(&app, "GET", "/api/health", &[("Host", host)], "").await;
        assert_eq!(status, want, "Host {host}: {answer}");
    }
    let mut a = args("x.db".into());
    a.public_url = Some("https://swarm.example/app".into());
    let e = a.validate().unwrap_err();
    assert!(e.contains("--public-url (SOCKETSWARM_PUBLIC_URL)"), "{e}");
}

// ---- 8b: token guessing ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_lock_the_address_out_for_a_while() {
    let app = app_with(|a| a.access_token = Some(TOKEN.into())).await;
    let http = no_redirects();
    let login = |token: String| {
        http.post(format!("{}/login", app.base))
            .form(&[("token", token.as_str()), ("next", "/runs")])
            .send()
    };
    let mut seen = Vec::new();
    let mut locked = None;
    for i in 0..20 {
        let r = login(format!("wrong-guess-{i:06}-xxxxxxxxxxxx"))
            .await
            .unwrap();
        seen.push(r.status().as_u16());
        if r.status() == 429 {
            locked = Some(r);
            break;
        }
    }
    let Some(r) = locked else {
        panic!("20 wrong tokens, never a 429: {seen:?}");
    };
    assert!(seen.len() <= 6, "locked only after {seen:?}");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After: {retry}");
    // Bearer guesses from the locked-out address wait too.
    let bearer = |token: &str| {
        http.get(format!("{}/api/runs", app.base))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let wrong = bearer("wrong-guess-bearer-xxxxxxxxxx").await.unwrap();
    assert_eq!(wrong.status(), 429, "a Bearer guess while locked out");
    assert!(wrong.headers().contains_key("retry-after"));
}

/// A guesser that shares the user's address (a proxy, a NAT, this machine) never locks
/// the right token out (seen: 1.3 wrong guesses/s made 3 of 6 right requests fail with
/// 429). Here seven guesses in a row, then the right token by Bearer, cookie and the
/// login form (inside the lockout the guesses caused), three times: each is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_on_the_same_address_never_locks_out_the_right_token() {
    let app = app_with(|a| a.access_token = Some(TOKEN.into())).await;
    let http = no_redirects();
    let mut right = Vec::new();
    let mut wrong = Vec::new();
    for round in 0..3u32 {
        // Enough guesses in a row to lock the address out (a right token in between
        // must not give the guesser its free tries back either).
        for i in 0..7u32 {
            let w = http
                .get(format!("{}/api/runs", app.base))
                .header(
                    "authorization",
                    format!("Bearer guess-{round}-{i:04}-xxxxxxxxxxxxxx"),
                )
                .send()
                .await
                .unwrap();
            wrong.push(w.status().as_u16());
        }
        let b = http
            .get(format!("{}/api/runs", app.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        let c = http
            .get(format!("{}/runs", app.base))
            .header("cookie", format!("socketswarm_token={TOKEN}"))
            .send()
            .await
            .unwrap();
        let l = http
            .post(format!("{}/login", app.base))
            .form(&[("token", TOKEN), ("next", "/runs")])
            .send()
            .await
            .unwrap();
        right.push((
            b.status().as_u16(),
            c.status().as_u16(),
            l.status().as_u16(),
        ));
    }
    assert!(
        wrong.contains(&429),
        "the guesser was never throttled: {wrong:?}"
    );
    assert!(
        right.iter().all(|r| *r == (200, 200, 303)),
        "the right token was refused while a guesser shared the address: {right:?} (guesses: {wrong:?})"
    );
}
