//! SQL of the history workflow (schema v2): filtered run lists, tags and notes, saved
//! plans and their baselines, share links, deleting runs.
//!
//! Invariants: deleting a run also deletes every share link that names it (in the same
//! transaction) and clears a baseline pointing at it (`on delete set null`); tags are
//! replaced whole in one transaction.

use std::collections::BTreeMap;

use sqlx::{FromRow, QueryBuilder, Sqlite, SqlitePool};

use super::RunRow;

/// Validated filters of the runs list (see `app::api::RunQuery`).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub plan_id: Option<String>,
    pub target: Option<String>,
    pub status: Option<String>,
    pub tag: Option<String>,
    pub name: Option<String>,
    /// A `LimitKind` key.
    pub verdict: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub sort: RunSort,
    pub desc: bool,
    pub limit: i64,
    pub offset: i64,
}

/// What the runs list is sorted by (`sort=` of the list query). The SQL of each is
/// here, so no caller writes an `order by`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunSort {
    /// Newest or oldest first (the default).
    #[default]
    Created,
    Name,
    Duration,
    Peak,
    Opened,
    Failed,
}

impl RunSort {
    /// Every sort, by the name the list query gives.
    pub const ALL: [(&'static str, RunSort); 6] = [
        ("created", RunSort::Created),
        ("name", RunSort::Name),
        ("duration", RunSort::Duration),
        ("peak", RunSort::Peak),
        ("opened", RunSort::Opened),
        ("failed", RunSort::Failed),
    ];

    /// The sort a query names (`None`: not one of [`RunSort::ALL`]).
    pub fn parse(name: &str) -> Option<RunSort> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, sort)| sort)
    }

    /// The column expression it orders by (a fixed string, never user text).
    fn column(self) -> &'static str {
        match self {
            RunSort::Created => "r.created_at",
            RunSort::Name => "r.name collate nocase",
            RunSort::Duration => "r.duration_ms",
            RunSort::Peak => "r.peak_open",
            RunSort::Opened => "r.opened",
            RunSort::Failed => "r.failed",
        }
    }
}

/// A run row with its saved plan's name.
#[derive(Debug, Clone, FromRow)]
pub struct ListRow {
    #[sqlx(flatten)]
    pub run: RunRow,
    pub plan_name: Option<String>,
}

fn push_where(qb: &mut QueryBuilder<Sqlite>, f: &RunFilter) {
    qb.push(" where r.importing = 0");
    if let Some(p) = &f.plan_id {
        qb.push(" and r.plan_id = ").push_bind(p.clone());
    }
    if let Some(t) = &f.target {
        qb.push(" and instr(lower(r.target), lower(")
            .push_bind(t.clone())
            .push(")) > 0");
    }
    if let Some(s) = &f.status {
        qb.push(" and r.status = ").push_bind(s.clone());
    }
    if let Some(t) = &f.tag {
        qb.push(" and exists (select 1 from run_tag g where g.run_id = r.run_id and g.tag = ")
            .push_bind(t.clone())
            .push(")");
    }
    if let Some(n) = &f.name {
        qb.push(" and instr(lower(r.name), lower(")
            .push_bind(n.clone())
            .push(")) > 0");
    }
    if let Some(v) = &f.verdict {
        qb.push(" and r.verdict = ").push_bind(v.clone());
    }
    if let Some(ms) = f.from_ms {
        qb.push(" and r.created_at >= ").push_bind(ms);
    }
    if let Some(ms) = f.to_ms {
        qb.push(" and r.created_at < ").push_bind(ms);
    }
}

/// One page of runs matching `f`, and how many match in all.
pub async fn search_runs(pool: &SqlitePool, f: &RunFilter) -> sqlx::Result<(Vec<ListRow>, i64)> {
    let mut count = QueryBuilder::<Sqlite>::new("select count(*) from run r");
    push_where(&mut count, f);
    let (total,): (i64,) = count.build_query_as().fetch_one(pool).await?;
    let mut qb = QueryBuilder::<Sqlite>::new(
        "select r.*, p.name as plan_name from run r left join saved_plan p on p.plan_id = r.plan_id",
    );
    push_where(&mut qb, f);
    qb.push(" order by ")
        .push(f.sort.column())
        .push(if f.desc { " desc" } else { " asc" })
        .push(", r.rowid desc limit ")
        .push_bind(f.limit)
        .push(" offset ")
        .push_bind(f.offset);
    let rows = qb.build_query_as::<ListRow>().fetch_all(pool).await?;
    Ok((rows, total))
}

/// Finished runs whose verdict is not computed yet (oldest first, at most `limit`).
pub async fn runs_without_verdict(pool: &SqlitePool, limit: i64) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "select run_id from run where verdict is null and summary_json is not null and importing = 0 order by created_at limit ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Stores a run's verdict (its kind key and its words).
pub async fn set_verdict(
    pool: &SqlitePool,
    run_id: &str,
    kind: &str,
    text: &str,
) -> sqlx::Result<()> {
    sqlx::query("update run set verdict = ?, verdict_text = ? where run_id = ?")
        .bind(kind)
        .bind(text)
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Tags of the given runs.
pub async fn tags_of(
    pool: &SqlitePool,
    run_ids: &[String],
) -> sqlx::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if run_ids.is_empty() {
        return Ok(out);
    }
    let mut qb = QueryBuilder::<Sqlite>::new("select run_id, tag from run_tag where run_id in (");
    let mut sep = qb.separated(", ");
    for id in run_ids {
        sep.push_bind(id.clone());
    }
    qb.push(") order by tag");
    let rows: Vec<(String, String)> = qb.build_query_as().fetch_all(pool).await?;
    for (run, tag) in rows {
        out.entry(run).or_default().push(tag);
    }
    Ok(out)
}

/// Every tag in use, sorted.
pub async fn all_tags(pool: &SqlitePool) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("select distinct tag from run_tag order by tag")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Replaces a run's tags and note (one transaction). False if there is no such run.
pub async fn set_meta(
    pool: &SqlitePool,
    run_id: &str,
    tags: &[String],
    note: &str,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query("update run set note = ? where run_id = ?")
        .bind(note)
        .bind(run_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    sqlx::query("delete from run_tag where run_id = ?")
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    for t in tags {
        sqlx::query("insert or ignore into run_tag (run_id, tag) values (?, ?)")
            .bind(run_id)
            .bind(t)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes a finished run, its ticks, tags and every share link naming it. False if
/// there was no finished run with this id.
pub async fn delete_run(pool: &SqlitePool, run_id: &str) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query("delete from run where run_id = ? and status not in ('queued', 'running') and importing = 0")
        .bind(run_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        // Unknown or live: nothing changes (the transaction rolls back on drop).
        return Ok(false);
    }
    sqlx::query("delete from share where instr(',' || run_ids || ',', ',' || ? || ',') > 0")
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Links a run to a saved plan.
pub async fn set_run_plan(pool: &SqlitePool, run_id: &str, plan_id: &str) -> sqlx::Result<()> {
    sqlx::query("update run set plan_id = ? where run_id = ?")
        .bind(plan_id)
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A `saved_plan` row.
#[derive(Debug, Clone, FromRow)]
pub struct PlanRow {
    pub plan_id: String,
    pub name: String,
    pub plan_json: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub baseline_run_id: Option<String>,
}

/// A saved plan with its run statistics.
#[derive(Debug, Clone, FromRow)]
pub struct PlanListRow {
    #[sqlx(flatten)]
    pub plan: PlanRow,
    pub runs: i64,
    pub last_run_at: Option<i64>,
    pub last_status: Option<String>,
}

pub async fn insert_plan(
    pool: &SqlitePool,
    plan_id: &str,
    name: &str,
    plan_json: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query("insert into saved_plan (plan_id, name, plan_json, created_at, updated_at) values (?, ?, ?, ?, ?)")
        .bind(plan_id)
        .bind(name)
        .bind(plan_json)
        .bind(now)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// Replaces a saved plan's content. False if there is no such plan.
pub async fn update_plan(
    pool: &SqlitePool,
    plan_id: &str,
    name: &str,
    plan_json: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "update saved_plan set name = ?, plan_json = ?, updated_at = ? where plan_id = ?",
    )
    .bind(name)
    .bind(plan_json)
    .bind(now)
    .bind(plan_id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

pub async fn get_plan(pool: &SqlitePool, plan_id: &str) -> sqlx::Result<Option<PlanRow>> {
    sqlx::query_as::<_, PlanRow>("select * from saved_plan where plan_id = ?")
        .bind(plan_id)
        .fetch_optional(pool)
        .await
}

/// Saved plans, most recently edited first.
pub async fn list_plans(pool: &SqlitePool) -> sqlx::Result<Vec<PlanListRow>> {
    sqlx::query_as::<_, PlanListRow>(
        "select p.*,
                (select count(*) from run r where r.plan_id = p.plan_id) as runs,
                (select max(r.created_at) from run r where r.plan_id = p.plan_id) as last_run_at,
                (select r.status from run r where r.plan_id = p.plan_id order by r.created_at desc, r.rowid desc limit 1) as last_status
         from saved_plan p order by p.updated_at desc, p.rowid desc",
    )
    .fetch_all(pool)
    .await
}

/// Saved plans' ids and names, in `list_plans` order (the runs list's plan filter).
pub async fn plan_names(pool: &SqlitePool) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("select plan_id, name from saved_plan order by updated_at desc, rowid desc")
        .fetch_all(pool)
        .await
}

/// True when the database holds neither runs nor saved plans (a first start).
pub async fn is_empty(pool: &SqlitePool) -> sqlx::Result<bool> {
    let (n,): (i64,) =
        sqlx::query_as("select (select count(*) from run) + (select count(*) from saved_plan)")
            .fetch_one(pool)
            .await?;
    Ok(n == 0)
}

/// Deletes a saved plan; its runs stay (unlinked). False if there was none.
pub async fn delete_plan(pool: &SqlitePool, plan_id: &str) -> sqlx::Result<bool> {
    let n = sqlx::query("delete from saved_plan where plan_id = ?")
        .bind(plan_id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Sets (or clears) a saved plan's baseline run.
pub async fn set_baseline(
    pool: &SqlitePool,
    plan_id: &str,
    run_id: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("update saved_plan set baseline_run_id = ? where plan_id = ?")
        .bind(run_id)
        .bind(plan_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The share link for exactly these runs, if one exists.
pub async fn find_share(
    pool: &SqlitePool,
    kind: &str,
    run_ids: &str,
) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("select share_id from share where kind = ? and run_ids = ? limit 1")
            .bind(kind)
            .bind(run_ids)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| r.0))
}

pub async fn insert_share(
    pool: &SqlitePool,
    share_id: &str,
    kind: &str,
    run_ids: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query("insert into share (share_id, kind, run_ids, created_at) values (?, ?, ?, ?)")
        .bind(share_id)
        .bind(kind)
        .bind(run_ids)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// Revokes a share link. False if there was none.
pub async fn delete_share(pool: &SqlitePool, share_id: &str) -> sqlx::Result<bool> {
    let n = sqlx::query("delete from share where share_id = ?")
        .bind(share_id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// `(kind, run_ids)` of a share link.
pub async fn get_share(
    pool: &SqlitePool,
    share_id: &str,
) -> sqlx::Result<Option<(String, String)>> {
    sqlx::query_as("select kind, run_ids from share where share_id = ?")
        .bind(share_id)
        .fetch_optional(pool)
        .await
}
