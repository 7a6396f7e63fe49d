# The entry points the README names. Each installs what it needs (scripts/setup.sh).
.PHONY: run test build bench

run:    ## set up, build a release and start the app (http://127.0.0.1:3000)
	scripts/run.sh

test:   ## fmt, clippy, unit + integration tests, browser tests
	scripts/test.sh

build:  ## build the site and a release binary without starting it
	scripts/setup.sh && scripts/build.sh --release

bench:  ## benchmarks: engine, 1-hour report load, SSE watchers (bench/*.md)
	bench/run.sh
