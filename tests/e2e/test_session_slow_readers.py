"""Session protocol v2 (docs/protocol.md §4.3, check-in and backpressure): slow readers never
hold a worker. The core reads a worker's response as fast as it comes, into memory and then an
unlinked temp file, and checks the worker in at END while the client still downloads; only past
--response-buffer-max MB of one response does it stop reading the worker, which then waits.

The app is tests/e2e/apps/c/session_big: GET /big?mib=N answers N MiB whose byte at offset k is
k % 251, so every byte the client gets can be checked. Worker counts are given per test."""
import json
import os
import socket
import stat
import subprocess
import time

import pytest
import requests

from conftest import BUILD_DIR, FERRY_BIN, wait_for

BIG_APP = os.path.join(BUILD_DIR, "tests", "e2e", "apps", "c", "session_big")
MIB = 1 << 20
PERIOD = 251
PATTERN = bytes(range(PERIOD)) * (65536 // PERIOD + 2)   # any 64 KiB slice at any phase
# A short shutdown timeout: slow clients wrongly holding workers must not keep the teardown
# waiting for 30 s.
QUICK_STOP = ("--shutdown-timeout", "2")


@pytest.fixture
def big_app():
    if not os.path.exists(os.path.join(BIG_APP, "app.so")):
        pytest.fail("the C app is not built at %s (set FERRY_BUILD_DIR)" % BIG_APP)
    return BIG_APP


def status(f):
    r = subprocess.run([FERRY_BIN, "status", "--json", "--pid", str(f.pid)],
                       env=dict(os.environ, TMPDIR=f.tmpdir), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[0])


def unlinked_files(pid):
    """{fd: size} of the regular files that process <pid> holds open and that have no name
    left: the core's response (and request body) temp files."""
    found = {}
    fd_dir = "/proc/%d/fd" % pid
    for name in os.listdir(fd_dir):
        try:
            st = os.stat(os.path.join(fd_dir, name))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 0:
            found[int(name)] = st.st_size
    return found


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_field(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise AssertionError("no %s in %s" % (key, path))


def check_pattern(data, offset):
    """Asserts that <data>, found at <offset> of a /big body, holds the bytes it should."""
    done = 0
    while done < len(data):
        n = min(len(data) - done, 65536)
        phase = (offset + done) % PERIOD
        if data[done:done + n] != PATTERN[phase:phase + n]:
            pytest.fail("wrong body bytes between offsets %d and %d" % (offset + done,
                                                                      offset + done + n))
        done += n


class SlowClient:
    """One GET of /big?mib=<mib> on its own connection, read only when told to."""

    def __init__(self, port, mib, rcvbuf=None):
        self.length = mib * MIB
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /big?mib=%d HTTP/1.1\r\nHost: x\r\n\r\n" % mib)
        self.buf = b""
        self.head = None
        self.body_read = 0

    def poll_head(self):
        """Reads what is there, without waiting, until the head is complete; True then."""
        self.sock.setblocking(False)
        try:
            while self.head is None:
                try:
                    data = self.sock.recv(4096)
                except BlockingIOError:
                    return False
                assert data, "closed before the head: %r" % self.buf
                self.buf += data
                if b"\r\n\r\n" in self.buf:
                    self.head, _, rest = self.buf.partition(b"\r\n\r\n")
                    assert self.head.startswith(b"HTTP/1.1 200 "), self.head
                    assert b"\r\nContent-Length: %d\r\n" % self.length in self.head + b"\r\n", \
                        self.head
                    check_pattern(rest, 0)
                    self.body_read = len(rest)
            return True
        finally:
            self.sock.setblocking(True)

    def read_all(self, timeout):
        """Reads the rest of the body, checking every byte; fails after <timeout> seconds."""
        deadline = time.monotonic() + timeout
        assert wait_for(self.poll_head, timeout), "no head"
        while self.body_read < self.length:
            left = deadline - time.monotonic()
            assert left > 0, "only %d of %d body bytes within %s s" % (self.body_read,
                                                                     self.length, timeout)
            self.sock.settimeout(left)
            data = self.sock.recv(min(65536, self.length - self.body_read))
            assert data, "closed after %d of %d body bytes" % (self.body_read, self.length)
            check_pattern(data, self.body_read)
            self.body_read += len(data)

    def close(self):
        self.sock.close()


POOL = 2
SLOW_CLIENTS = 4 * POOL
SLOW_MIB = 12      # far more than the kernel's socket buffers hold, so v1 would block a worker
FAST_WITHIN_S = 5.0


def test_slow_readers_hold_no_worker_and_leave_no_temp_file(ferry, big_app):
    """Two workers (--max-pool-size 2 --min-instances 2), eight clients that ask for 12 MiB each
    and read only their heads: a ninth request is answered at once, all eight heads come, and
    once the slow clients have finished (half of them) or left (the others) the core holds no
    temp file and about as many fds as before."""
    f = ferry(big_app, "--max-pool-size", str(POOL), "--min-instances", str(POOL), *QUICK_STOP)
    assert wait_for(lambda: status(f)["pool"]["idle"] == POOL, 20)
    assert requests.get(f.url + "/pid", timeout=20).status_code == 200
    fds_before = fd_count(f.pid)
    temp_before = unlinked_files(f.pid)
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):
            slow.append(SlowClient(f.port, SLOW_MIB))
        # Both workers have taken a slow request (or more).
        assert wait_for(lambda: sum(c.poll_head() for c in slow) >= POOL, 20)
        t0 = time.monotonic()
        try:
            r = requests.get(f.url + "/pid", timeout=FAST_WITHIN_S)
        except requests.exceptions.Timeout:
            pytest.fail("a small request got no answer within %s s: it waits behind %d clients "
                        "that do not read" % (FAST_WITHIN_S, SLOW_CLIENTS))
        assert r.status_code == 200, "after %.1f s" % (time.monotonic() - t0)
        assert wait_for(lambda: all([c.poll_head() for c in slow]), 20), \
            "%d of %d slow clients got a head" % (sum(c.head is not None for c in slow),
                                                  SLOW_CLIENTS)
        for c in slow[:SLOW_CLIENTS // 2]:
            c.read_all(60)
    finally:
        for c in slow:
            c.close()
    # The idle workers' sessions may stay open: one fd each.
    assert wait_for(lambda: unlinked_files(f.pid) == temp_before
                    and fd_count(f.pid) <= fds_before + POOL, 20), \
        "fds before: %d, now: %d; temp files before: %r, now: %r" % (
            fds_before, fd_count(f.pid), temp_before, unlinked_files(f.pid))


BUFFER_MAX_MIB = 1
HUGE_MIB = 64
SLACK_MIB = 6      # frame and read buffers on top of the limit; far below HUGE_MIB


def written_so_far(progress):
    """The app's count of /big bytes written, or None while there is none (or the read met a
    rewrite half done)."""
    try:
        return int(progress.read_text())
    except (OSError, ValueError):
        return None


def wait_worker_paused(progress, timeout=30.0):
    """Waits until the worker has written over 1 MiB of /big (its count in the file
    <progress>) and then nothing more for 20 polls in a row (1 s); returns the count. Fails
    after <timeout> seconds."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while time.monotonic() < deadline:
        written = written_so_far(progress)
        same = same + 1 if written == last else 0
        last = written
        if written is not None and written > MIB and same >= 20:
            return written
        time.sleep(0.05)
    pytest.fail("the worker did not settle within %s s (wrote %s bytes)" % (timeout, last))


def test_response_past_buffer_max_pauses_the_worker_and_arrives_whole(ferry, big_app,
                                                                      tmp_path):
    """One worker (--max-pool-size 1), --response-buffer-max 1: a client that reads nothing of
    64 MiB gets the core to buffer about 1 MiB (memory and temp file), not 64; the worker is
    paused, still busy; then the client reads every byte."""
    progress = tmp_path / "progress"
    f = ferry(big_app, "--max-pool-size", "1", "--min-instances", "1",
              "--response-buffer-max", str(BUFFER_MAX_MIB), *QUICK_STOP,
              env={"SESSION_BIG_PROGRESS": str(progress)})
    with open("/proc/%d/maps" % f.pid) as maps:
        if "libasan" in maps.read():
            pytest.skip("RSS means nothing under ASan (quarantine and redzones)")
    pid = int(requests.get(f.url + "/pid", timeout=20).text)
    rss_before = proc_field("/proc/%d/status" % f.pid, "VmRSS:")
    temp_before = sum(unlinked_files(f.pid).values())
    c = SlowClient(f.port, HUGE_MIB, rcvbuf=65536)
    try:
        written = wait_worker_paused(progress)
        assert written < HUGE_MIB * MIB // 2, \
            "the worker wrote %d bytes: nothing held it back" % written
        pool = status(f)["pool"]
        assert pool["busy"] == 1, pool
        temp = sum(unlinked_files(f.pid).values()) - temp_before
        assert temp <= (BUFFER_MAX_MIB + SLACK_MIB) * MIB, "temp files hold %d bytes" % temp
        rss = proc_field("/proc/%d/status" % f.pid, "VmRSS:") - rss_before
        assert rss <= (BUFFER_MAX_MIB + SLACK_MIB) * 1024, "the core grew by %d KiB" % rss
        c.read_all(120)
    finally:
        c.close()
    assert wait_for(lambda: status(f)["pool"]["busy"] == 0, 20)
    assert int(requests.get(f.url + "/pid", timeout=20).text) == pid
