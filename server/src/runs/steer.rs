//! Steering a live run: `POST /api/runs/{id}/steer` and the `steer_run` server fn, one
//! service method ([`Launch::steer_run`]). The request names one change (`level`,
//! `rate`, `extend_s`, `end_hold`); it is read and range-checked here, re-planned by the
//! engine's pure `engine::steer::apply` inside the manager (so two changes never race),
//! checked as a whole plan against this server's limits, stored, and only then sent to
//! the swarm over the run's `watch` channel.
//!
//! What is stored: the run's plan row is rewritten with the steered `stages` and
//! `max_connect_rate` and one more `steering` event, so the stored plan is what ran and
//! "Run again" reproduces it (the design is in `engine/src/steer.rs`).
//!
//! Not steerable (409, saying why): probes (they plan their own experiments), session
//! runs (guests arrive at a rate, no level to set) and runs with agents (their agents
//! get their share of the plan once, at the start; steering them is not built yet).
//! Queued runs: 409 until they run. Finished runs: 409; unknown runs: 404.

use std::sync::Arc;

use app::api::{ApiError, SteerRequest};
use engine::steer::{Course, Steer, SteerError, SteerEvent};
use engine::{FieldError, Plan};
use sqlx::SqlitePool;
use tokio::sync::watch;
use tokio::time::Instant;

use super::launch::Launch;
use super::manager::SteerOutcome;
use crate::error::internal;
use crate::store;

/// The server's check of a steered plan (limits, this process's size), run inside the
/// manager so the change is judged on the newest course.
pub type Check = Box<dyn FnOnce(&Plan) -> Result<(), ApiError> + Send>;

/// A running run's steering, as the manager holds it.
pub struct Steering {
    /// The swarm's course: its controller and coordinator read the newest value.
    tx: watch::Sender<Course>,
    /// The plan as steered so far (with its secrets; stored redacted).
    plan: Plan,
    /// About when the engine's clock started (the change's `at` is measured from it).
    started: Instant,
}

impl Steering {
    /// The steering of `plan`, starting now, and the receiver its swarm follows.
    pub fn new(plan: &Plan) -> (Steering, watch::Receiver<Course>) {
        let (tx, rx) = watch::channel(Course {
            stages: plan.stages.clone(),
            max_connect_rate: plan.max_connect_rate,
        });
        let steering = Steering {
            tx,
            plan: plan.clone(),
            started: Instant::now(),
        };
        (steering, rx)
    }
}

/// Why `plan` cannot be steered, if it cannot.
pub fn unsteerable(plan: &Plan) -> Option<&'static str> {
    if plan.probe.is_some() {
        Some("steering is not supported for probe runs: a probe chooses its own experiments")
    } else if plan.sessions.is_some() {
        Some("steering is not supported for session-model runs (guests arrive at a rate; there is no level to set)")
    } else if plan.agents.is_some() {
        Some("steering is not supported for runs with agents yet; runs made in this process can be steered")
    } else {
        None
    }
}

/// Applies `steer` to a live run (called by the manager, one change at a time).
pub(super) async fn steer_live(
    pool: &SqlitePool,
    run_id: &str,
    unsteerable: Option<&'static str>,
    steering: Option<&mut Steering>,
    steer: Steer,
    check: Check,
) -> SteerOutcome {
    if let Some(why) = unsteerable {
        return SteerOutcome::Refused(ApiError::Conflict(why.into()));
    }
    let Some(s) = steering else {
        return SteerOutcome::Refused(ApiError::Conflict(format!(
            "run {run_id} is queued; it can be steered once it runs"
        )));
    };
    let course = s.tx.borrow().clone();
    let at = s.started.elapsed();
    let (course, event) = match engine::steer::apply(&course, at, steer, s.plan.steering.len()) {
        Ok(done) => done,
        Err(SteerError::Invalid(e)) => return SteerOutcome::Refused(ApiError::Validation(vec![e])),
        Err(SteerError::Conflict(m)) => {
            return SteerOutcome::Refused(ApiError::Conflict(format!("run {run_id}: {m}")))
        }
    };
    let mut plan = s.plan.clone();
    plan.stages = course.stages.clone();
    plan.max_connect_rate = course.max_connect_rate;
    plan.steering.push(event.clone());
    if let Err(e) = check(&plan) {
        return SteerOutcome::Refused(e);
    }
    let json = match serde_json::to_string(&plan.redacted()) {
        Ok(json) => json,
        Err(e) => return SteerOutcome::Refused(internal("encode plan", e)),
    };
    match store::set_running_plan(pool, run_id, &json).await {
        Ok(true) => {}
        Ok(false) => {
            return SteerOutcome::Refused(ApiError::Conflict(format!(
                "run {run_id} is not running any more"
            )))
        }
        Err(e) => return SteerOutcome::Refused(internal("set_running_plan", e)),
    }
    // Stored first: what the swarm follows is always what the stored plan says.
    s.tx.send_replace(course);
    s.plan = plan;
    SteerOutcome::Steered(event)
}

fn field(name: &str, message: String) -> ApiError {
    ApiError::Validation(vec![FieldError {
        field: name.into(),
        message,
    }])
}

/// The one change a request asks for, range-checked against the server's limits.
fn read_request(req: &SteerRequest, launch: &Launch) -> Result<Steer, ApiError> {
    let given = [
        req.level.is_some(),
        req.rate.is_some(),
        req.extend_s.is_some(),
        req.end_hold.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(field(
            "steer",
            format!("give exactly one of `level`, `rate`, `extend_s`, `end_hold` (got {given})"),
        ));
    }
    let limits = &launch.limits;
    if let Some(level) = req.level {
        let max = limits.max_connections.min(launch.in_process);
        if level < 0 {
            return Err(field("level", format!("must be 0 or more, not {level}")));
        }
        if level > i64::from(max) {
            return Err(field(
                "level",
                format!(
                    "{level} is above this server's limit of {max} connections for a steerable run"
                ),
            ));
        }
        return Ok(Steer::Level(level as u32));
    }
    if let Some(rate) = req.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(field(
                "rate",
                format!("must be above 0 connections per second, not {rate}"),
            ));
        }
        if rate > limits.max_connect_rate {
            return Err(field(
                "rate",
                format!(
                    "{rate}/s is above this server's limit of {}/s",
                    limits.max_connect_rate
                ),
            ));
        }
        return Ok(Steer::Rate(rate));
    }
    if let Some(secs) = req.extend_s {
        let max = limits.max_duration.0.as_secs_f64();
        if !(secs.is_finite() && secs > 0.0) {
            return Err(field(
                "extend_s",
                format!("must be above 0 seconds, not {secs}"),
            ));
        }
        if secs > max {
            return Err(field(
                "extend_s",
                format!("{secs} s is above this server's longest run of {max} s"),
            ));
        }
        return Ok(Steer::Extend(std::time::Duration::from_secs_f64(secs)));
    }
    match req.end_hold {
        Some(true) => Ok(Steer::EndHold),
        _ => Err(field(
            "end_hold",
            "must be `true` (ends the hold now)".into(),
        )),
    }
}

impl Launch {
    /// Steers a running run: one change, recorded in its stored plan. 404 unknown run,
    /// 409 finished, queued or not steerable, 422 a value out of range.
    pub async fn steer_run(
        self: &Arc<Self>,
        id: &str,
        req: SteerRequest,
    ) -> Result<SteerEvent, ApiError> {
        let steer = read_request(&req, self)?;
        let me = self.clone();
        // Which request field a whole-plan problem is about.
        let name = match steer {
            Steer::Level(_) => "level",
            Steer::Rate(_) => "rate",
            Steer::Extend(_) => "extend_s",
            Steer::EndHold => "end_hold",
        };
        let check: Check = Box::new(move |plan: &Plan| {
            let named = |errs: Vec<FieldError>| {
                ApiError::Validation(
                    errs.into_iter()
                        .map(|e| FieldError {
                            field: name.into(),
                            message: format!("the steered plan: {}: {}", e.field, e.message),
                        })
                        .collect(),
                )
            };
            me.validate(plan).map_err(named)?;
            me.check_local(plan).map_err(|e| match e {
                ApiError::Validation(errs) => named(errs),
                other => other,
            })
        });
        match self.manager.steer(id.to_string(), steer, check).await {
            SteerOutcome::Steered(event) => Ok(event),
            SteerOutcome::Refused(e) => Err(e),
            SteerOutcome::NotLive => match store::get_run(&self.pool, id)
                .await
                .map_err(|e| internal("get_run", e))?
            {
                None => Err(ApiError::NotFound(format!("run {id}"))),
                Some(r) => Err(ApiError::Conflict(format!(
                    "run {id} is {} and can no longer be steered",
                    r.status
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unsteerable;
    use engine::Plan;

    fn plan(extra: &str) -> Plan {
        serde_json::from_str(&format!(
            r#"{{"target":"ws://127.0.0.1:1/x","stages":[{{"duration":"1s","connections":1}}]{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn only_runs_made_in_this_process_can_be_steered() {
        assert_eq!(unsteerable(&plan("")), None);
        assert!(unsteerable(&plan(r#","agents":2"#))
            .unwrap()
            .contains("agents"));
        assert!(unsteerable(&plan(
            r#","probe":{"max_connections":10,"max_connect_rate":10,"max_duration":"5s"}"#
        ))
        .unwrap()
        .contains("probe"));
    }
}
