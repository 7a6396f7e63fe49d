-- socketswarm schema v2: saved plans, run metadata (plan, tags, note, environment),
-- per-plan baselines and share links. Existing runs keep everything; they get an empty
-- note, no tags and no plan.

-- A saved plan: what users edit, run again and keep in git (exported as TOML).
create table saved_plan (
    plan_id         text primary key,          -- uuid v4, 32 hex chars
    name            text not null,
    plan_json       text not null,             -- the Plan as saved (secrets stay here, never leave in answers)
    created_at      integer not null,
    updated_at      integer not null,
    -- the run new runs of this plan are compared with (cleared if that run is deleted)
    baseline_run_id text references run (run_id) on delete set null
);

create index saved_plan_name_idx on saved_plan (name);

-- Which saved plan a run came from (if any), the user's note, and where it ran.
alter table run add column plan_id text references saved_plan (plan_id) on delete set null;
alter table run add column note text not null default '';
-- {"version", "host", "os", "cpus", "nofile"} of the process that ran it
alter table run add column env_json text;

create index run_plan_idx on run (plan_id, created_at desc);
create index run_status_idx on run (status, created_at desc);

-- Free-form labels on runs ("baseline", "after-fix", "v2.3").
create table run_tag (
    run_id text not null references run (run_id) on delete cascade,
    tag    text not null,
    primary key (run_id, tag)
);

create index run_tag_tag_idx on run_tag (tag);

-- A share link: read-only access to one run or one comparison, nothing else.
create table share (
    share_id   text primary key,               -- uuid v4, 32 hex chars, unguessable
    kind       text not null check (kind in ('run', 'compare')),
    run_ids    text not null,                  -- comma-separated run ids, in order
    created_at integer not null
);

create index share_runs_idx on share (kind, run_ids);
