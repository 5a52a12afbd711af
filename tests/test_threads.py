"""A failure inside a test's thread fails the test."""

from __future__ import annotations

import pytest

from tests.threads import run_in_threads


def test_an_assertion_in_a_thread_reaches_the_main_thread():
    def fails() -> None:
        assert 1 + 1 == 3, "wrong inside the thread"

    with pytest.raises(AssertionError, match="wrong inside the thread"):
        run_in_threads([lambda: None, fails])


def test_an_exception_in_a_bare_thread_fails_the_test(tmp_path):
    """With the project's pytest settings, a test whose plain Thread raised fails."""
    import subprocess
    import sys
    from pathlib import Path

    test = tmp_path / "test_bare_thread.py"
    test.write_text(
        "import threading\n"
        "def test_thread():\n"
        "    t = threading.Thread(target=lambda: 1 / 0)\n"
        "    t.start()\n"
        "    t.join()\n"
    )
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:playwright",
            "-c",
            str(pyproject),
            "--rootdir",
            str(tmp_path),
            str(test),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout
