//! Wire types and server fns of the history workflow: the filtered runs list, run
//! metadata (tags, note), saved plans, baselines, comparisons and share links. The
//! server implements them in `RunService` (see `super`), the JSON API calls the same
//! methods.

use engine::compare::Comparison;
use engine::{Plan, Series};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::service;
use super::{ApiError, Launched, RunDetail, RunListItem, RunStatus};

/// Filters, sort and page of the runs list. Every field is optional; the server
/// validates them (bad dates, unknown sort keys and statuses are 400s naming the field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunQuery {
    /// Saved plan id.
    pub plan: Option<String>,
    /// Substring of the target URL.
    pub target: Option<String>,
    pub status: Option<String>,
    pub tag: Option<String>,
    /// The verdict's kind key (`concurrency_cap`, `handshake_rate_limit`, `none`, …).
    #[serde(default)]
    pub verdict: Option<String>,
    /// Substring of the run's name.
    pub q: Option<String>,
    /// `YYYY-MM-DD` (UTC), inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
    /// `created` (default), `name`, `duration`, `peak`, `opened`, `failed`.
    pub sort: Option<String>,
    /// `desc` (default) or `asc`.
    pub dir: Option<String>,
    /// 1-based.
    pub page: Option<u32>,
    /// 1..=200, default 25.
    pub per_page: Option<u32>,
}

impl RunQuery {
    /// The query string for these filters with another page (empty fields left out).
    pub fn to_query_string(&self, page: u32) -> String {
        let mut parts = Vec::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", encode(v)));
            }
        };
        put("plan", &self.plan);
        put("target", &self.target);
        put("status", &self.status);
        put("tag", &self.tag);
        put("verdict", &self.verdict);
        put("q", &self.q);
        put("from", &self.from);
        put("to", &self.to);
        put("sort", &self.sort);
        put("dir", &self.dir);
        if let Some(n) = self.per_page {
            parts.push(format!("per_page={n}"));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        parts.join("&")
    }
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `YYYY-MM-DD` as unix milliseconds at 00:00 UTC (pure, for the date filters).
pub fn date_ms(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}

/// A page of the runs list, with what the filter controls offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunPage {
    pub runs: Vec<RunListItem>,
    /// Runs matching the filters (all pages).
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
    pub pages: u32,
    /// Saved plans and tags that exist (for the filter dropdowns).
    pub plans: Vec<PlanRef>,
    pub tags: Vec<String>,
    pub query: RunQuery,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRef {
    pub id: String,
    pub name: String,
}

/// Tags and note of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunMeta {
    pub tags: Vec<String>,
    pub note: String,
}

impl RunMeta {
    /// From the form: tags comma- or space-separated.
    pub fn from_form(tags: &str, note: String) -> RunMeta {
        RunMeta {
            tags: tags.split([',', ' ', '\n']).map(str::to_string).collect(),
            note,
        }
        .normalized()
    }

    /// Tags trimmed, without empty ones, sorted, each once (how they are stored).
    pub fn normalized(mut self) -> RunMeta {
        self.tags = self
            .tags
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        self.tags.sort();
        self.tags.dedup();
        self
    }
}

/// One row of the saved plans list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanListItem {
    pub id: String,
    pub name: String,
    pub target: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub runs: i64,
    pub last_run_at_ms: Option<i64>,
    pub last_status: Option<RunStatus>,
    pub baseline_run_id: Option<String>,
}

/// A saved plan, secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDetail {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    /// The plan as a commented TOML file (what "Export TOML" downloads).
    pub toml: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub baseline_run_id: Option<String>,
    /// Its latest runs, newest first.
    pub runs: Vec<RunListItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSaved {
    pub id: String,
    pub url: String,
}

/// A run against its plan's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineView {
    pub run_id: String,
    pub name: String,
    pub created_at_ms: i64,
    /// `[baseline, this run]`.
    pub comparison: Comparison,
}

/// One run in a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRun {
    pub id: String,
    pub name: String,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub target: String,
    pub tags: Vec<String>,
    /// The diagnosis in one sentence.
    pub verdict: String,
    /// Other limits hit in the same run, a sentence each (the diagnosis' `also`).
    #[serde(default)]
    pub also: Vec<String>,
    pub series: Series,
}

/// `/compare?runs=a,b,...`: 2 to 4 finished runs, oldest first; the oldest is the
/// reference every change is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareView {
    pub runs: Vec<CompareRun>,
    pub comparison: Comparison,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    Run,
    Compare,
}

/// A read-only link to one run or one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareLink {
    pub id: String,
    pub kind: ShareKind,
    /// Path, e.g. `/share/3f2a...`.
    pub url: String,
    /// The whole link colleagues open: `--public-url` + `url`, when the server has one.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The server listens on loopback only and has no `--public-url`: nobody else can
    /// open the link.
    #[serde(default)]
    pub local_only: bool,
}

/// What a share link shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SharedView {
    Run(Box<RunDetail>),
    Compare(CompareView),
}

/// Run ids from `a,b,c` (also space-separated), in order, without repeats.
pub fn parse_ids(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in s.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        if !out.iter().any(|x| x == id) {
            out.push(id.to_string());
        }
    }
    out
}

/// A page of runs matching the filters.
#[server]
pub async fn search_runs(#[server(default)] query: RunQuery) -> Result<RunPage, ApiError> {
    service()?.search_runs(query).await
}

/// Saves a run's tags and note, then shows the run again.
#[server]
pub async fn update_run_meta(id: String, tags: String, note: String) -> Result<(), ApiError> {
    service()?
        .update_run_meta(&id, RunMeta::from_form(&tags, note))
        .await?;
    leptos_axum::redirect(&format!("/runs/{id}"));
    Ok(())
}

/// Deletes a finished run (with its ticks and share links), then shows the runs list.
#[server]
pub async fn delete_run(id: String) -> Result<(), ApiError> {
    service()?.delete_run(&id).await?;
    leptos_axum::redirect("/runs");
    Ok(())
}

/// What "Run again" (`POST /api/runs/{id}/rerun`) may carry; an empty body is all
/// defaults (the exact plan, nothing typed in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RerunRequest {
    /// Values of the secrets the run did not keep, by `MissingSecret::key`
    /// (`{"auth.source.client_secret": "…"}`). Used for the new run only, never stored.
    pub secrets: std::collections::BTreeMap<String, String>,
    /// "Edit and run again": the edited plan (as the run page showed it, `<redacted>`
    /// where a secret was not kept) instead of the run's own.
    pub plan: Option<Plan>,
}

/// Launches the exact plan a run ran, then shows the new run. `secrets` holds the
/// values of the ones it did not keep (the page's password fields, `secrets[KEY]`).
#[server]
pub async fn rerun(
    id: String,
    #[server(default)] secrets: std::collections::BTreeMap<String, String>,
) -> Result<Launched, ApiError> {
    let req = RerunRequest {
        secrets,
        plan: None,
    };
    let launched = service()?.rerun(&id, req).await?;
    leptos_axum::redirect(&launched.url);
    Ok(launched)
}

/// "Edit and run again" from the plan editor: a run's plan as edited (JSON), with the
/// secrets it did not keep, then shows the new run.
#[server]
pub async fn rerun_edited(
    id: String,
    plan_json: String,
    #[server(default)] secrets: std::collections::BTreeMap<String, String>,
) -> Result<Launched, ApiError> {
    let plan: Plan =
        serde_json::from_str(&plan_json).map_err(|e| ApiError::BadRequest(format!("plan: {e}")))?;
    let req = RerunRequest {
        secrets,
        plan: Some(plan),
    };
    let launched = service()?.rerun(&id, req).await?;
    leptos_axum::redirect(&launched.url);
    Ok(launched)
}

/// Saves the plan of a run as a new saved plan, then opens it.
#[server]
pub async fn save_run_as_plan(id: String) -> Result<PlanSaved, ApiError> {
    let saved = service()?.save_run_as_plan(&id).await?;
    leptos_axum::redirect(&saved.url);
    Ok(saved)
}

/// Makes a run its plan's baseline (`on` = "true"), or clears it.
#[server]
pub async fn set_baseline(id: String, on: String) -> Result<(), ApiError> {
    service()?.set_baseline(&id, on == "true").await?;
    leptos_axum::redirect(&format!("/runs/{id}"));
    Ok(())
}

#[server]
pub async fn list_plans() -> Result<Vec<PlanListItem>, ApiError> {
    service()?.list_plans().await
}

#[server]
pub async fn get_plan(id: String) -> Result<PlanDetail, ApiError> {
    service()?.get_plan(&id).await
}

/// Creates (empty `id`) or updates a saved plan from TOML (or JSON) text, then opens it.
#[server]
pub async fn save_plan(id: String, text: String) -> Result<PlanSaved, ApiError> {
    let id = Some(id.as_str()).filter(|s| !s.is_empty());
    let saved = service()?.save_plan(id, &text).await?;
    leptos_axum::redirect(&saved.url);
    Ok(saved)
}

#[server]
pub async fn duplicate_plan(id: String) -> Result<PlanSaved, ApiError> {
    let saved = service()?.duplicate_plan(&id).await?;
    leptos_axum::redirect(&saved.url);
    Ok(saved)
}

/// Deletes a saved plan (its runs stay, unlinked), then shows the plans list.
#[server]
pub async fn delete_plan(id: String) -> Result<(), ApiError> {
    service()?.delete_plan(&id).await?;
    leptos_axum::redirect("/plans");
    Ok(())
}

/// Runs a saved plan, then shows the new run.
#[server]
pub async fn run_plan(id: String) -> Result<Launched, ApiError> {
    let launched = service()?.run_plan(&id).await?;
    leptos_axum::redirect(&launched.url);
    Ok(launched)
}

/// `ids`: comma-separated run ids, 2 to 4.
#[server]
pub async fn compare_runs(ids: String) -> Result<CompareView, ApiError> {
    service()?.compare_runs(&parse_ids(&ids)).await
}

/// Creates (or returns the existing) share link for a run (`kind` = "run") or a
/// comparison (`kind` = "compare", `ids` comma-separated).
#[server]
pub async fn create_share(kind: String, ids: String) -> Result<ShareLink, ApiError> {
    let kind = match kind.as_str() {
        "run" => ShareKind::Run,
        "compare" => ShareKind::Compare,
        other => {
            return Err(ApiError::BadRequest(format!(
                "kind: `{other}` is not run or compare"
            )))
        }
    };
    service()?.create_share(kind, &parse_ids(&ids)).await
}

/// Revokes a share link: it answers 404 from then on.
#[server]
pub async fn revoke_share(share_id: String) -> Result<(), ApiError> {
    service()?.revoke_share(&share_id).await
}

/// What a share link shows. The one server fn a share link's reader may call.
#[server(endpoint = "share_view")]
pub async fn get_shared(share_id: String) -> Result<SharedView, ApiError> {
    service()?.get_shared(&share_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_midnights() {
        assert_eq!(date_ms("1970-01-01"), Some(0));
        assert_eq!(date_ms("2026-11-25"), Some(1_795_564_800_000));
        assert_eq!(date_ms("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(date_ms("2026-13-01"), None);
        assert_eq!(date_ms("yesterday"), None);
    }

    #[test]
    fn query_strings_keep_filters_and_change_page() {
        let q = RunQuery {
            tag: Some("after fix".into()),
            status: Some(String::new()),
            sort: Some("peak".into()),
            ..Default::default()
        };
        assert_eq!(q.to_query_string(3), "tag=after%20fix&sort=peak&page=3");
        assert_eq!(q.to_query_string(1), "tag=after%20fix&sort=peak");
    }

    #[test]
    fn ids_and_tags_parse() {
        assert_eq!(parse_ids("a, b,a c"), vec!["a", "b", "c"]);
        let m = RunMeta::from_form("v2, baseline  v2\nnight", "n".into());
        assert_eq!(m.tags, vec!["baseline", "night", "v2"]);
    }
}
