"""The adversarial sandbox suite: every attack is contained, reported with its kind, and
the host stays up. Limits are short so the suite is quick."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from speechlm.monitor.rule import Rule, RuleFileError, extract_code
from speechlm.monitor.sandbox import SandboxLimits, check_source, run_rule

LIMITS = SandboxLimits(cpu_s=1, wall_s=8, memory_mb=200)
VALUES = np.sin(np.arange(500) / 10.0)
VALUES[250] = 9.0
STAMPS = 1.4e9 + 300.0 * np.arange(500)
SERIES = [(VALUES, STAMPS)]

GOOD = """import numpy as np

def detect(values, timestamps):
    z = np.abs(values - np.nanmean(values)) / (np.nanstd(values) + 1e-9)
    return z > 4
"""

ESCAPE = """def detect(values, timestamps):
    for c in ().__class__.__base__.__subclasses__():
        if c.__name__ == '_wrap_close':
            g = c.__init__.__globals__
            rc = g['system']('touch {marker}')
            g['open']('{marker}', 0o101)  # os.open(path, O_WRONLY | O_CREAT)
            raise ValueError('system: %r, and open worked' % rc)
    raise ValueError('not found')
"""


def test_good_rule_runs_on_every_series():
    r = run_rule(GOOD, [SERIES[0], (VALUES[:50], STAMPS[:50])], LIMITS)
    assert r.ok and r.kind == "ok", r.error
    assert np.flatnonzero(r.masks[0]).tolist() == [250]
    assert r.masks[1].shape == (50,) and not r.masks[1].any()


# (name, source, expected kind, words in the error)
ATTACKS = [
    ("infinite_loop", "def detect(v, t):\n    while True:\n        pass\n", "cpu_time", "CPU"),
    ("huge_numpy_alloc", "import numpy as np\ndef detect(v, t):\n    a = np.ones(10**9)\n"
     "    return v > 0\n", "memory", "memory"),
    ("huge_list_alloc", "def detect(v, t):\n    a = [1] * 10**9\n    return v > 0\n",
     "memory", "memory"),
    ("import_os", "import os\ndef detect(v, t):\n    return os.listdir('/')\n", "rejected",
     "'os'"),
    ("from_import", "from subprocess import run\ndef detect(v, t):\n    return v > 0\n",
     "rejected", "only numpy"),
    ("open", "def detect(v, t):\n    open('/etc/passwd').read()\n    return v > 0\n",
     "rejected", "'open'"),
    ("dunder_import", "def detect(v, t):\n    __import__('os').system('true')\n"
     "    return v > 0\n", "rejected", "'__import__'"),
    ("attribute_tricks", "def detect(v, t):\n    return ().__class__.__base__.__subclasses__()\n",
     "rejected", "'__class__'"),
    ("numpy_file_io", "import numpy as np\ndef detect(v, t):\n    np.save('/tmp/x', v)\n"
     "    return v > 0\n", "rejected", "'save'"),
    ("eval", "def detect(v, t):\n    return eval('v > 0')\n", "rejected", "'eval'"),
    ("format_trick", "def detect(v, t):\n    '{0.__class__}'.format(v)\n    return v > 0\n",
     "rejected", "'format'"),
    ("fork", "import os\ndef detect(v, t):\n    os.fork()\n    return v > 0\n", "rejected",
     "'os'"),
    ("exception", "def detect(v, t):\n    return 1 / 0\n", "exception",
     "ZeroDivisionError: division by zero (rule line 2)"),
    ("recursion", "def detect(v, t):\n    return detect(v, t)\n", "exception", "RecursionError"),
    ("wrong_shape", "def detect(v, t):\n    return v[:-1] > 0\n", "bad_output", "shape (499,)"),
    ("wrong_dtype", "def detect(v, t):\n    return v\n", "bad_output", "dtype float64"),
    ("scalar", "def detect(v, t):\n    return True\n", "bad_output", "shape ()"),
    ("no_detect", "import numpy as np\ndef find(v):\n    return v > 0\n", "rejected", "'detect"),
    ("syntax", "def detect(v, t)\n    return v\n", "rejected", "syntax error"),
]


@pytest.mark.parametrize("name,source,kind,words", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_contained_and_reported(name, source, kind, words):
    r = run_rule(source, SERIES, LIMITS)
    assert not r.ok and r.masks is None
    assert r.kind == kind, (r.kind, r.error)
    assert words in r.error


def test_wall_limit_kills_the_process_group():
    start = time.perf_counter()
    r = run_rule("def detect(v, t):\n    while True:\n        pass\n", SERIES,
                 SandboxLimits(cpu_s=30, wall_s=1.0, memory_mb=200))
    assert r.kind == "wall_time" and "1 s" in r.error
    assert time.perf_counter() - start < 10  # killed, not waited for


def test_nan_input_is_passed_through_and_output_checked():
    values = VALUES.copy()
    values[::7] = np.nan
    ok = run_rule(GOOD, [(values, STAMPS)], LIMITS)
    assert ok.ok and not ok.masks[0][::7].any()  # NaN compares False
    # a rule that returns NaN where it should return booleans is refused
    bad = run_rule("import numpy as np\ndef detect(v, t):\n    return np.where(v > 1, 1.0, v)\n",
                   [(values, STAMPS)], LIMITS)
    assert bad.kind == "bad_output" and "only 0/1" in bad.error


# With the AST check off, the run-time layers alone still contain each attack.
def test_runtime_import_guard_without_ast_check():
    r = run_rule("import os\ndef detect(v, t):\n    return v > 0\n", SERIES, LIMITS,
                 _check_ast=False)
    assert r.kind == "exception" and "import of 'os' is not allowed" in r.error


def test_runtime_builtins_without_ast_check():
    r = run_rule("def detect(v, t):\n    return open('/etc/hostname').read()\n", SERIES, LIMITS,
                 _check_ast=False)
    assert r.kind == "exception" and "NameError" in r.error


def test_runtime_limits_stop_an_escape_to_os(tmp_path):
    marker = tmp_path / "escaped"
    os.chmod(tmp_path, 0o777)  # were the child allowed to write, nobody could write here
    r = run_rule(ESCAPE.replace("{marker}", str(marker)), SERIES, LIMITS, _check_ast=False)
    assert r.kind == "exception", r.error
    # system() cannot fork (RLIMIT_NPROC 0) and open() gets no fd (RLIMIT_NOFILE)
    assert "Too many open files" in r.error
    assert not marker.exists()


def test_runtime_fork_is_refused():
    src = ("def detect(v, t):\n    for c in ().__class__.__base__.__subclasses__():\n"
           "        if c.__name__ == '_wrap_close':\n"
           "            c.__init__.__globals__['fork']()\n    return v > 0\n")
    r = run_rule(src, SERIES, LIMITS, _check_ast=False)
    assert r.kind == "exception" and "Resource temporarily unavailable" in r.error


def test_check_source_lists_every_reason():
    reasons = check_source("import os\nimport socket\ndef detect(v, t):\n    return v\n")
    assert len(reasons) == 2


def test_rule_file_round_trip_and_tamper(tmp_path):
    rule = Rule.from_source(GOOD, {"author": "human", "train_f1": 0.5})
    path = rule.save(tmp_path)
    assert path.name == f"rule-{rule.sha256[:12]}.rule.json"
    assert Rule.load(path) == rule
    path.write_text(path.read_text().replace("z > 4", "z > 5"))
    with pytest.raises(RuleFileError, match="does not match its sha256"):
        Rule.load(path)


def test_extract_code_takes_the_fence_and_aliases_a_renamed_function():
    text = ("Here is the rule:\n```python\nimport numpy as np\n\n"
            "def detect_outliers(values, timestamps):\n    return values > 3\n```\nDone.")
    code = extract_code(text)
    assert code.startswith("import numpy as np") and "detect = detect_outliers" in code
    assert check_source(code) == []
