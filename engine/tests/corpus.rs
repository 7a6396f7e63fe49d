//! The diagnosis scored against labelled runs: real gateways (nginx, HAProxy) and the
//! sandbox, recorded by `server/tests/gateways.rs` and `server/tests/diagnosis.rs`
//! (`SOCKETSWARM_RECORD_FIXTURES=engine/tests/fixtures/diagnosis`) and by the CLI.
//! Each fixture is a run's summary and ticks with its true answer; the pure diagnosis
//! reads it again here.
//!
//! Fails when a verdict stated with confidence ≥ 0.8 is wrong, when a right verdict's
//! level (or the right alternative's, for a run that cannot tell) is off by more than
//! 5 %, or when `docs/diagnosis.md`'s table is not what this code gives (regenerate it
//! with `UPDATE_DIAGNOSIS_DOC=1 cargo test -p engine --test corpus`).
//! Run: `cargo test -p engine --test corpus -- --nocapture` prints the tables.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use engine::diagnose::{for_run, Diagnosis};
use engine::{Series, Snapshot, Summary};
use serde::Deserialize;

#[derive(Deserialize)]
struct Label {
    kind: String,
    level: Option<f64>,
    per: Option<String>,
    how: Option<String>,
}

#[derive(Deserialize)]
struct Fixture {
    name: String,
    source: String,
    label: Label,
    summary: Summary,
    ticks: Vec<Snapshot>,
}

/// "concurrency_cap per source_addr".
fn reading(kind: &str, per: Option<&str>) -> String {
    match per {
        Some(p) => format!("{kind} per {p}"),
        None => kind.to_string(),
    }
}

struct Scored {
    name: String,
    source: String,
    truth: String,
    said: String,
    confidence: f64,
    level: String,
    how: String,
    right: bool,
    /// Right answer among the alternatives of an uncertain verdict.
    named: bool,
    problem: Option<String>,
}

fn score(f: &Fixture) -> Scored {
    let series = Series::from_snapshots(&f.ticks);
    let d = for_run(&series, Some(&f.summary));
    // A probe's answer is its first verdict.
    let v: Diagnosis = d.verdicts.first().cloned().unwrap_or(d.clone());
    let truth = reading(&f.label.kind, f.label.per.as_deref());
    let said = reading(v.kind.key(), v.per.as_deref());
    let right = truth == said;
    let off = |l: Option<f64>| match (f.label.level, l) {
        (Some(t), Some(l)) => (l - t).abs() > 0.05 * t,
        (Some(_), None) => true,
        _ => false,
    };
    let alt = d
        .alternatives
        .iter()
        .find(|a| reading(a.kind.key(), a.per.as_deref()) == truth);
    let named = !right && alt.is_some();
    let how = v
        .enforcement
        .as_ref()
        .map(|e| e.how.key().to_string())
        .unwrap_or_default();
    let mut problem = None;
    if !right && v.confidence >= 0.8 {
        problem = Some(format!("wrong at {:.0} %", v.confidence * 100.0));
    } else if right && off(v.level) {
        problem = Some(format!("level {:?} vs {:?}", v.level, f.label.level));
    } else if named && off(alt.and_then(|a| a.level)) {
        problem = Some(format!(
            "alternative's level {:?} vs {:?}",
            alt.and_then(|a| a.level),
            f.label.level
        ));
    } else if right && v.confidence >= 0.8 && f.label.how.as_deref().is_some_and(|h| h != how) {
        problem = Some(format!("enforcement {how} vs {:?}", f.label.how));
    }
    Scored {
        name: f.name.clone(),
        source: f.source.clone(),
        truth,
        said,
        confidence: v.confidence,
        level: v.level_words().unwrap_or_default(),
        how,
        right,
        named,
        problem,
    }
}

fn load() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diagnosis");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            serde_json::from_slice(&std::fs::read(p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

/// The tables for docs/diagnosis.md.
fn tables(scored: &[Scored]) -> String {
    let mut out = String::new();
    let right = scored.iter().filter(|s| s.right).count();
    let named = scored.iter().filter(|s| s.named).count();
    let sure: Vec<&Scored> = scored.iter().filter(|s| s.confidence >= 0.8).collect();
    let sure_right = sure.iter().filter(|s| s.right).count();
    let brier: f64 = scored
        .iter()
        .map(|s| (s.confidence - if s.right { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / scored.len() as f64;
    out.push_str(&format!(
        "{} labelled runs: {right} verdicts right, {named} more name the truth among their alternatives (each below 60 %), {} wrong.\n\
         Verdicts at ≥ 80 %: {} of which {sure_right} right. Brier score of the stated confidence: {brier:.3} (0 is perfect).\n\n",
        scored.len(),
        scored.len() - right - named,
        sure.len(),
    ));
    // Confusion: truth (rows) against what was said (columns).
    let mut said: Vec<String> = scored.iter().map(|s| s.said.clone()).collect();
    said.sort();
    said.dedup();
    let mut rows: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for s in scored {
        *rows
            .entry(&s.truth)
            .or_default()
            .entry(&s.said)
            .or_default() += 1;
    }
    out.push_str("| truth \\ verdict |");
    for c in &said {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(said.len()));
    out.push('\n');
    for (truth, cols) in &rows {
        out.push_str(&format!("| {truth} |"));
        for c in &said {
            match cols.get(c.as_str()) {
                Some(n) => out.push_str(&format!(" {n} |")),
                None => out.push_str(" · |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\n| run | source | truth | verdict | confidence | level | enforcement |\n|---|---|---|---|---|---|---|\n");
    for s in scored {
        let mark = if s.right {
            "✓"
        } else if s.named {
            "~"
        } else {
            "✗"
        };
        out.push_str(&format!(
            "| {} | {} | {} | {mark} {} | {:.0} % | {} | {} |\n",
            s.name,
            s.source.replace('|', "\\|"),
            s.truth,
            s.said,
            s.confidence * 100.0,
            s.level,
            s.how
        ));
    }
    out
}

const START: &str = "<!-- corpus:start -->\n";
const END: &str = "<!-- corpus:end -->";

#[test]
fn the_diagnosis_is_right_where_it_is_sure_and_says_so_where_it_is_not() {
    let fixtures = load();
    assert!(
        fixtures.len() >= 20,
        "the corpus has {} runs",
        fixtures.len()
    );
    let scored: Vec<Scored> = fixtures.iter().map(score).collect();
    let table = tables(&scored);
    println!("{table}");
    let problems: Vec<String> = scored
        .iter()
        .filter_map(|s| {
            s.problem
                .as_ref()
                .map(|p| format!("{}: truth {}, said {}: {p}", s.name, s.truth, s.said))
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // Every real-gateway case is in the corpus.
    for name in [
        "gw-nginx-rate-20",
        "gw-haproxy-lockout-20-ramp",
        "gw-haproxy-stall-150",
        "gw-nginx-addr-50x3",
        "gw-haproxy-queue-150",
        "gw-nginx-open",
    ] {
        assert!(scored.iter().any(|s| s.name == name), "{name} is missing");
    }

    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/diagnosis.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        panic!("docs/diagnosis.md has no corpus markers");
    };
    let fresh = format!("{}{START}{table}{}", &text[..a], &text[b..]);
    if std::env::var("UPDATE_DIAGNOSIS_DOC").is_ok() {
        std::fs::write(&doc, &fresh).unwrap();
    } else {
        assert!(
            fresh == text,
            "docs/diagnosis.md's table is not what this code gives: run UPDATE_DIAGNOSIS_DOC=1 cargo test -p engine --test corpus"
        );
    }
}
