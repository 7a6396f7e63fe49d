-- socketswarm schema v3: an import is stored in short transactions (a few hundred ticks
-- each) instead of one long one, so other writers (live runs' ticks) never wait behind
-- it. Until its last chunk is in, the run is hidden: every read of runs skips
-- `importing = 1`, a failed import is deleted, and the next start deletes any import a
-- crash left half-way.
alter table run add column importing integer not null default 0;
