"""The servers `make bench` compares, each with the configuration it is measured in.

Every server gets 2 worker processes (Puma's single mode: 1 process, 16 threads, by the issue's
request), listens on 127.0.0.1 only, logs to its temp dir, and serves the same app logic from
bench/apps/. A spec's prepare() writes whatever config the server needs into a fresh temp dir
and returns (argv, env, cwd); run.py starts that in a new session and stops it by pid.
"""

import os
import shutil

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(BENCH_DIR, "apps")
WORKERS = 2

NGINX_COMMON = """daemon off;
master_process on;
worker_processes {workers};
{user_line}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 40000;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_max_body_size 16m;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{locations}
    }}
}}
"""

RETURN_200 = """        location = /hello {{ default_type text/plain; return 200 "hello world\\n"; }}
        location / {{ return 404; }}"""

FASTCGI = """        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_pass unix:{tmp}/fcgi.sock;
        }}"""


def _user_line():
    return "user root;" if os.geteuid() == 0 else ""


def _nginx_conf(tmp, port, locations):
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    conf = NGINX_COMMON.format(workers=WORKERS, user_line=_user_line(), tmp=tmp, port=port,
                               locations=locations.format(tmp=tmp))
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


class Spec:
    """One server configuration.

    name: row name (stable: benchlib.evaluate_targets uses it); interface: c, wsgi or rack;
    config: one line for the report; needs: executables that must exist, with the Debian
    package that brings each; routes: which workloads it serves (hello, 1m, echo);
    start_timeout_s: launch -> first 200 limit."""

    def __init__(self, name, interface, config, needs, prepare, routes=("hello", "1m", "echo"),
                 start_timeout_s=30.0, quick=False, requires=None):
        self.name = name
        self.interface = interface
        self.config = config
        self.needs = needs
        self.prepare = prepare
        self.routes = routes
        self.start_timeout_s = start_timeout_s
        self.quick = quick
        self.requires = requires  # callable: a reason it cannot run (a ferry option), or None

    def missing(self):
        """A reason this spec cannot run here (missing executable/package, or an option this
        ferry does not have), or None."""
        if self.requires:
            why = self.requires()
            if why:
                return why
        for exe, pkg in self.needs:
            if os.path.isabs(exe):
                if not os.path.exists(exe):
                    return "%s not found (package %s)" % (exe, pkg)
            elif shutil.which(exe) is None:
                return "%s not found (package %s)" % (exe, pkg)
        return None


def option_missing(ctx, option):
    """Why this ferry cannot take --<option> (it is not in `ferry start --help`), or None.
    ctx['ferry_options'] is the set of option names run.py read from that help; without a ferry
    binary the reason is that one."""
    if not ctx.get("ferry_bin"):
        return ctx.get("ferry_reason") or "ferry not built"
    if option not in ctx.get("ferry_options", ()):
        return "this ferry has no --%s option yet" % option
    return None


def ferry_command(ctx, app_dir, port, tmp, workers, extra=()):
    """(argv, env, cwd) of `ferry start APP_DIR` on 127.0.0.1:<port> with <workers> workers,
    all started at boot, and the <extra> flags; TMPDIR=<tmp> (where `ferry status` finds it)."""
    if not ctx.get("ferry_bin"):
        raise RuntimeError(ctx.get("ferry_reason") or "ferry not built")
    if not app_dir:
        raise RuntimeError(ctx.get("ferry_c_reason") or "app not built")
    e = dict(os.environ)
    e["TMPDIR"] = tmp
    # Debian's Python, as gunicorn and uwsgi run here, whatever python3 comes first on PATH.
    e.setdefault("FERRY_PYTHON", "/usr/bin/python3")
    # As gunicorn and the others run here: as the user that runs the bench (root: no switch).
    if os.geteuid() == 0:
        e.setdefault("FERRY_USER", "root")
    return [ctx["ferry_bin"], "start", app_dir, "--address", "127.0.0.1",
            "--port", str(port), "--environment", "production",
            "--max-pool-size", str(workers), "--min-instances", str(workers)] + list(extra), e, tmp


def nginx_fcgi_command(ctx, port, tmp, fcgi_workers):
    """(argv, env, cwd) of nginx (2 workers) in front of <fcgi_workers> processes of the libfcgi
    app (spawn-fcgi -F N on a Unix socket in <tmp>)."""
    if not ctx.get("fcgi_app"):
        raise RuntimeError(ctx.get("fcgi_reason") or "FastCGI app not built")
    conf = _nginx_conf(tmp, port, FASTCGI)
    sock = os.path.join(tmp, "fcgi.sock")
    script = ('spawn-fcgi -s "$1" -M 0600 -F %d -- "$2" >/dev/null && '
              'exec nginx -p "$3" -c "$4" -e "$3/error.log"' % fcgi_workers)
    return ["sh", "-c", script, "sh", sock, ctx["fcgi_app"], tmp, conf], dict(os.environ), tmp


def passenger_command(app_src, port, tmp, workers, spawn_method):
    """(argv, env, cwd) of Passenger Standalone (builtin engine, offline) serving a copy of the
    Rack app in <app_src> (Passenger writes into the app dir; the repo stays clean) on
    127.0.0.1:<port> with <workers> processes (--min-instances: Passenger starts them soon after
    launch, or the first for the first request), --spawn-method <spawn_method> (smart or
    direct)."""
    app = os.path.join(tmp, "app")
    shutil.copytree(app_src, app)
    return ["passenger", "start", "--engine", "builtin", "--address", "127.0.0.1",
            "--port", str(port), "--environment", "production",
            "--max-pool-size", str(workers), "--min-instances", str(workers),
            "--spawn-method", spawn_method, "--no-friendly-error-pages",
            "--disable-security-update-check", "--disable-anonymous-telemetry",
            "--log-file", os.path.join(tmp, "passenger.log"),
            "--pid-file", os.path.join(tmp, "passenger.pid"),
            "--instance-registry-dir", tmp], dict(os.environ), app


NGINX_NEEDS = [("nginx", "nginx-light"), ("spawn-fcgi", "spawn-fcgi")]


def specs(ctx):
    """All server specs, in report order. <ctx> holds: ferry_bin, ferry_options (the option
    names of `ferry start --help`), ferry_c_app (dir holding app.so or None), fcgi_app (path of
    the built FastCGI binary or None), and the reasons they are missing (ferry_reason,
    ferry_c_reason, fcgi_reason)."""
    wsgi_dir = os.path.join(APPS, "wsgi")
    rack_dir = os.path.join(APPS, "rack")
    env = dict(os.environ)
    v2_flag = () if option_missing(ctx, "session-protocol") else ("--session-protocol", "2")

    def nginx_return(port, tmp):
        conf = _nginx_conf(tmp, port, RETURN_200)
        return ["nginx", "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")], env, tmp

    def nginx_fcgi(port, tmp):
        return nginx_fcgi_command(ctx, port, tmp, WORKERS)

    def ferry(app_dir_key, fixed_dir=None, extra=()):
        def prepare(port, tmp):
            app_dir = fixed_dir or ctx.get(app_dir_key)
            if not app_dir and ctx.get("ferry_bin"):
                raise RuntimeError(ctx.get("ferry_c_reason") or "app not built")
            return ferry_command(ctx, app_dir, port, tmp, WORKERS, extra)
        return prepare

    def gunicorn(port, tmp):
        return ["gunicorn", "--bind", "127.0.0.1:%d" % port, "--workers", str(WORKERS),
                "--worker-class", "sync", "--backlog", "2048", "--chdir", wsgi_dir,
                "--worker-tmp-dir", tmp, "passenger_wsgi:application"], env, tmp

    def uwsgi_python(port, tmp):
        return ["uwsgi", "--plugins", "python3", "--http-socket", "127.0.0.1:%d" % port,
                "--master", "--processes", str(WORKERS), "--die-on-term", "--need-app",
                "--disable-logging", "--listen", "1024", "--chdir", wsgi_dir,
                "--wsgi-file", os.path.join(wsgi_dir, "passenger_wsgi.py")], env, tmp

    def uwsgi_rack(port, tmp):
        return ["uwsgi", "--plugins", "rack_ruby31", "--http-socket", "127.0.0.1:%d" % port,
                "--master", "--processes", str(WORKERS), "--die-on-term", "--need-app",
                "--disable-logging", "--listen", "1024", "--rb-gc-freq", "100", "--chdir", rack_dir,
                "--rack", os.path.join(rack_dir, "config.ru")], env, tmp

    def puma(workers, threads):
        def prepare(port, tmp):
            argv = ["puma", "-b", "tcp://127.0.0.1:%d?backlog=1024" % port, "-e", "production",
                    "-t", "%d:%d" % (threads, threads)]
            if workers:
                argv += ["-w", str(workers)]
            return argv + [os.path.join(rack_dir, "config.ru")], env, rack_dir
        return prepare

    def unicorn(port, tmp):
        conf = os.path.join(tmp, "unicorn.conf.rb")
        with open(conf, "w") as f:
            f.write('worker_processes %d\nlisten "127.0.0.1:%d", backlog: 1024\n'
                    'pid "%s/unicorn.pid"\n' % (WORKERS, port, tmp))
        return ["unicorn", "-E", "production", "-c", conf,
                os.path.join(rack_dir, "config.ru")], env, rack_dir

    def passenger(port, tmp):
        return passenger_command(rack_dir, port, tmp, WORKERS, "smart")

    return [
        Spec("nginx-return200", "c", "nginx, 2 workers, `return 200` (the machine's ceiling)",
             [("nginx", "nginx-light")], nginx_return, routes=("hello",), quick=True),
        Spec("nginx-fastcgi-c", "c", "nginx 2 workers + libfcgi C app, 2 processes "
             "(spawn-fcgi -F 2, Unix socket)",
             [("nginx", "nginx-light"), ("spawn-fcgi", "spawn-fcgi")], nginx_fcgi),
        Spec("ferry-c", "c", "ferry start, C SDK app.so, --max-pool-size 2 --min-instances 2" + (
             ", --session-protocol 2" if v2_flag else " (this ferry has no --session-protocol)"),
             [], ferry("ferry_c_app", extra=v2_flag), quick=True),
        Spec("ferry-c-v1", "c", "ferry start, C SDK app.so, --max-pool-size 2 --min-instances 2, "
             "--session-protocol 1 (a connection per request)", [],
             ferry("ferry_c_app", extra=("--session-protocol", "1")), quick=True,
             requires=lambda: option_missing(ctx, "session-protocol")),
        Spec("ferry-wsgi", "wsgi", "ferry start, WSGI app, --max-pool-size 2 --min-instances 2",
             [], ferry(None, wsgi_dir), quick=True),
        Spec("ferry-rack", "rack", "ferry start, Rack app, --max-pool-size 2 --min-instances 2",
             [], ferry(None, rack_dir), quick=True),
        Spec("gunicorn-sync", "wsgi", "gunicorn --workers 2 --worker-class sync",
             [("gunicorn", "gunicorn")], gunicorn, quick=True),
        Spec("uwsgi-python", "wsgi", "uWSGI --master --processes 2 --http-socket (python3 "
             "plugin)", [("uwsgi", "uwsgi"), ("/usr/lib/uwsgi/plugins/python3_plugin.so",
                                               "uwsgi-plugin-python3")], uwsgi_python),
        Spec("uwsgi-rack", "rack", "uWSGI --master --processes 2 --http-socket --rb-gc-freq 100 (rack_ruby31 "
             "plugin)", [("uwsgi", "uwsgi"), ("/usr/lib/uwsgi/plugins/rack_ruby31_plugin.so",
                                               "uwsgi-plugin-rack-ruby3.1")], uwsgi_rack),
        Spec("puma-2x1", "rack", "Puma cluster: -w 2 -t 1:1", [("puma", "puma")],
             puma(2, 1)),
        Spec("puma-0x16", "rack", "Puma single mode: -t 16:16 (one process)", [("puma", "puma")],
             puma(0, 16), quick=True),
        Spec("unicorn", "rack", "Unicorn worker_processes 2", [("unicorn", "unicorn")],
             unicorn),
        Spec("passenger-rack", "rack", "Passenger Standalone 6 (builtin engine, offline), "
             "--max-pool-size 2 --min-instances 2, smart spawning",
             [("passenger", "passenger")], passenger, start_timeout_s=60.0),
    ]
