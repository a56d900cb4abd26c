"""examples/python_example.py runs and passes (so that it never rots)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("top_srcdir", os.path.join(HERE, "..", "..", ".."))


def test_python_example(tmp_path):
    env = dict(os.environ)   # KM_LIBRARY as conftest.py set it
    r = subprocess.run([sys.executable, os.path.join(TOP, "examples", "python_example.py"),
                        str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "python_example: all steps passed" in r.stdout
    assert "records (aes-256-gcm)" in r.stdout
