# Shortcuts for the scripts; the scripts are the source of truth.
.PHONY: build test asan demo ci

build:
	./scripts/build.sh release

test:
	./scripts/test.sh

asan:
	./scripts/build.sh asan
	ctest --preset asan

demo:
	./scripts/demo.sh

ci:
	./.ci/run

# Benchmark suite (bench/run.py, docs/performance.md); needs `make build` first (core, agent
# and the load tools of bench/tools; the suite builds the tools itself if they are missing).
.PHONY: bench bench-quick
bench:
	/usr/bin/python3 bench/run.py

bench-quick:
	/usr/bin/python3 bench/run.py --quick
