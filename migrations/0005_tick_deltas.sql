-- socketswarm schema v5: ticks are stored as what changed during them. Rows written
-- before keep a whole snapshot (running totals and all) in `snapshot_json` and read as
-- format 1; new rows hold an `engine::report::StoredTick` (format 2): the tick's own
-- counters (zeros left out), the identities whose counts moved, and the gauges of its
-- end. Readers replay the rows in seq order (`engine::report::TickReplay`), so both
-- formats, even in one run, read back as the ticks that were live.
alter table run_interval add column tick_format integer not null default 1;
