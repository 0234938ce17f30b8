"""Slow and idle clients: hundreds of connections that never send a byte neither stop the server
from serving others nor cost a read buffer each, and are closed silently (no 408) after the
header timeout. ferry raises its soft open-file limit to the hard limit at start."""

import resource
import socket
import time

import pytest
import requests

IDLE = 300


def vm_data_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1])
    raise AssertionError("no VmData in /proc/%d/status" % pid)


def nofile_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError("no open-file limit in /proc/%d/limits" % pid)


@pytest.fixture
def enough_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE + 200
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("RLIMIT_NOFILE hard limit %d is below %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_neither_block_others_nor_hold_buffers(ferry, conformance_app,
                                                                 enough_fds):
    f = ferry(conformance_app("wsgi"), "--header-timeout", "3")
    assert requests.get(f.url + "/hello", timeout=20).status_code == 200
    before = vm_data_kib(f.pid)
    idle = []
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", f.port), timeout=5))
        opened = time.monotonic()
        # the others are served while the idle ones wait
        with requests.Session() as s:
            for _ in range(20):
                r = s.get(f.url + "/hello", timeout=10)
                assert (r.status_code, r.text) == (200, "hello world\n")
        # a buffer of 64 KiB each would be 19 MiB here; a connection's state is a few KiB
        grown = vm_data_kib(f.pid) - before
        assert grown < 6 * 1024, "VmData grew by %d KiB for %d idle connections" % (grown, IDLE)
        # after the header timeout every idle connection is closed, with no response
        for sock in idle:
            sock.settimeout(max(0.1, opened + 8 - time.monotonic()))
            assert sock.recv(100) == b""
        assert time.monotonic() - opened >= 2.5
    finally:
        for sock in idle:
            sock.close()
    r = requests.get(f.url + "/hello", timeout=10)
    assert r.status_code == 200


def test_ferry_raises_its_open_file_limit_to_the_hard_limit(ferry, conformance_app):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit %d leaves nothing to raise" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))   # inherited by ferry
    try:
        f = ferry(conformance_app("wsgi"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    got_soft, got_hard = nofile_limits(f.pid)
    want = "1048576" if hard == resource.RLIM_INFINITY else str(min(hard, 1048576))
    assert got_soft == want, (got_soft, got_hard)
    assert "open-file limit raised" in f.log()
