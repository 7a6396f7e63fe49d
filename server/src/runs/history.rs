//! `History`: the runs that were: the filtered runs list, tags and notes, deleting
//! runs, run again, comparisons and share links (saved plans: `plans`; one run's
//! detail: `reads`). Every check that can fail names the field and the limit; the SQL
//! (filters and sorting included) is in `store::history`.

use std::sync::Arc;

use app::api::{
    date_ms, ApiError, CompareRun, CompareView, Launched, PlanRef, RerunRequest, RunListItem,
    RunMeta, RunPage, RunQuery, RunStatus, ShareKind, ShareLink, SharedView,
};
use engine::compare::{self, RunFacts};
use engine::{FieldError, Plan};
use sqlx::SqlitePool;

use super::launch::Launch;
use super::now_ms;
use super::reads::{no_results, Facts, Reads, Viewer};
use super::views::to_item;
use crate::error::internal;
use crate::store::{self, RunFilter, RunSort};
use engine::report::MAX_VIEW_POINTS;

/// Most tags on one run, longest tag, longest note.
const MAX_TAGS: usize = 20;
const MAX_TAG_LEN: usize = 40;
const MAX_NOTE_LEN: usize = 4000;
/// Runs `list_runs` answers.
const LIST_LIMIT: u32 = 200;
/// Runs in one comparison.
const MAX_COMPARE: usize = 4;

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{field}: {message}"))
}

fn compare_all(facts: &[Facts]) -> engine::compare::Comparison {
    let runs: Vec<RunFacts<'_>> = facts.iter().map(Facts::run_facts).collect();
    compare::compare(&runs)
}

/// The history service (handles only: cheap to clone).
#[derive(Clone)]
pub struct History {
    pub(super) pool: SqlitePool,
    pub(super) reads: Reads,
    /// For run again.
    pub(super) launch: Arc<Launch>,
    /// `--public-url` without its trailing slash: share links are built on it.
    pub(super) share_base: Option<Arc<str>>,
    /// Listening on loopback only, no public URL: share links work on this machine only.
    pub(super) local_only: bool,
}

impl History {
    /// Validates a list query into SQL filters.
    fn filter(q: &RunQuery) -> Result<RunFilter, ApiError> {
        let some = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let status = some(&q.status);
        if let Some(s) = &status {
            if RunStatus::parse(s).is_none() {
                return Err(bad(
                    "status",
                    format!(
                        "`{s}` is not one of {}",
                        RunStatus::ALL.map(|st| st.as_str()).join(", ")
                    ),
                ));
            }
        }
        let date = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            match some(v) {
                None => Ok(None),
                Some(s) => date_ms(&s)
                    .map(Some)
                    .ok_or_else(|| bad(name, format!("`{s}` is not a date as YYYY-MM-DD"))),
            }
        };
        let from_ms = date("from", &q.from)?;
        // `to` is inclusive: up to the end of that day.
        let to_ms = date("to", &q.to)?.map(|ms| ms + 86_400_000);
        let sort = match some(&q.sort) {
            None => RunSort::default(),
            Some(name) => RunSort::parse(&name).ok_or_else(|| {
                let names: Vec<&str> = RunSort::ALL.iter().map(|(n, _)| *n).collect();
                bad(
                    "sort",
                    format!("`{name}` is not one of {}", names.join(", ")),
                )
            })?,
        };
        let desc = match some(&q.dir).as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(other) => return Err(bad("dir", format!("`{other}` is not asc or desc"))),
        };
        let per_page = q.per_page.unwrap_or(25);
        if !(1..=200).contains(&per_page) {
            return Err(bad("per_page", format!("{per_page} is not within 1..=200")));
        }
        let page = q.page.unwrap_or(1).max(1);
        let verdict = some(&q.verdict);
        if let Some(v) = &verdict {
            if !engine::diagnose::LimitKind::ALL
                .iter()
                .any(|k| k.key() == v)
            {
                return Err(bad(
                    "verdict",
                    format!(
                        "`{v}` is not one of {}",
                        engine::diagnose::LimitKind::ALL.map(|k| k.key()).join(", ")
                    ),
                ));
            }
        }
        Ok(RunFilter {
            verdict,
            plan_id: some(&q.plan),
            target: some(&q.target),
            status,
            tag: some(&q.tag),
            name: some(&q.q),
            from_ms,
            to_ms,
            sort,
            desc,
            limit: i64::from(per_page),
            offset: i64::from(page - 1) * i64::from(per_page),
        })
    }

    /// Runs, newest first (at most `LIST_LIMIT`).
    pub async fn list_runs(&self) -> Result<Vec<RunListItem>, ApiError> {
        let q = RunQuery {
            per_page: Some(LIST_LIMIT),
            ..Default::default()
        };
        self.matching_runs(&q).await
    }

    /// The runs a query matches (one page of them), without the list page's extras.
    pub(super) async fn matching_runs(&self, q: &RunQuery) -> Result<Vec<RunListItem>, ApiError> {
        Ok(self.page_of(&Self::filter(q)?).await?.0)
    }

    /// One page of runs with their tags, and how many match in all.
    async fn page_of(&self, f: &RunFilter) -> Result<(Vec<RunListItem>, u64), ApiError> {
        let (rows, total) = store::search_runs(&self.pool, f)
            .await
            .map_err(|e| internal("search_runs", e))?;
        let ids: Vec<String> = rows.iter().map(|r| r.run.run_id.clone()).collect();
        let mut tags = store::tags_of(&self.pool, &ids)
            .await
            .map_err(|e| internal("tags_of", e))?;
        let runs = rows
            .into_iter()
            .map(|r| {
                let t = tags.remove(&r.run.run_id).unwrap_or_default();
                let mut item = to_item(r.run);
                item.plan_name = r.plan_name;
                item.tags = t;
                item
            })
            .collect();
        Ok((runs, total as u64))
    }

    /// The runs list: a page of matching runs, with the plans and tags to filter by.
    pub async fn search_runs(&self, q: RunQuery) -> Result<RunPage, ApiError> {
        let f = Self::filter(&q)?;
        let (runs, total) = self.page_of(&f).await?;
        let plans = store::plan_names(&self.pool)
            .await
            .map_err(|e| internal("plan_names", e))?
            .into_iter()
            .map(|(id, name)| PlanRef { id, name })
            .collect();
        let all_tags = store::all_tags(&self.pool)
            .await
            .map_err(|e| internal("all_tags", e))?;
        let per_page = f.limit as u32;
        let page = (f.offset / f.limit) as u32 + 1;
        Ok(RunPage {
            runs,
            total,
            page,
            per_page,
            pages: (total.div_ceil(u64::from(per_page))).max(1) as u32,
            plans,
            tags: all_tags,
            query: q,
        })
    }

    pub async fn delete_run(&self, id: &str) -> Result<(), ApiError> {
        let deleted = store::delete_run(&self.pool, id)
            .await
            .map_err(|e| internal("delete_run", e))?;
        if !deleted {
            // Unknown (404) or live (409: the store never deletes a live run).
            let row = self.reads.run_row(id).await?;
            return Err(ApiError::Conflict(format!(
                "run {id} is {}; cancel it before deleting it",
                row.status
            )));
        }
        tracing::info!(run = id, "run deleted");
        Ok(())
    }

    /// A run's tags and note.
    pub async fn get_run_meta(&self, id: &str) -> Result<RunMeta, ApiError> {
        let row = self.reads.run_row(id).await?;
        Ok(RunMeta {
            tags: self.reads.tags(id).await?,
            note: row.note,
        })
    }

    pub async fn update_run_meta(&self, id: &str, meta: RunMeta) -> Result<(), ApiError> {
        let meta = meta.normalized();
        let mut errs = Vec::new();
        if meta.tags.len() > MAX_TAGS {
            errs.push(FieldError {
                field: "tags".into(),
                message: format!("{} tags; the most is {MAX_TAGS}", meta.tags.len()),
            });
        }
        for t in &meta.tags {
            let ok_chars = t
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
            if t.is_empty() || t.chars().count() > MAX_TAG_LEN || !ok_chars {
                errs.push(FieldError {
                    field: "tags".into(),
                    message: format!(
                        "`{t}`: a tag is 1 to {MAX_TAG_LEN} letters, digits or - _ . : /"
                    ),
                });
            }
        }
        if meta.note.chars().count() > MAX_NOTE_LEN {
            errs.push(FieldError {
                field: "note".into(),
                message: format!(
                    "{} characters; the most is {MAX_NOTE_LEN}",
                    meta.note.chars().count()
                ),
            });
        }
        if !errs.is_empty() {
            return Err(ApiError::Validation(errs));
        }
        let found = store::set_meta(&self.pool, id, &meta.tags, &meta.note)
            .await
            .map_err(|e| internal("set_meta", e))?;
        found
            .then_some(())
            .ok_or_else(|| ApiError::NotFound(format!("run {id}")))
    }

    /// Re-launches a run's plan: its exact plan, or `req.plan` ("Edit and run again";
    /// then the new run belongs to no saved plan). Secrets that were typed in come back
    /// from its saved plan when it has one; the rest must be in `req.secrets` (by
    /// `MissingSecret::key`), or a 422 names each one missing. The secrets reach the
    /// engine only: the new run stores its plan redacted, like every launch.
    pub async fn rerun(&self, id: &str, req: RerunRequest) -> Result<Launched, ApiError> {
        let row = self.reads.run_row(id).await?;
        let stored: Plan =
            serde_json::from_str(&row.plan_json).map_err(|e| internal("stored plan", e))?;
        let edited = req.plan.filter(|p| *p != stored);
        let mut plan = edited.clone().unwrap_or(stored);
        let mut plan_id = None;
        if let Some(pid) = &row.plan_id {
            if let Some(p) = store::get_plan(&self.pool, pid)
                .await
                .map_err(|e| internal("get_plan", e))?
            {
                if let Ok(saved) = serde_json::from_str::<Plan>(&p.plan_json) {
                    plan.restore_secrets(&saved);
                }
                if edited.is_none() {
                    plan_id = Some(pid.clone());
                }
            }
        }
        plan.fill_secrets(&req.secrets)
            .map_err(ApiError::Validation)?;
        self.launch.launch(plan, plan_id.as_deref()).await
    }

    fn check_compare_ids(ids: &[String]) -> Result<(), ApiError> {
        if !(2..=MAX_COMPARE).contains(&ids.len()) {
            return Err(bad(
                "runs",
                format!(
                    "give 2 to {MAX_COMPARE} different run ids; got {}",
                    ids.len()
                ),
            ));
        }
        Ok(())
    }

    /// Loads 2 to 4 finished runs, oldest first (the oldest is the reference).
    async fn facts_in_order(&self, ids: &[String]) -> Result<Vec<Facts>, ApiError> {
        Self::check_compare_ids(ids)?;
        let mut facts = Vec::with_capacity(ids.len());
        for id in ids {
            facts.push(self.reads.facts(id).await?);
        }
        facts.sort_by_key(|f| f.detail.created_at_ms);
        Ok(facts)
    }

    /// A comparison for the owner (pages, API).
    pub async fn compare_runs(&self, ids: &[String]) -> Result<CompareView, ApiError> {
        self.compare_for(ids, Viewer::Owner).await
    }

    /// A comparison built in one of `who`'s view slots, its series thinned for drawing.
    async fn compare_for(&self, ids: &[String], who: Viewer) -> Result<CompareView, ApiError> {
        Self::check_compare_ids(ids)?;
        let _slot = self.reads.view_slot(who).await?;
        let facts = self.facts_in_order(ids).await?;
        let comparison = compare_all(&facts);
        let runs = facts
            .into_iter()
            .map(|f| CompareRun {
                id: f.detail.id,
                name: f.detail.name,
                status: f.detail.status,
                created_at_ms: f.detail.created_at_ms,
                target: f.detail.plan.target,
                tags: f.detail.tags,
                also: f.diagnosis.also.into_iter().map(|x| x.headline).collect(),
                verdict: f.diagnosis.headline,
                series: f.detail.series.thinned(MAX_VIEW_POINTS),
            })
            .collect();
        Ok(CompareView { runs, comparison })
    }

    pub async fn create_share(
        &self,
        kind: ShareKind,
        ids: &[String],
    ) -> Result<ShareLink, ApiError> {
        let kind_str = match kind {
            ShareKind::Run => {
                if ids.len() != 1 {
                    return Err(bad(
                        "ids",
                        format!("a run share names exactly 1 run; got {}", ids.len()),
                    ));
                }
                self.reads.run_row(&ids[0]).await?;
                "run"
            }
            ShareKind::Compare => "compare",
        };
        let joined = match kind {
            ShareKind::Run => ids.join(","),
            ShareKind::Compare => {
                // The order the comparison shows (oldest first), checked as it would be.
                Self::check_compare_ids(ids)?;
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    let row = self.reads.run_row(id).await?;
                    if row.summary_json.is_none() {
                        return Err(no_results(id, &row.status));
                    }
                    rows.push(row);
                }
                rows.sort_by_key(|r| r.created_at);
                let ordered: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
                ordered.join(",")
            }
        };
        let existing = store::find_share(&self.pool, kind_str, &joined)
            .await
            .map_err(|e| internal("find_share", e))?;
        let id = match existing {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                store::insert_share(&self.pool, &id, kind_str, &joined, now_ms())
                    .await
                    .map_err(|e| internal("insert_share", e))?;
                id
            }
        };
        let url = format!("/share/{id}");
        Ok(ShareLink {
            public_url: self.share_base.as_ref().map(|base| format!("{base}{url}")),
            local_only: self.local_only,
            url,
            id,
            kind,
        })
    }

    pub async fn revoke_share(&self, share_id: &str) -> Result<(), ApiError> {
        let found = store::delete_share(&self.pool, share_id)
            .await
            .map_err(|e| internal("delete_share", e))?;
        if !found {
            return Err(ApiError::NotFound("share link".into()));
        }
        tracing::info!(share = share_id, "share link revoked");
        Ok(())
    }

    /// `(kind, run ids)` of a share link.
    pub async fn share_target(&self, share_id: &str) -> Result<(ShareKind, Vec<String>), ApiError> {
        let (kind, ids) = store::get_share(&self.pool, share_id)
            .await
            .map_err(|e| internal("get_share", e))?
            .ok_or_else(|| ApiError::NotFound("share link".into()))?;
        let kind = if kind == "run" {
            ShareKind::Run
        } else {
            ShareKind::Compare
        };
        Ok((kind, ids.split(',').map(str::to_string).collect()))
    }

    /// What a share link shows: the run without links to the rest of the instance,
    /// built in a share link's view slot (apart from the owner's), its series thinned.
    pub async fn get_shared(&self, share_id: &str) -> Result<SharedView, ApiError> {
        let (kind, ids) = self.share_target(share_id).await?;
        match kind {
            ShareKind::Run => {
                let id = ids.first().cloned().unwrap_or_default();
                let _slot = self.reads.view_slot(Viewer::Share).await?;
                let mut d = self.reads.detail(&id).await?;
                d.series = d.series.thinned(MAX_VIEW_POINTS);
                d.plan_id = None;
                d.plan_name = None;
                d.baseline = None;
                d.is_baseline = false;
                Ok(SharedView::Run(Box::new(d)))
            }
            ShareKind::Compare => Ok(SharedView::Compare(
                self.compare_for(&ids, Viewer::Share).await?,
            )),
        }
    }
}
