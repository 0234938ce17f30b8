# ferry's front door. `make run` and `make test` install what is missing first.
PYTHON      := /usr/bin/python3
BUILD       := build
ASAN_BUILD  := build-asan
FUZZ_BUILD  := build-fuzz
MESON_OPTS  := --buildtype=debugoptimized -Dwerror=true
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SECONDS ?= 300
PORT ?= 3000
# `make install`: where to (PREFIX), and a staging root in front of it (DESTDIR, for packaging).
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_BUILD := build-install
DEB_BUILD := build-deb
# Sub-makes stay quiet so that the last line of `make test` is pytest's summary.
MAKEFLAGS += --no-print-directory

.PHONY: all build deps run test unit asan fuzz-build fuzz-smoke fuzz pytest pytest-asan clean bench soak \
	install deb test-deb

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
	./$(BUILD)/ferry start examples/hello-wsgi --port $(PORT) --python $(PYTHON)

unit: build asan
	meson test -C $(BUILD) --print-errorlogs --num-processes 2
	meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2

fuzz-smoke: fuzz-build
	tools/fuzz-run $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-build
	tools/fuzz-run $(FUZZ_BUILD) $(FUZZ_SECONDS)

pytest: build
	FERRY_BIN=$(CURDIR)/$(BUILD)/ferry $(PYTHON) -m pytest -q -p no:cacheprovider tests --ignore=tests/packaging

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

# A release build of its own (the prefix is its configuration), installed under DESTDIR/PREFIX:
# bin/ferry, share/ferry/loaders/, <libdir>/ferry/ext/, include/ferry.h. The installed ferry is
# relocatable: it finds its files relative to its own prefix (docs/deploying.md, "Installing").
install: deps
	@if [ -f $(INSTALL_BUILD)/build.ninja ]; then \
	  meson configure $(INSTALL_BUILD) -Dprefix=$(PREFIX) >/dev/null; \
	else \
	  meson setup $(INSTALL_BUILD) --prefix=$(PREFIX) --buildtype=release -Dtests=false >/dev/null; \
	fi
	ninja -C $(INSTALL_BUILD)
	meson install -C $(INSTALL_BUILD) --no-rebuild $(if $(DESTDIR),--destdir "$(abspath $(DESTDIR))",)

# A Debian package from debian/ (dpkg-buildpackage -us -uc -b) built in a copy of the tree under
# $(DEB_BUILD)/ (dpkg-buildpackage writes its .deb next to the source directory).
deb: deps
	scripts/install-deps --deb
	scripts/build-deb $(DEB_BUILD)

# `make deb` and a check of the package's file list; slower (a release build from scratch), so
# not part of `make test`.
test-deb: deb
	FERRY_DEB_DIR=$(CURDIR)/$(DEB_BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider tests/packaging

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-release $(INSTALL_BUILD) $(DEB_BUILD)
