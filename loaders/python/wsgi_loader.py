#!/usr/bin/python3
"""ferry's WSGI loader: loads one WSGI application and hands it to the C worker runtime.

Started by `ferry worker APP_DIR --type wsgi` (or a preloader) as
`/usr/bin/python3 loaders/python/wsgi_loader.py` with the spawn handshake of docs/protocol.md §5
(fd 3 the owner pipe, fd 4 the control channel, FERRY_APP_ROOT, FERRY_ENV, ...) and
FERRY_EXT_DIR, the build's extension directory. Everything a worker does besides loading the
app (the socket, both session protocols, signals, the owner pipe, the environ, wsgi.input,
start_response, the response) is the C extension module `_ferry` (src/ext/python/), built on the
same runtime as native C workers. There is no pure-Python fallback: without the extension the
loader says why on stderr and exits 1. See README.md next to this file.
"""

import errno
import faulthandler
import gc
import importlib.machinery
import importlib.util
import os
import signal
import sys
import traceback

# Where `application` is looked for, in this order.
ENTRY_FILES = ("passenger_wsgi.py", "wsgi.py", "app.py")


def import_extension():
    """Imports _ferry from $FERRY_EXT_DIR/python alone (that directory never joins sys.path, so
    nothing else in it can shadow the app's imports). Exits 1 with one line on stderr when it
    cannot."""
    ext_dir = os.path.join(os.environ.get("FERRY_EXT_DIR", ""), "python")
    why = None
    try:
        spec = importlib.machinery.PathFinder.find_spec("_ferry", [ext_dir])
        if spec is None:
            why = "no _ferry extension module (_ferry.abi3.so) in %s" % ext_dir
        else:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules["_ferry"] = module
            return module
    except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
        why = "%s: %s" % (type(exc).__name__, exc)
    sys.stderr.write("ferry wsgi loader: cannot import the _ferry extension with %s (Python %s):"
                     " %s\n" % (sys.executable, sys.version.split()[0], why))
    sys.stderr.flush()
    sys.exit(1)


class BootError(Exception):
    """The app cannot boot: <summary> is one line for the pool's error page, <details> the
    traceback; <step> names the step that failed (for the log)."""

    def __init__(self, step, summary, details=""):
        super().__init__(summary)
        self.step = step
        self.summary = summary
        self.details = details


def _shown_path(path, app_root):
    try:
        rel = os.path.relpath(path, app_root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def load_application(app_root):
    """Imports `application` from passenger_wsgi.py, else wsgi.py, else app.py in <app_root>
    (which goes first on sys.path and becomes the cwd). Returns (callable, entry file name) or
    raises BootError with a summary that names what went wrong."""
    if not app_root or not os.path.isabs(app_root):
        raise BootError("load_app", "FERRY_APP_ROOT must be an absolute path, got %r"
                        % (app_root,))
    try:
        os.chdir(app_root)
    except OSError as exc:
        raise BootError("load_app", "cannot enter the app root %s: %s"
                        % (app_root, exc.strerror)) from None
    if app_root not in sys.path:
        sys.path.insert(0, app_root)
    for name in ENTRY_FILES:
        path = os.path.join(app_root, name)
        if os.path.isfile(path):
            break
    else:
        raise BootError("load_app", "no %s in %s" % (", ".join(ENTRY_FILES[:-1]) + " or "
                                                      + ENTRY_FILES[-1], app_root))
    module_name = name[:-3]
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        where = _shown_path(exc.filename or path, app_root)
        raise BootError("load_app", "%s in %s line %s: %s"
                        % (type(exc).__name__, where, exc.lineno, exc.msg),
                        traceback.format_exc()) from None
    except ImportError as exc:
        sys.modules.pop(module_name, None)
        summary = str(exc) or "%s while loading %s" % (type(exc).__name__, name)
        raise BootError("load_app", summary, traceback.format_exc()) from None
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise BootError("load_app", "%s while loading %s: %s" % (type(exc).__name__, name, exc),
                        traceback.format_exc()) from None
    application = getattr(module, "application", None)
    if application is None:
        raise BootError("load_app", "%s does not define `application`" % name)
    if not callable(application):
        raise BootError("load_app", "%s defines `application` but it is not callable (%s)"
                        % (name, type(application).__name__))
    return application, name


def main():
    # The loader's own directory must not shadow the app's modules.
    loader_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != loader_dir]
    _ferry = import_extension()
    try:
        _ferry.boot()   # first: SIGTERM and the owner pipe work while the app loads
    except OSError:
        return 1        # reported on the control channel and in the log
    for name in ("FERRY_OWNER_FD", "FERRY_CONTROL_FD"):
        os.environ.pop(name, None)
    try:
        sys.stdout.reconfigure(line_buffering=True)   # the app's print() reaches the log soon
    except (AttributeError, ValueError):
        pass
    # Python tracebacks of every thread on a fatal signal, and on SIGQUIT before the runtime's
    # own line and C stacks (chain=True calls its handler after).
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGQUIT, file=sys.stderr, all_threads=True, chain=True)

    app_root = os.environ.get("FERRY_APP_ROOT", "")
    try:
        application, entry = load_application(app_root)
    except BootError as exc:
        _ferry.log("error", exc.summary, ("app", app_root), ("step", exc.step),
                   detail=exc.details)
        _ferry.fail(exc.summary, exc.details)
        return 1
    if _ferry.preloading():
        status = preload(_ferry)
        if status is not None:
            return status
    return _ferry.serve(application, label="wsgi %s" % entry)


def preload(_ferry):
    """Smart spawning (docs/architecture.md): serves the core's spawn requests, forking one
    worker per request with os.fork(), so os.register_at_fork hooks run as Python documents.
    Returns the preloader's exit status, or None in a forked child, which then serves."""
    # One collection after the load, then everything alive is frozen before each fork: the
    # collector never touches (and so never copies) the pages the workers share.
    gc.collect()
    try:
        _ferry.preload_start()
    except OSError:
        return 1
    while True:
        if not _ferry.preload_wait():
            return 0   # idle time passed (logged); the core starts a new one when needed
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as exc:
            _ferry.preload_forked(-(exc.errno or errno.EAGAIN))
            continue
        if pid != 0:
            _ferry.preload_forked(pid)
            continue
        try:
            _ferry.preload_forked(0)
        except OSError:
            os._exit(1)   # reported on the control channel
        os.environ.pop("FERRY_PRELOAD", None)
        reseed_after_fork()
        return None


def reseed_after_fork():
    """A forked worker must not repeat its siblings' random numbers: Python's `random` (which
    also reseeds itself at fork) and OpenSSL's generator when the app loaded ssl."""
    import random
    random.seed()
    ssl = sys.modules.get("ssl")
    if ssl is not None and hasattr(ssl, "RAND_add"):
        ssl.RAND_add(os.urandom(32), 32.0)


if __name__ == "__main__":
    sys.exit(main())
