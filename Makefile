# ferry's front door. `make run` and `make test` install what is missing first.
PYTHON      := /usr/bin/python3
BUILD       := build
ASAN_BUILD  := build-asan
FUZZ_BUILD  := build-fuzz
MESON_OPTS  := --buildtype=debugoptimized -Dwerror=true
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SECONDS ?= 300
PORT ?= 3000
# Sub-makes stay quiet so that the last line of `make test` is pytest's summary.
MAKEFLAGS += --no-print-directory

.PHONY: all build deps run test unit asan fuzz-build fuzz-smoke fuzz pytest pytest-asan clean bench soak

all: build

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Dwerror=true -Ddebug-asan=true

asan: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) --buildtype=debug -Dfuzz=true -Dtests=false -Db_lundef=false

fuzz-build: $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

run: deps build
	@echo "ferry: serving examples/hello-wsgi on http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	./$(BUILD)/ferry start examples/hello-wsgi --port $(PORT)

unit: build asan
	meson test -C $(BUILD) --print-errorlogs --num-processes 2
	meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2

fuzz-smoke: fuzz-build
	tools/fuzz-run $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-build
	tools/fuzz-run $(FUZZ_BUILD) $(FUZZ_SECONDS)

pytest: build
	FERRY_BIN=$(CURDIR)/$(BUILD)/ferry $(PYTHON) -m pytest -q -p no:cacheprovider tests

# The HTTP front and the pool under ASan + UBSan, end to end (the unit tests cover the rest); a
# sanitizer report makes ferry exit non-zero, which the suite's teardown turns into a failure.
# The loaders' conformance runs there too: `ferry worker` preloads the ASan runtime into the
# interpreter, so the extension modules and the runtime in them are checked (docs/operations.md).
pytest-asan: build asan
	FERRY_BIN=$(CURDIR)/$(ASAN_BUILD)/ferry FERRY_BUILD_DIR=$(CURDIR)/$(BUILD) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e -k "http or pool or frameworks or admin or restart"
	FERRY_BIN=$(CURDIR)/$(ASAN_BUILD)/ferry FERRY_BUILD_DIR=$(CURDIR)/$(BUILD) \
	  FERRY_CONFORMANCE_LOADERS=wsgi,rack \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/conformance

test: deps
	$(MAKE) build asan fuzz-build
	$(MAKE) unit
	$(MAKE) fuzz-smoke
	$(MAKE) pytest-asan
	$(MAKE) pytest

# bench/run.py builds its own release build in build-release/ (a failed ferry build becomes
# skipped rows in the report, not a failed target).
bench: deps
	scripts/install-deps --bench
	$(PYTHON) bench/run.py $(if $(QUICK),--quick,)

# Long leak checks, bounded in time and count (docs/operations.md, "Soak tests"); not in `make test`.
soak: deps build
	scripts/install-deps --soak
	$(PYTHON) bench/soak.py --ferry-bin $(CURDIR)/$(BUILD)/ferry

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-release
