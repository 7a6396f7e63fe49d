//! The versioned JSON export of a run, written and read here only: `socketswarm run
//! --out json=` writes it (and `--server` uploads it), `GET /api/runs/{id}/export.json`
//! serves it, `POST /api/runs/import` reads it back — all through [`ExportDoc`]. Its
//! JSON Schema is `docs/export.schema.json` (`socketswarm plan export-schema`; a test
//! keeps the committed file current).
//!
//! Invariants: what is written reads back as it was (round-trip test below). The derived
//! parts (diagnosis, thresholds, series) are written for the file's readers and skipped
//! when read: the server recomputes them from the summary and the ticks, so an import
//! never holds a second copy of a long run's series, and a file cannot make a run say
//! something its numbers do not. The server writes a stored run's export as it sends
//! it ([`streamed`]): the document up to its ticks (`ExportDoc::head`, the ticks are its
//! last field), then the stored ticks a page at a time, the same bytes as one
//! `serde_json::to_vec` (tested below).

use axum::body::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::SqlitePool;

use app::api::RunStatus;
use engine::thresholds::ThresholdResult;
use engine::{Plan, Series, Snapshot, Summary};

/// Version of the layout below; a reader refuses any other.
pub const SCHEMA_VERSION: u32 = 1;

/// The versioned JSON export (`schema_version` 1): the document `--out json=` writes,
/// `GET /api/runs/{id}/export.json` serves and `POST /api/runs/import` reads. Its schema
/// is `docs/export.schema.json`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = as_written)]
pub struct ExportDoc {
    /// Always 1 for this layout.
    pub schema_version: u32,
    /// `socketswarm <version>`.
    #[serde(default)]
    pub generated_by: String,
    /// The plan that ran, typed-in secrets redacted.
    pub plan: Plan,
    /// `completed` or `cancelled`.
    pub status: String,
    pub summary: Summary,
    #[serde(default, deserialize_with = "derived")]
    pub diagnosis: engine::diagnose::Diagnosis,
    #[serde(default, deserialize_with = "derived")]
    pub thresholds: Vec<ThresholdResult>,
    /// Per-second columns, ready for charts.
    #[serde(default, deserialize_with = "derived")]
    pub series: Series,
    /// Every tick, as streamed live.
    #[serde(default)]
    pub ticks: Vec<Snapshot>,
}

/// Every field of [`ExportDoc`], in order: all are always written.
const FIELDS: [&str; 9] = [
    "schema_version",
    "generated_by",
    "plan",
    "status",
    "summary",
    "diagnosis",
    "thresholds",
    "series",
    "ticks",
];

/// The schema of the document as written: every field is there, so every field is
/// required and none has a default (a reader also takes the oldest uploads, which
/// carry fewer: the `serde(default)`s above).
fn as_written(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(props) = object.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for p in props.values_mut().filter_map(|p| p.as_object_mut()) {
            p.remove("default");
        }
    }
    object.insert("required".into(), serde_json::json!(FIELDS));
}

/// A derived part: skipped over without being built (see the module docs).
fn derived<'de, D: Deserializer<'de>, T: Default>(d: D) -> Result<T, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(T::default())
}

impl ExportDoc {
    /// The export of a finished run, taking what it holds (no copies: a long run's
    /// ticks are tens of MB). The plan's typed-in secrets are redacted here.
    pub fn new(
        plan: &Plan,
        status: RunStatus,
        summary: Summary,
        diagnosis: engine::diagnose::Diagnosis,
        thresholds: Vec<ThresholdResult>,
        series: Series,
        ticks: Vec<Snapshot>,
    ) -> ExportDoc {
        ExportDoc {
            schema_version: SCHEMA_VERSION,
            generated_by: format!("socketswarm {}", env!("CARGO_PKG_VERSION")),
            plan: plan.redacted(),
            status: status.as_str().to_string(),
            summary,
            diagnosis,
            thresholds,
            series,
            ticks,
        }
    }

    /// The status it was exported with (`None` for a word no version writes).
    pub fn run_status(&self) -> Option<RunStatus> {
        RunStatus::parse(&self.status)
    }

    /// The document (which must have no ticks yet) up to its ticks: `…,"ticks":[`.
    pub fn head(&self) -> serde_json::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self)?;
        if !self.ticks.is_empty() || !bytes.ends_with(b"[]}") {
            return Err(serde::ser::Error::custom(
                "the export's head is its document without ticks, which come last",
            ));
        }
        bytes.truncate(bytes.len() - 2);
        Ok(bytes)
    }
}

/// Appends `ticks` to an export being written, each after a comma but the first of all.
fn write_ticks(out: &mut Vec<u8>, ticks: &[Snapshot], first: &mut bool) -> serde_json::Result<()> {
    for t in ticks {
        if !std::mem::take(first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, t)?;
    }
    Ok(())
}

/// Stored ticks written per chunk of a streamed export.
const EXPORT_PAGE: i64 = 500;

/// Where a streamed export is.
enum Part {
    Head(Vec<u8>),
    Ticks {
        replay: Box<engine::report::TickReplay>,
        after: i64,
        first: bool,
    },
    Tail,
    Done,
}

/// The export of stored run `run_id`, as it is sent: `head` (`ExportDoc::head`), its
/// stored ticks replayed as they were live, `EXPORT_PAGE` at a time off the async
/// workers, then the end of the document. A database error ends the body early (the
/// client sees a cut-off document, never a wrong one).
pub fn streamed(
    head: Vec<u8>,
    pool: SqlitePool,
    run_id: String,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Part::Head(head), move |part| {
        let (pool, run_id) = (pool.clone(), run_id.clone());
        async move {
            match part {
                Part::Head(head) => Some((
                    Ok(Bytes::from(head)),
                    Part::Ticks {
                        replay: Box::new(engine::report::TickReplay::new()),
                        after: 0,
                        first: true,
                    },
                )),
                Part::Ticks {
                    mut replay,
                    after,
                    mut first,
                } => {
                    let page = match crate::store::intervals_page(
                        &pool,
                        &run_id,
                        after,
                        i64::MAX,
                        EXPORT_PAGE,
                    )
                    .await
                    {
                        Ok(page) => page,
                        Err(e) => return Some((Err(std::io::Error::other(e)), Part::Done)),
                    };
                    let Some(&(last, _, _)) = page.last() else {
                        return Some((Ok(Bytes::from_static(b"]}")), Part::Done));
                    };
                    let full = page.len() as i64 == EXPORT_PAGE;
                    let written = tokio::task::spawn_blocking(move || {
                        let ticks: Vec<Snapshot> = page
                            .iter()
                            .filter_map(|(_, format, json)| replay.row(*format, json))
                            .collect();
                        let mut out = Vec::new();
                        let done = write_ticks(&mut out, &ticks, &mut first);
                        done.map(|()| (replay, out, first))
                    })
                    .await;
                    match written {
                        Ok(Ok((replay, out, first))) => {
                            let next = if full {
                                Part::Ticks {
                                    replay,
                                    after: last,
                                    first,
                                }
                            } else {
                                Part::Tail
                            };
                            Some((Ok(Bytes::from(out)), next))
                        }
                        Ok(Err(e)) => Some((Err(std::io::Error::other(e)), Part::Done)),
                        Err(e) => Some((Err(std::io::Error::other(e)), Part::Done)),
                    }
                }
                Part::Tail => Some((Ok(Bytes::from_static(b"]}")), Part::Done)),
                Part::Done => None,
            }
        }
    })
}

/// The export's JSON Schema, pretty-printed (`plan export-schema`,
/// `docs/export.schema.json`).
pub fn schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(ExportDoc)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ExportDoc {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "name": "round trip",
            "target": "ws://127.0.0.1:9001/echo",
            "stages": [{"duration": "1s", "connections": 2}],
        }))
        .unwrap();
        let mut summary = Summary {
            duration_ms: 1000,
            end_reason: Some(engine::report::EndReason::Completed),
            peak_open: 2,
            ..Summary::default()
        };
        summary.totals.attempted = 3;
        summary.totals.opened = 2;
        summary.totals.failed = 1;
        summary.totals.failures.insert("http_429".into(), 1);
        let ticks: Vec<Snapshot> = (1..=2)
            .map(|seq| Snapshot {
                seq,
                elapsed_ms: seq * 500,
                open: seq,
                totals: summary.totals.clone(),
                ..Snapshot::default()
            })
            .collect();
        let series = Series::from_snapshots(&ticks);
        let diagnosis = engine::diagnose::for_run(&series, Some(&summary));
        ExportDoc::new(
            &plan,
            RunStatus::ended(summary.end_reason),
            summary,
            diagnosis,
            Vec::new(),
            series,
            ticks,
        )
    }

    #[test]
    fn what_is_written_reads_back() {
        let doc = example();
        let text = serde_json::to_string(&doc).unwrap();
        let back: ExportDoc = serde_json::from_str(&text).unwrap();
        assert_eq!(back.schema_version, SCHEMA_VERSION);
        assert_eq!(back.generated_by, doc.generated_by);
        assert_eq!(back.plan, doc.plan);
        assert_eq!(back.run_status(), Some(RunStatus::Completed));
        assert_eq!(back.summary, doc.summary);
        assert_eq!(back.ticks, doc.ticks);
        // Derived parts are written, and not read (the server recomputes them).
        let written: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(!written["series"]["t"].as_array().unwrap().is_empty());
        assert_eq!(back.series, Series::default());
        // The oldest uploads carry only what the server reads.
        let minimal = serde_json::json!({
            "schema_version": 1, "plan": written["plan"], "status": "cancelled",
            "summary": written["summary"],
        });
        let min: ExportDoc = serde_json::from_value(minimal).unwrap();
        assert_eq!(min.run_status(), Some(RunStatus::Cancelled));
        assert!(min.ticks.is_empty());
    }

    #[test]
    fn a_streamed_export_is_the_same_document() {
        let doc = example();
        let whole = serde_json::to_vec(&doc).unwrap();
        let ExportDoc {
            plan,
            summary,
            diagnosis,
            thresholds,
            series,
            ticks,
            ..
        } = doc;
        let bare = ExportDoc::new(
            &plan,
            RunStatus::Completed,
            summary,
            diagnosis,
            thresholds,
            series,
            Vec::new(),
        );
        let mut streamed = bare.head().unwrap();
        let mut first = true;
        write_ticks(&mut streamed, &ticks[..1], &mut first).unwrap();
        write_ticks(&mut streamed, &ticks[1..], &mut first).unwrap();
        streamed.extend_from_slice(b"]}");
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            String::from_utf8(whole).unwrap()
        );
        let mut with_ticks = example();
        assert!(with_ticks.head().is_err(), "a head is made without ticks");
        with_ticks.ticks.clear();
        assert!(with_ticks.head().is_ok());
    }

    #[test]
    fn the_committed_schema_is_current_and_the_export_follows_it() {
        let committed = include_str!("../../docs/export.schema.json");
        assert_eq!(
            committed.trim(),
            schema().trim(),
            "run `socketswarm plan export-schema > docs/export.schema.json`"
        );
        let schema: serde_json::Value = serde_json::from_str(committed).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let doc = serde_json::to_value(example()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
}
