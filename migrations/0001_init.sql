-- socketswarm schema v1: runs and their per-second series.
-- Times are unix milliseconds (UTC). JSON columns hold engine::report types.

-- One row per run; immutable once status is completed/cancelled/failed/interrupted.
create table run (
    run_id        text primary key,           -- unguessable (uuid v4, 32 hex chars)
    name          text not null,
    target        text not null,
    status        text not null check (status in ('queued', 'running', 'completed', 'cancelled', 'failed', 'interrupted')),
    plan_json     text not null,              -- the exact Plan it ran (reproducible)
    created_at    integer not null,
    started_at    integer,
    finished_at   integer,
    error         text,                       -- why it failed to start (status = failed)
    summary_json  text,                       -- engine::Summary, once finished
    -- denormalised for the runs list
    peak_open     integer,
    opened        integer,
    failed        integer,
    duration_ms   integer
);

create index run_created_idx on run (created_at desc);

-- One row per tick (about one per second) of a run: engine::Snapshot as JSON.
create table run_interval (
    run_id        text not null references run (run_id) on delete cascade,
    seq           integer not null,
    elapsed_ms    integer not null,
    snapshot_json text not null,
    primary key (run_id, seq)
);
