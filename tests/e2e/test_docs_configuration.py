"""docs/configuration.md cannot drift from the code: its option table lists exactly the options
of `ferry start --help`, with the same environment variable, ferry.json key and default; its
ranges and choices are the ones ferry enforces; its example ferry.json loads; and the error
messages it quotes are the ones ferry prints."""

import json
import os
import re
import subprocess

import pytest

from conftest import REPO

DOC = os.path.join(REPO, "docs", "configuration.md")


def run_start(ferry_bin, *args, env=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    full.update(env or {})
    return subprocess.run([ferry_bin, "start", *args], capture_output=True, text=True, timeout=10,
                          env=full, stdin=subprocess.DEVNULL)


def help_options(ferry_bin):
    """{flag: (env, default)} from `ferry start --help`, without --help itself."""
    r = run_start(ferry_bin, "--help")
    assert r.returncode == 0, r.stderr
    found = {}
    lines = r.stdout.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  (--[a-z-]+) ", line)
        if not m or m.group(1) == "--help":
            continue
        d = re.search(r"\(default: (.*); env (FERRY_[A-Z_]+)\)$", lines[i + 1])
        assert d, "no default line after %s: %r" % (m.group(1), lines[i + 1])
        found[m.group(1)] = (d.group(2), d.group(1))
    return found


def doc_rows():
    """{flag: {env, key, default, values, meaning}} from the docs' option table."""
    rows = {}
    with open(DOC) as f:
        for line in f:
            if not line.startswith("| `--"):
                continue
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            assert len(cells) == 6, line
            flag = cells[0].strip("`")
            assert flag not in rows, "%s is documented twice" % flag
            rows[flag] = {"env": cells[1].strip("`"), "key": cells[2].strip("`"),
                          "default": cells[3], "values": cells[4], "meaning": cells[5]}
    return rows


def test_table_documents_exactly_the_options_of_help(ferry_bin):
    documented = set(doc_rows())
    in_help = set(help_options(ferry_bin))
    assert documented - in_help == set(), "documented but not in --help"
    assert in_help - documented == set(), "in --help but not documented"


def test_environment_variable_key_and_default_match_help(ferry_bin):
    rows = doc_rows()
    for flag, (env, default) in help_options(ferry_bin).items():
        row = rows[flag]
        assert row["env"] == env, flag
        assert row["key"] == flag[2:].replace("-", "_"), flag
        want = "*empty*" if default == "none" else "`%s`" % default
        assert row["default"] == want, flag
        assert row["meaning"], flag


def test_help_flag_is_mentioned(ferry_bin):
    with open(DOC) as f:
        text = f.read()
    assert "`--help` (`-h`)" in text


SUFFIX = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def parse_bound(text):
    if text == "2^63-1":
        return 2 ** 63 - 1
    m = re.fullmatch(r"(\d+)([kmg]?)", text)
    assert m, text
    return int(m.group(1)) * SUFFIX[m.group(2)]


def ranged_rows():
    out = []
    for flag, row in doc_rows().items():
        m = re.match(r"^(?:size, )?(\d+)\.\.(\S+?)(?: seconds)?(?:,|$)", row["values"])
        if m:
            out.append((flag, int(m.group(1)), parse_bound(m.group(2))))
    return out


def test_every_numeric_option_has_a_documented_range():
    ranged = {flag for flag, _, _ in ranged_rows()}
    for flag, row in doc_rows().items():
        if re.fullmatch(r"`\d+[kmg]?`", row["default"]):
            assert flag in ranged, flag


@pytest.mark.parametrize("flag,low,high", ranged_rows())
def test_documented_range_is_enforced(ferry_bin, tmp_path, flag, low, high):
    # min-instances is bounded by max-pool-size too; lift that bound while probing its range
    extra = ["--max-pool-size", "10000"] if flag == "--min-instances" else []
    r = run_start(ferry_bin, str(tmp_path), flag, str(high + 1), *extra)
    assert r.returncode == 2
    assert "%s: %d is out of range (%d..%d)" % (flag, high + 1, low, high) in r.stderr, r.stderr
    if low > 0:
        r = run_start(ferry_bin, str(tmp_path), flag, str(low - 1), *extra)
        assert r.returncode == 2
        assert "out of range (%d..%d)" % (low, high) in r.stderr, r.stderr


@pytest.mark.parametrize("flag", ["--environment", "--app-type"])
def test_documented_choices_are_the_accepted_ones(ferry_bin, tmp_path, flag):
    choices = re.findall(r"`([a-z]+)`", doc_rows()[flag]["values"])
    r = run_start(ferry_bin, str(tmp_path), flag, "no-such-choice")
    assert r.returncode == 2
    assert "is not one of %s" % "|".join(choices) in r.stderr, r.stderr


def test_documented_log_levels_are_the_accepted_ones(ferry_bin, tmp_path):
    levels = re.findall(r"`([a-z]+)`", doc_rows()["--log-level"]["values"])
    r = run_start(ferry_bin, str(tmp_path), "--log-level", "loud")
    assert r.returncode == 2
    assert "(%s)" % ", ".join(levels) in r.stderr, r.stderr


def example_json():
    with open(DOC) as f:
        text = f.read()
    m = re.search(r"## An example ferry.json\n\n```json\n(.*?)```", text, re.S)
    assert m
    return m.group(1)


def test_example_ferry_json_loads(ferry_bin, tmp_path):
    example = json.loads(example_json())
    (tmp_path / "ferry.json").write_text(example_json())
    # Everything in the file is valid when the only error is the cross-check made after all
    # sources are merged, which names max_pool_size as the file set it.
    too_many = str(example["max_pool_size"] + 1)
    r = run_start(ferry_bin, str(tmp_path), "--min-instances", too_many)
    assert r.returncode == 2
    assert r.stderr.strip() == "ferry start: min-instances (%s) is larger than max-pool-size (%d)" % (
        too_many, example["max_pool_size"])


# (arguments, environment, file content, message as quoted in the docs' error table)
QUOTED_ERRORS = [
    (["--frobnicate"], None, None,
     "unknown option '--frobnicate' (see ferry start --help)"),
    (["--port"], None, None, "option '--port' needs a value"),
    (["--port", "abc"], None, None, "--port: 'abc' is not a non-negative integer"),
    (["--port", "70000"], None, None, "--port: 70000 is out of range (1..65535)"),
    (["--max-body-size", "12x"], None, None,
     "--max-body-size: '12x' is not a size (digits with an optional k, m or g)"),
    (["--environment", "staging"], None, None,
     "--environment: 'staging' is not one of production\\|development"),
    (["--log-level", "loud"], None, None,
     "--log-level: 'loud' is not a log level (alert, error, warn, notice, info, debug)"),
    (["--powered-by", "maybe"], None, None, "--powered-by: 'maybe' is not a boolean (true/false)"),
    (["--min-instances", "7"], None, None, "min-instances (7) is larger than max-pool-size (6)"),
    (["--health-path", "healthz"], None, None, "health-path: 'healthz' must start with /"),
    (["--proxy-protocol", "true"], None, None,
     "proxy-protocol: needs --trusted-proxy (the balancers that may send PROXY headers)"),
    ([], {"NOTIFY_SOCKET": "relative/notify"}, None,
     "NOTIFY_SOCKET=relative/notify: not an absolute path nor @name"),
    ([], {"FERRY_MAX_POOL_SIZE": "many"}, None,
     "FERRY_MAX_POOL_SIZE: 'many' is not a non-negative integer"),
    ([], None, '{"port": "abc"}', "/ferry.json: key 'port': 'abc' is not a non-negative integer"),
    ([], None, '{"max_pool_size": 1.5}',
     "/ferry.json: key 'max_pool_size': must be a string, a non-negative integer or a boolean"),
    ([], None, '{"no_such_key": 1}',
     "/ferry.json: unknown key 'no_such_key' (see ferry start --help)"),
    ([], None, '[1]', "/ferry.json: the top level must be an object"),
]


@pytest.mark.parametrize("args,env,content,message", QUOTED_ERRORS)
def test_quoted_error_messages_are_printed(ferry_bin, tmp_path, args, env, content, message):
    with open(DOC) as f:
        assert message in f.read(), "the docs no longer quote: " + message
    if content is not None:
        (tmp_path / "ferry.json").write_text(content)
    r = run_start(ferry_bin, str(tmp_path), *args, env=env)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert message.replace("\\|", "|") in r.stderr, r.stderr
    assert r.stderr.startswith("ferry start: ")


def test_documented_exit_status_1_for_no_app(ferry_bin, tmp_path):
    r = run_start(ferry_bin, str(tmp_path))
    assert r.returncode == 1
    with open(DOC) as f:
        doc = f.read()
    line = r.stderr.strip().replace(str(tmp_path), "/srv/empty")
    assert line in doc, line
