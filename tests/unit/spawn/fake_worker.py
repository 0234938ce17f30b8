#!/usr/bin/python3
"""A stand-in for `ferry worker` that misbehaves on purpose, so the spawn handshake's error paths
can be tested. Invoked as `fake_worker.py worker APP_ROOT [--type TYPE]`; the last path component
of APP_ROOT picks the behaviour. fd 3 is the owner pipe, fd 4 the control channel."""
import os
import struct
import sys
import time

SECRET = "0123456789abcdef0123456789abcdef"


def array(*items):
    payload = b"".join(i.encode() + b"\0" for i in items)
    return struct.pack(">H", len(payload)) + payload


def send(data):
    os.write(4, data)


def wait_owner():
    # Exits when the owner closes its end, like a real worker.
    while os.read(3, 1):
        pass
    sys.exit(0)


def fake_preloader(case):
    """A preloader (docs/protocol.md §5.4) that answers one spawn request wrongly: <case>
    preloader_noowner sends a worker's ready without the owner pipe's fd first; preloader_close
    closes the request without a byte."""
    import socket
    name = "fake-preloader.%d" % os.getpid()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen(5)
    send(array("ready", str(os.getpid()), "abstract:" + name, SECRET, "preloader"))
    conn, _ = srv.accept()
    (n,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
    conn.recv(n, socket.MSG_WAITALL)                      # the password
    (n,) = struct.unpack(">H", conn.recv(2, socket.MSG_WAITALL))
    conn.recv(n, socket.MSG_WAITALL)                      # ["spawn"]
    for _ in range(2):                                    # stdout, stderr
        _, fds, _, _ = socket.recv_fds(conn, 1, 1)
        for fd in fds:
            os.close(fd)
    if case == "preloader_noowner":
        conn.sendall(array("ready", str(os.getpid()), "abstract:fake.%d" % os.getpid(), SECRET,
                           "2"))
    conn.close()
    wait_owner()


def main():
    case = os.path.basename(sys.argv[2].rstrip("/"))
    if case.startswith("preloader_"):
        fake_preloader(case)
    elif case == "ready":
        print("hello stdout", flush=True)
        sys.stderr.write("hello stderr\n")
        sys.stderr.flush()
        print("env FERRY_ENV=%s FERRY_INSTANCE_DIR=%s FERRY_OWNER_FD=%s FERRY_CONTROL_FD=%s "
              "FERRY_APP_ROOT=%s FERRY_APP_TYPE=%s argv=%s" % (
                  os.environ.get("FERRY_ENV"), os.environ.get("FERRY_INSTANCE_DIR"),
                  os.environ.get("FERRY_OWNER_FD"), os.environ.get("FERRY_CONTROL_FD"),
                  os.environ.get("FERRY_APP_ROOT"), os.environ.get("FERRY_APP_TYPE"),
                  ",".join(sys.argv[1:])), flush=True)
        send(array("ready", str(os.getpid()), "abstract:fake.%d" % os.getpid(), SECRET))
        wait_owner()
    elif case == "longline":
        sys.stdout.write("x" * 10000 + "\n")
        sys.stdout.write("no newline at the end")
        sys.stdout.flush()
        send(array("ready", str(os.getpid()), "unix:/tmp/fake.sock", SECRET))
        wait_owner()
    elif case == "error":
        sys.stderr.write("loading the app\n")
        sys.stderr.flush()
        send(array("error", "boom: the app failed", "line one\nline two"))
        sys.exit(1)
    elif case == "ready_then_exit":
        send(array("ready", str(os.getpid()), "abstract:fake.%d" % os.getpid(), SECRET))
        time.sleep(0.05)
        sys.stderr.write("crashing right after boot\n")
        sys.stderr.flush()
        sys.exit(1)
    elif case == "error_stay":
        send(array("error", "stays after its error", ""))
        time.sleep(30)
    elif case == "exit3":
        sys.stderr.write("first line\nthe last words\n")
        sys.stderr.flush()
        sys.exit(3)
    elif case == "hang":
        time.sleep(30)
    elif case == "badpid":
        send(array("ready", "12x", "abstract:fake", SECRET))
        time.sleep(30)
    elif case == "badaddr":
        send(array("ready", str(os.getpid()), "tcp:127.0.0.1:1", SECRET))
        time.sleep(30)
    elif case == "badsecret":
        send(array("ready", str(os.getpid()), "abstract:fake", "0123"))
        time.sleep(30)
    elif case == "ready_v2":
        send(array("ready", str(os.getpid()), "abstract:fake.%d" % os.getpid(), SECRET, "2"))
        wait_owner()
    elif case == "ready_v9":
        send(array("ready", str(os.getpid()), "abstract:fake.%d" % os.getpid(), SECRET, "9", "x"))
        wait_owner()
    elif case == "shortready":
        send(array("ready", str(os.getpid()), "abstract:fake"))
        time.sleep(30)
    elif case == "unknown":
        send(array("hello", "there"))
        time.sleep(30)
    elif case == "garbage":
        send(struct.pack(">H", 3) + b"abc")
        time.sleep(30)
    elif case == "truncated":
        send(struct.pack(">H", 10) + b"rea")
        os.close(4)
        sys.exit(0)
    elif case == "closectl":
        os.close(4)
        time.sleep(30)
    elif case == "ignore_usr1":
        import signal
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        send(array("ready", str(os.getpid()), "abstract:fake.%d" % os.getpid(), SECRET))
        time.sleep(30)
    else:
        sys.stderr.write("fake_worker: unknown case %s\n" % case)
        sys.exit(2)


if __name__ == "__main__":
    main()
