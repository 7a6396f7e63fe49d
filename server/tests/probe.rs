//! A probe a user can follow (issue 16): against a sandbox profile with a cap and a rate
//! limit, every snapshot says which experiment runs and what the finished ones showed,
//! counters never restart with an experiment, and the stored run (API, export, HTML
//! report) keeps the experiments and a latency table over the whole probe.
//! Run: `cargo test -p server --features app/ssr --test probe`.
#![allow(clippy::unwrap_used)]
mod common;

use common::spawn_app;
use serde_json::{json, Value};

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_reports_its_experiments_and_keeps_the_whole_probe() {
    let app = spawn_app().await;
    let p = json!({
        "name": "followed probe",
        "target": app.ws("/echo?cap=40&rate=20&burst=5&tag=follow"),
        "stages": [],
        "probe": {"max_connections": 80, "max_connect_rate": 40, "max_duration": "16s"}
    });
    let id = app.launch(p).await;
    let (snaps, done) = app.follow(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(snaps.len() >= 10, "{} snapshots", snaps.len());

    // Live: every tick names the experiment running; it moves forward through at least
    // the concurrency ramp and the rate steps, and finished readings only accumulate.
    let mut seen = Vec::new();
    let (mut attempted, mut peak, mut done_count) = (0, 0, 0);
    for s in &snaps {
        let probe = &s["probe"];
        let cur = &probe["current"];
        assert!(probe.is_object(), "a probe tick without progress: {s}");
        if cur.is_object() {
            let i = n(&cur["index"]);
            assert!(
                i >= seen.last().copied().unwrap_or(1),
                "went back to {i}: {s}"
            );
            assert!(i <= n(&probe["planned"]), "{probe}");
            assert!(!cur["what"].as_str().unwrap().is_empty());
            if seen.last() != Some(&i) {
                seen.push(i);
            }
        }
        let d = probe["done"].as_array().unwrap().len();
        assert!(d >= done_count, "readings went away: {probe}");
        done_count = d;
        // The tiles' counters: never back to small numbers with a new experiment.
        let a = n(&s["totals"]["attempted"]);
        assert!(a >= attempted, "attempted {attempted} -> {a}");
        assert!(n(&s["peak_open"]) >= peak, "peak went down: {s}");
        (attempted, peak) = (a, n(&s["peak_open"]));
    }
    assert!(seen.len() >= 3, "experiments seen live: {seen:?}");
    let live_rate_step = snaps.iter().any(|s| {
        s["probe"]["current"]["what"]
            .as_str()
            .is_some_and(|w| w.contains("connects/s for"))
    });
    assert!(live_rate_step, "no rate step named while live");

    // Stored: the experiments and their readings, the cap found by the ramp.
    let (_, run) = app.get(&format!("/api/runs/{id}")).await;
    let sum = &run["summary"];
    let probe = &sum["probe"];
    let results = probe["done"].as_array().unwrap();
    assert!(results.len() >= 3, "{probe}");
    assert!(probe["current"].is_null(), "{probe}");
    assert_eq!(n(&probe["planned"]), results.len() as u64);
    for (k, r) in results.iter().enumerate() {
        assert_eq!(n(&r["experiment"]["index"]), k as u64 + 1, "{r}");
        assert!(!r["verdict"].as_str().unwrap().is_empty(), "{r}");
    }
    let ramp = &results[0];
    assert_eq!(ramp["experiment"]["phase"], "concurrency");
    let cap = ramp["found"].as_f64().unwrap_or_else(|| panic!("{ramp}"));
    assert!((36.0..=44.0).contains(&cap), "{ramp}");
    assert!(
        results
            .iter()
            .any(|r| r["unit"] == "connects_per_second" && n(&r["failures"]) > 0),
        "a rate step over the limit was refused: {probe}"
    );

    // The data bug: the latency table covers every attempt of every experiment. Each
    // opened connection has a connect time and each refused one a refusal time.
    let t = &sum["totals"];
    let lat = &sum["latency"];
    assert_eq!(n(&lat["ws_connecting"]["count"]), n(&t["opened"]), "{sum}");
    let not_answered: u64 = t["failures"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("http_"))
        .map(|(_, v)| n(v))
        .sum();
    assert_eq!(
        n(&lat["ws_connecting"]["count"]) + n(&lat["ws_refused"]["count"]) + not_answered,
        n(&t["attempted"]),
        "latency samples vs attempts: {lat} {t}"
    );
    // More than the first experiment opened (the bug kept its table only).
    let first_opened = snaps
        .iter()
        .rfind(|s| s["probe"]["current"]["index"] == 1)
        .map(|s| n(&s["totals"]["opened"]))
        .unwrap();
    assert!(n(&t["opened"]) > first_opened, "{t}");
    // The export and the HTML report carry the same experiments; the stored ticks keep
    // each tick's progress as streamed live.
    let (_, export) = app.get(&format!("/api/runs/{id}/export.json")).await;
    let ticks = export["ticks"].as_array().unwrap();
    assert_eq!(ticks.len(), snaps.len());
    for (stored, live) in ticks.iter().zip(&snaps) {
        assert_eq!(stored["probe"], live["probe"]);
    }
    assert_eq!(export["summary"]["probe"], *probe);
    assert_eq!(export["summary"]["latency"], *lat);
    // The export follows the documented schema, and imports with its experiments; an
    // export written before `probe` existed still imports.
    common::assert_export_schema(&export);
    let (s, imported) = app.post("/api/runs/import", &export.to_string()).await;
    assert_eq!(s, 201, "{imported}");
    let (_, back) = app
        .get(&format!("/api/runs/{}", imported["id"].as_str().unwrap()))
        .await;
    assert_eq!(back["summary"]["probe"], *probe);
    let mut old = export.clone();
    old["summary"].as_object_mut().unwrap().remove("probe");
    for t in old["ticks"].as_array_mut().unwrap() {
        t.as_object_mut().unwrap().remove("probe");
    }
    let (s, imported) = app.post("/api/runs/import", &old.to_string()).await;
    assert_eq!(s, 201, "{imported}");

    let html = app
        .fetch(&format!("/api/runs/{id}/report.html"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Probe experiments"), "no probe section");
    assert_eq!(
        html.matches("data-probe-result=").count(),
        results.len(),
        "one row per experiment"
    );
    assert!(
        html.contains("found ≈ "),
        "the found level is drawn on a chart"
    );
}
