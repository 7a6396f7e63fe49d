//! SQL of steering a live run (`runs::steer`): the stored plan of a running run is
//! rewritten with each change, so it always says what ran. A finished run's plan never
//! changes (the `status` guard).

use sqlx::SqlitePool;

/// Replaces the stored plan of a running run; `false` when the run is not running.
pub async fn set_running_plan(
    pool: &SqlitePool,
    run_id: &str,
    plan_json: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query("update run set plan_json = ? where run_id = ? and status = 'running'")
        .bind(plan_json)
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}
