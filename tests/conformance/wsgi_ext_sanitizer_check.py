"""A pytest plugin for the conformance suite run with a sanitizer build's ferry: fails the test
whose worker log holds an AddressSanitizer or UndefinedBehaviorSanitizer report (the WSGI
extension module, src/ext/python/, is instrumented and preloads libasan into the interpreter).
The suite's own teardown checks only `[alert]`, so a report would otherwise pass unseen.

    FERRY_BIN=/tmp/build-py-asan/ferry FERRY_BUILD_DIR=/tmp/build-py-asan \\
      FERRY_CONFORMANCE_LOADERS=wsgi /usr/bin/python3 -m pytest -q -p no:cacheprovider \\
      -p tests.conformance.wsgi_ext_sanitizer_check tests/conformance
"""

import re

import pytest

from . import harness

# What the sanitizers write: "==PID==ERROR: AddressSanitizer: ...", "...: runtime error: ...",
# "SUMMARY: UndefinedBehaviorSanitizer: ...", LeakSanitizer likewise.
REPORT = re.compile(r"ERROR: (?:Address|Leak|Memory|Thread)Sanitizer|"
                    r"SUMMARY: \w*Sanitizer|: runtime error: ")

found = []   # (nodeid, excerpt) of each report, in order
_current = [None]
_original_cleanup = harness.Worker.cleanup


def _cleanup_and_check(self):
    _original_cleanup(self)
    log = self.log()
    m = REPORT.search(log)
    if m:
        start = max(0, log.rfind("\n", 0, max(0, m.start() - 2000)))
        found.append((_current[0], log[start:m.start() + 4000]))


harness.Worker.cleanup = _cleanup_and_check


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    yield
    _current[0] = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when != "teardown":
        return
    mine = [text for nodeid, text in found if nodeid == item.nodeid]
    if mine:
        report = outcome.get_result()
        report.outcome = "failed"
        report.longrepr = "sanitizer report in a worker log:\n" + "\n----\n".join(mine)


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line("sanitizer reports in worker logs: %d" % len(found))
