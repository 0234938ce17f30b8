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

import ast
import errno
import faulthandler
import gc
import importlib
import importlib.machinery
import importlib.util
import os
import signal
import sys
import traceback

# Where the app is looked for, in this order, without --app or --startup-file.
ENTRY_FILES = ("passenger_wsgi.py", "wsgi.py", "app.py")
# The callable's names in that file, in this order (`app` is Flask's and FastAPI's habit).
ENTRY_NAMES = ("application", "app")


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


def _run_module_file(path, module_name, app_root):
    """Executes the file <path> as the module <module_name> (registered in sys.modules). Raises
    BootError naming what failed."""
    name = os.path.basename(path)
    try:
        # A source loader of its own: a startup file may end in .wsgi, or in nothing.
        loader = importlib.machinery.SourceFileLoader(module_name, path)
        spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise _load_error(exc, name, path, app_root) from None
    return module


def _load_error(exc, what, path, app_root):
    """The BootError of an exception raised while loading <what> (a file name, or `--app`'s
    module)."""
    if isinstance(exc, SyntaxError):
        where = _shown_path(exc.filename or path, app_root)
        return BootError("load_app", "%s in %s line %s: %s"
                         % (type(exc).__name__, where, exc.lineno, exc.msg),
                         traceback.format_exc())
    if isinstance(exc, ImportError):
        summary = str(exc) or "%s while loading %s" % (type(exc).__name__, what)
        return BootError("load_app", summary, traceback.format_exc())
    return BootError("load_app", "%s while loading %s: %s" % (type(exc).__name__, what, exc),
                     traceback.format_exc())


def _parse_app_spec(spec):
    """Splits --app's MODULE[:EXPR] (gunicorn's form): EXPR is a dotted name, or a call of one
    with literal arguments (an app factory, `create_app()` or `create_app("prod", debug=False)`).
    Returns (module, attribute names, None or (args, kwargs)); raises BootError."""
    module, _, expr = spec.partition(":")
    expr = expr or "application"
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        node = None
    call = None
    if isinstance(node, ast.Call):
        try:
            call = ([ast.literal_eval(a) for a in node.args],
                    {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})
        except ValueError:
            raise BootError("load_app", "--app %s: the arguments of %s must be Python "
                            "literals" % (spec, ast.unparse(node.func))) from None
        if len(call[1]) != len(node.keywords):
            raise BootError("load_app", "--app %s: ** arguments are not supported" % spec)
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not module:
        raise BootError("load_app", "--app %s: not MODULE, MODULE:NAME or MODULE:NAME(ARGS)"
                        % spec)
    names.insert(0, node.id)
    return module, names, call


def _load_app_spec(spec, app_root):
    """The callable --app names: imports MODULE (from the app root first), looks up NAME in it
    and, for NAME(ARGS), calls it. Returns (callable, label); raises BootError."""
    module_name, names, call = _parse_app_spec(spec)
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:
        raise _load_error(exc, module_name, None, app_root) from None
    obj = module
    for i, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise BootError("load_app", "--app %s: %s has no attribute `%s`"
                            % (spec, ".".join([module_name] + names[:i]), name)) from None
    if call is not None:
        try:
            obj = obj(*call[0], **call[1])
        except BaseException as exc:
            raise BootError("load_app", "%s while calling the app factory %s: %s"
                            % (type(exc).__name__, spec.partition(":")[2], exc),
                            traceback.format_exc()) from None
    if not callable(obj):
        raise BootError("load_app", "--app %s is not callable (%s)" % (spec, type(obj).__name__))
    return obj, spec


def load_application(app_root, environ=os.environ):
    """Loads the WSGI callable of the app in <app_root> (which goes first on sys.path and becomes
    the cwd): `--app MODULE:CALLABLE` (FERRY_APP) when set; else the startup file
    (FERRY_STARTUP_FILE), else the first of passenger_wsgi.py, wsgi.py and app.py, whose
    `application`, else `app` (Flask's name), is the callable. Returns (callable, label) or
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
    spec = environ.get("FERRY_APP", "")
    if spec:
        return _load_app_spec(spec, app_root)
    path = environ.get("FERRY_STARTUP_FILE", "")
    if path:
        if not os.path.isfile(path):
            raise BootError("load_app", "the startup file %s is missing" % path)
    else:
        for name in ENTRY_FILES:
            path = os.path.join(app_root, name)
            if os.path.isfile(path):
                break
        else:
            raise BootError("load_app", "no %s in %s" % (", ".join(ENTRY_FILES[:-1]) + " or "
                                                          + ENTRY_FILES[-1], app_root))
    name = _shown_path(path, app_root)
    module = _run_module_file(path, os.path.basename(path).split(".")[0] or "startup_file",
                              app_root)
    for attr in ENTRY_NAMES:
        application = getattr(module, attr, None)
        if application is not None:
            break
    else:
        raise BootError("load_app", "%s defines neither `application` nor `app`" % name)
    if not callable(application):
        raise BootError("load_app", "%s defines `%s` but it is not callable (%s)"
                        % (name, attr, type(application).__name__))
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
    while True:
        if _ferry.preloading():
            status = preload(_ferry)
            if status is not None:
                return status
        status = _ferry.serve(application, label="wsgi %s" % entry)
        if not _ferry.preloading():
            return status
        # A re-fork (docs/architecture.md): this process, forked from a warmed worker, is the
        # app's preloader now, and serves again in each worker it forks.


def preload(_ferry):
    """Smart spawning (docs/architecture.md): serves the core's spawn requests, forking one
    worker per request with os.fork(), so os.register_at_fork hooks run as Python documents.
    Returns the preloader's exit status, or None in a forked child, which then serves."""
    # One collection after the load, then everything alive is frozen before each fork: the
    # collector never touches (and so never copies) the pages the workers share.
    gc.collect()
    ssl = sys.modules.get("ssl")
    if ssl is not None and hasattr(ssl, "RAND_bytes"):
        ssl.RAND_bytes(1)   # OpenSSL's generator is set up once, here, not in every worker
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
    """A forked worker must not repeat its siblings' random numbers. Python's `random` reseeds
    its global generator in a forked child itself (os.register_at_fork) and is seeded again
    here; when the app never imported it there is nothing to reseed. OpenSSL 1.1.1 and later
    reseed their generator in a forked child by themselves; an older one gets fresh entropy
    here. (RAND_add on a newer one cost every spawn ~1.8 ms, docs/performance.md.)"""
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    ssl = sys.modules.get("ssl")
    if (ssl is not None and hasattr(ssl, "RAND_add")
            and getattr(ssl, "OPENSSL_VERSION_INFO", (0,)) < (1, 1, 1)):
        ssl.RAND_add(os.urandom(32), 32.0)


if __name__ == "__main__":
    sys.exit(main())
