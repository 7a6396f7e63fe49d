# The entry points the README names. Each installs what it needs (scripts/setup.sh).
.PHONY: run test build dist image bench

run:    ## set up, build (quick profile) and start the app (http://127.0.0.1:3000)
	scripts/run.sh

test:   ## fmt, clippy, unit + integration tests, browser tests
	scripts/test.sh

build:  ## build the site and a release binary (site embedded) without starting it
	scripts/setup.sh && scripts/build.sh --release

dist:   ## the shipping binary: fat LTO, stripped (target/dist/socketswarm)
	scripts/setup.sh && scripts/build.sh --dist

image:  ## container image: static musl dist binary FROM scratch, non-root (buildah or docker)
	scripts/image.sh

bench:  ## benchmarks: engine, 1-hour report load, SSE watchers (bench/*.md)
	bench/run.sh
