"""Fixtures of the end-to-end suite: a `ferry` factory that starts `ferry start` on a free
loopback port, and leak checks after EVERY test: no child process left (the pytest process is a
child subreaper, so orphaned workers come back to it), no socket file or instance directory left
in the test's TMPDIR, no "[alert]" in any ferry log.

Paths: FERRY_BIN (default <repo>/build/ferry), FERRY_BUILD_DIR (default <repo>/build) for the
built C apps. Every ferry starts with /usr/bin and /bin first on PATH (Debian's python3 and ruby,
which see the python3-* and ruby-* packages the apps use), and, run as root, with FERRY_USER=root
(the apps run as the user that runs the suite, not as nobody)."""

import ctypes
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FERRY_BIN = os.environ.get("FERRY_BIN", os.path.join(REPO, "build", "ferry"))
BUILD_DIR = os.environ.get("FERRY_BUILD_DIR", os.path.join(REPO, "build"))
START_TIMEOUT = 20.0
# Run as root, ferry would run the apps (owned by root here) as nobody (docs/deploying.md,
# "Users"); the suite's apps and temporary directories assume the user that runs the tests, so
# every ferry the suite starts inherits FERRY_USER=root. test_deploy_users.py tests the
# switching (with --user, or FERRY_USER emptied).
if os.geteuid() == 0:
    os.environ.setdefault("FERRY_USER", "root")
DEBIAN_PATH = "/usr/bin:/bin"

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0):
    """Polls <pred> every 50 ms until it is true or <timeout> seconds pass; returns its last
    value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def wait_port(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_serving(f, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "pid %d\n" % f.pid in f.log():
            return True
        if f.proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


# What AddressSanitizer and UndefinedBehaviorSanitizer print on a memory error or undefined
# behaviour (not on a deadly signal, which tests send to workers on purpose).
SANITIZER_REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer): (?!SEGV|BUS|ABRT)\S+"
                              r"|\.\w+:\d+:\d+: runtime error: ")


class Ferry:
    """One `ferry start` process. .url, .port, .pid, .proc, .log(), .stop()."""

    def __init__(self, app_dir, args, env, log_path, tmpdir, port):
        self.app_dir = app_dir
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.log_path = log_path
        self.tmpdir = tmpdir
        full_env = dict(os.environ)
        full_env["TMPDIR"] = tmpdir
        # The apps use Debian's python3-* and ruby-* packages: Debian's interpreters come first
        # on PATH, where ferry looks for python3 and ruby (a pyenv python3 first on the caller's
        # PATH would not see those packages). A test's own PATH in <env> still wins.
        full_env["PATH"] = DEBIAN_PATH + ":" + full_env.get("PATH", "")
        if env:
            full_env.update(env)
        self._log_file = open(log_path, "wb")
        cmd = [FERRY_BIN, "start"]
        if app_dir is not None:
            cmd.append(str(app_dir))
        cmd += list(args)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env)
        self.pid = self.proc.pid

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends <sig> (unless it already exited) and returns the exit code. Kills and fails the
        test when it does not exit within <timeout> seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close()
                pytest.fail("ferry pid=%d did not exit within %ss of %s\n%s"
                            % (self.pid, timeout, signal.Signals(sig).name, self.log()))
        self._close()
        return self.proc.returncode

    def wait(self, timeout=10):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._close()
            pytest.fail("ferry pid=%d still running after %ss\n%s" % (self.pid, timeout, self.log()))
        self._close()
        return rc

    def _close(self):
        if not self._log_file.closed:
            self._log_file.close()


def _children():
    """Pids whose parent is this process, with their state letter."""
    me = os.getpid()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(")") + 2:].split()
        if int(rest[1]) == me:
            found[int(name)] = rest[0]
    return found


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _leftover_children(timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        _reap()
        live = {p: s for p, s in _children().items() if s != "Z"}
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.05)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


@pytest.fixture(scope="session")
def build_dir():
    return BUILD_DIR


@pytest.fixture(scope="session")
def ferry_bin():
    if not os.access(FERRY_BIN, os.X_OK):
        pytest.fail("FERRY_BIN=%s is not executable; run `make build` or set FERRY_BIN"
                    % FERRY_BIN)
    return FERRY_BIN


@pytest.fixture
def ferry(ferry_bin, tmp_path):
    """Factory: ferry(app_dir, *extra_args, env=None, wait=True) -> Ferry. Adds --port <free>
    unless the args name a port. With wait=True, waits until the port accepts (fails with the
    log when it does not within 20 s)."""
    started = []
    tmpdirs = []

    def start(app_dir, *extra_args, env=None, wait=True):
        tmpdir = tempfile.mkdtemp(prefix="fye-", dir="/tmp")
        tmpdirs.append(tmpdir)
        args = list(extra_args)
        port = None
        for i, a in enumerate(args):
            if a == "--port" and i + 1 < len(args):
                port = int(args[i + 1])
            elif a.startswith("--port="):
                port = int(a.split("=", 1)[1])
        if port is None and not (env and "FERRY_PORT" in env):
            port = free_port()
            args += ["--port", str(port)]
        elif port is None:
            port = int(env["FERRY_PORT"])
        log_path = str(tmp_path / ("ferry-%d.log" % len(started)))
        f = Ferry(app_dir, args, env, log_path, tmpdir, port)
        started.append(f)
        if wait and not wait_port(port, f.proc, START_TIMEOUT):
            code = f.proc.poll()
            pytest.fail("ferry did not accept on port %d within %ss (exit code %s)\n%s"
                        % (port, START_TIMEOUT, code, f.log()))
        # The port accepts as soon as ferry listens, a moment before it prints its "serving"
        # line; tests read that line, so ready means both.
        if wait and not wait_serving(f, START_TIMEOUT):
            pytest.fail("ferry accepted on port %d but printed no serving line within %ss\n%s"
                        % (port, START_TIMEOUT, f.log()))
        return f

    yield start

    problems = []
    for f in started:
        if f.proc.poll() is None:
            code = f.stop()
            if code != 0:
                problems.append("ferry pid=%d exited with %s at teardown" % (f.pid, code))
        f._close()
        if "[alert]" in f.log():
            problems.append("ferry pid=%d logged an [alert]:\n%s" % (f.pid, f.log()))
        report = SANITIZER_REPORT.search(f.log())
        if report:
            # A worker's report reaches the log as its output (the ASan build preloads the
            # runtime into the interpreters too); a signal the test sent itself is not one.
            problems.append("a sanitizer report in the log of ferry pid=%d (%s):\n%s"
                            % (f.pid, report.group(0), f.log()))
    live = _leftover_children()
    if live:
        desc = ["%d (%s)" % (p, _cmdline(p)) for p in live]
        for p in live:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _leftover_children(2.0)
        problems.append("child processes left behind: " + ", ".join(desc))
    for tmpdir in tmpdirs:
        for root, dirs, files in os.walk(tmpdir):
            for name in dirs + files:
                path = os.path.join(root, name)
                mode = os.lstat(path).st_mode
                if stat.S_ISSOCK(mode):
                    problems.append("socket file left behind: " + path)
                elif stat.S_ISDIR(mode) and name.startswith("ferry."):
                    problems.append("instance directory left behind: " + path)
        shutil.rmtree(tmpdir, ignore_errors=True)
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(autouse=True)
def no_leftover_children():
    """Even tests that do not start ferry must leave no child process."""
    yield
    live = _leftover_children(3.0)
    if live:
        desc = ["%d (%s)" % (p, _cmdline(p)) for p in live]
        for p in live:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _leftover_children(2.0)
        pytest.fail("child processes left behind: " + ", ".join(desc))


def app(*parts):
    """Path of a source-tree app, e.g. app('examples', 'hello-wsgi')."""
    return os.path.join(REPO, *parts)


CONFORMANCE = {
    "wsgi": os.path.join(REPO, "tests", "conformance", "apps", "wsgi", "main"),
    "rack": os.path.join(REPO, "tests", "conformance", "apps", "rack", "main"),
    "c": os.path.join(BUILD_DIR, "tests", "conformance", "apps", "c", "main"),
}


def conformance_app(kind):
    path = CONFORMANCE[kind]
    if kind == "c" and not os.path.exists(os.path.join(path, "app.so")):
        pytest.skip("the C conformance app is not built at %s" % path)
    return path


def raw_request(port, data, timeout=5.0, read_until_close=True):
    """Sends <data> on a new connection and returns everything read until the server closes or
    <timeout> passes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
            if not read_until_close:
                break
        return b"".join(chunks)
    finally:
        s.close()


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(name="conformance_app")
def conformance_app_fixture():
    """conformance_app('wsgi' | 'rack' | 'c') -> the app directory (skips an unbuilt C app)."""
    return conformance_app


@pytest.fixture(name="raw_request")
def raw_request_fixture():
    """raw_request(port, bytes, timeout=5.0, read_until_close=True) -> bytes read."""
    return raw_request
