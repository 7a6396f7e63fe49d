-- socketswarm schema v4: the verdict of a finished run, kept for the runs list's
-- verdict column and filter. It is derived (from the run's ticks and summary, by the same
-- diagnosis the run page shows); NULL until computed: at the end of a run or an import,
-- and at start-up for runs stored before this column existed.
alter table run add column verdict text;        -- LimitKind key: concurrency_cap, none, ...
alter table run add column verdict_text text;   -- for people: "concurrency cap per token ≈ 40"

create index run_verdict_idx on run (verdict, created_at desc);
