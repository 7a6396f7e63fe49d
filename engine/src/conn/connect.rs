//! One connection attempt, end to end: the token (`token_and_connect`), the plan's HTTP
//! steps before the handshake (`run_http_step`), then TCP, TLS and the upgrade
//! (`connect`), each phase timed; a refusal's evidence is scrubbed of secrets before it
//! is kept (`scrub_rejection`). `run_vu` (in `conn.rs`) calls it once per attempt.

use super::*;

/// One attempt: the token (if the plan has `auth`), the HTTP steps (if any), then the
/// connection. A `rotating` attempt reconnects for a token rotation started at `sched`:
/// its outcome is also the rotation's (measured here, not in the VU's loop: a `sched`
/// live after the attempt would grow every VU's task by 16 bytes).
pub(super) async fn token_and_connect(
    sh: &Shared,
    vu: u64,
    attempt: u32,
    sched: Instant,
    rotating: bool,
    rec: &mut Recorder,
) -> Result<Box<Conn>, Failed> {
    let res = attempt_once(sh, vu, attempt, sched, rec).await;
    if rotating {
        match &res {
            Ok(_) => rec.rotated(sched.elapsed()),
            Err(_) => rec.rotation_failed(),
        }
    }
    res
}

async fn attempt_once(
    sh: &Shared,
    vu: u64,
    attempt: u32,
    sched: Instant,
    rec: &mut Recorder,
) -> Result<Box<Conn>, Failed> {
    let mut ctx = Ctx::default();
    if let Some(pool) = &sh.tokens {
        let lease = pool.get(vu, rec).await.map_err(|k| (k, None))?;
        ctx.token = lease.token;
        if sh.rotation.is_some() {
            ctx.rotation.due = rotation::next_due(lease.refresh_at, Instant::now());
        }
    }
    // Per-session variables: rendered once, before anything that may use them.
    for (name, tpl) in &sh.vars {
        let value = render(tpl, vu, attempt, &ctx);
        ctx.set(name, value);
    }
    for step in &sh.http_steps {
        run_http_step(sh, step, vu, attempt, &mut ctx, rec)
            .await
            .map_err(|k| (k, None))?;
    }
    let ws = connect(sh, vu, attempt, sched, rec, &ctx).await?;
    Ok(Box::new(Conn {
        ws,
        ctx,
        opened: Instant::now(),
    }))
}

/// A compiled `HttpStep`.
pub(crate) struct HttpCall {
    pub(crate) method: reqwest::Method,
    pub(crate) url: Template,
    pub(crate) headers: Vec<(String, Template)>,
    pub(crate) body: Option<Template>,
    pub(crate) capture: Vec<(String, crate::capture::JsonPath)>,
}

/// Makes one request and captures values from its JSON reply into `ctx.vars`.
async fn run_http_step(
    sh: &Shared,
    step: &HttpCall,
    vu: u64,
    attempt: u32,
    ctx: &mut Ctx,
    rec: &mut Recorder,
) -> Result<(), FailKind> {
    let Some(http) = &sh.http else {
        return Err(FailKind::StepError);
    };
    let url = render(&step.url, vu, attempt, ctx);
    // Its host was checked and pinned at the start; a rendered value cannot move it.
    if !sh.pinned.covers(&url) {
        return Err(FailKind::StepError);
    }
    let mut req = http.request(step.method.clone(), url);
    for (k, v) in &step.headers {
        req = req.header(k.as_str(), render(v, vu, attempt, ctx));
    }
    if let Some(b) = &step.body {
        let body = render(b, vu, attempt, ctx);
        if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
            req = req.header("content-type", "application/json");
        }
        req = req.body(body);
    }
    let t0 = Instant::now();
    let resp = req.send().await;
    // Read within its cap and the process's budget, held until its values are captured.
    let outcome = match resp {
        Err(_) => Err(FailKind::StepError),
        Ok(r) if !r.status().is_success() => Err(FailKind::StepStatus(r.status().as_u16())),
        Ok(r) => crate::budget::read_answer(r, crate::report::MAX_STEP_ANSWER, sh.budget)
            .await
            .map_err(|e| match e {
                crate::budget::AnswerError::TooLarge => FailKind::StepTooLarge,
                crate::budget::AnswerError::OverBudget => FailKind::MemoryBudget,
                crate::budget::AnswerError::Failed => FailKind::StepError,
            })
            .and_then(|(body, hold)| {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .map(|json| (json, hold))
                    .map_err(|_| FailKind::StepError)
            }),
    };
    rec.sample(Metric::HttpStep, t0.elapsed());
    let (json, _hold) = outcome?;
    for (var, path) in &step.capture {
        let text = crate::capture::capture_json(&json, path).ok_or(FailKind::StepError)?;
        ctx.set(var, text);
    }
    Ok(())
}

async fn connect(
    sh: &Shared,
    vu: u64,
    attempt: u32,
    sched: Instant,
    rec: &mut Recorder,
    ctx: &Ctx,
) -> Result<Ws, Failed> {
    // By this agent's own ordinal: by `{{vu}}` (i + kN), an agent of an even-sized run
    // would bind one of two sources only.
    let k = sh.share.ordinal(vu) as usize;
    let addr = sh.addrs[k % sh.addrs.len()];
    let deadline = Instant::now() + sh.connect_timeout;
    let fut = async {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| (io_kind(&e), None))?;
        if !sh.sources.is_empty() {
            let src = sh.sources[k % sh.sources.len()];
            sock.bind(SocketAddr::new(src, 0))
                .map_err(|e| (io_kind(&e), None))?;
        }
        let t0 = Instant::now();
        let tcp = sock.connect(addr).await.map_err(|e| (io_kind(&e), None))?;
        rec.sample(Metric::TcpConnect, t0.elapsed());
        let _ = tcp.set_nodelay(true);
        let mut tcp = match &sh.tls {
            None => MaybeTls::Plain(tcp),
            Some((connector, name)) => {
                let t1 = Instant::now();
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| (tls_kind(&e), None))?;
                rec.sample(Metric::TlsHandshake, t1.elapsed());
                MaybeTls::Client(Box::new(tls))
            }
        };
        let headers: Vec<(String, String)> = sh
            .headers
            .iter()
            .map(|(k, t)| (k.clone(), render(t, vu, attempt, ctx)))
            .collect();
        let resource = render(&sh.resource, vu, attempt, ctx);
        // A line break in a rendered value (a token or a captured value from a peer)
        // would add header lines of its own: such a request is not sent.
        let broken = |v: &str| v.contains(['\r', '\n']);
        if broken(&resource) || headers.iter().any(|(_, v)| broken(v)) {
            return Err((FailKind::BadValue, None));
        }
        match upgrade(
            &mut tcp,
            &sh.host_header,
            &resource,
            &headers,
            &sh.protocols,
        )
        .await
        {
            Ok((left, took)) => {
                rec.sample(Metric::Upgrade, took);
                Ok((tcp, left))
            }
            Err(UpgradeError::Rejected(mut r)) => {
                rec.sample(Metric::Refused, r.waited);
                scrub_rejection(&mut r, &sh.secrets, &ctx.token);
                Err((FailKind::Status(r.status), Some(r)))
            }
            Err(UpgradeError::Protocol) => Err((FailKind::Protocol, None)),
            Err(UpgradeError::Io(e)) => Err((io_kind(&e), None)),
        }
    };
    match timeout_at(deadline.into(), fut).await {
        Err(_) => Err((FailKind::Timeout, None)),
        Ok(Err(e)) => Err(e),
        Ok(Ok((tcp, left))) => {
            // Measured from the scheduled start: free of coordinated omission.
            rec.sample(Metric::Connecting, sched.elapsed());
            let tcp = crate::budget::Metered::new(tcp, sh.budget);
            Ok(
                WebSocketStream::from_partially_read(tcp, left, Role::Client, Some(ws_config()))
                    .await,
            )
        }
    }
}

/// `text` without the run's secrets and this attempt's token (a close reason).
pub(super) fn scrub_text(text: &str, secrets: &crate::secrets::Secrets, token: &str) -> String {
    let mut this = crate::secrets::Secrets::default();
    this.add(token);
    this.scrub(&secrets.scrub(text))
}

/// Evidence is kept only once the run's secrets (and this attempt's token) are out of it.
fn scrub_rejection(r: &mut Rejection, secrets: &crate::secrets::Secrets, token: &str) {
    let mut this = crate::secrets::Secrets::default();
    this.add(token);
    for known in [secrets, &this] {
        if known.is_empty() {
            continue;
        }
        r.body = known.scrub(&r.body);
        if let Some(ra) = r.retry_after.as_mut() {
            *ra = known.scrub(ra);
        }
        for (_, v) in r.rate_limit_headers.iter_mut() {
            *v = known.scrub(v);
        }
    }
}
