"""A fresh clone has no ../shared/corpus/public: the suite still selects and passes the corpus
tests (on the generated mails), says so in one line at its start, and fails only in CI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS_TESTS = ["tests/parsing/test_parse.py", "tests/parsing/test_charsets.py",
                "tests/parsing/test_parse_stream.py", "tests/inbound/test_pipeline_corpus.py",
                "tests/mail/test_imap.py", "tests/mail/test_pop3.py", "tests/messages/test_browser_charsets.py"]


def _pytest(tmp_path: Path, *args: str, ci: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"}}
    env.update(TENANTMAIL_CORPUS=str(tmp_path / "no-corpus-here"),
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", CELERY_BROKER_URL="filesystem://")
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_corpus_tests_select_and_pass_without_the_public_corpus(tmp_path):
    collected = _pytest(tmp_path, "--collect-only", "-q", *CORPUS_TESTS)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    for path in CORPUS_TESTS:
        assert any(i.startswith(path + "::") for i in ids), f"{path}: nothing selected without the public corpus"
    assert sum("test_charset_shown_as_readable_text[" in i for i in ids) >= 14  # one per generated charset

    run = _pytest(tmp_path, "-q", "-rs", "tests/parsing/test_parse.py", "tests/parsing/test_charsets.py")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert out.count("the public corpus is NOT at") == 1, out[:2000]
    assert out.splitlines()[0].startswith("mail corpus: ") and "no-corpus-here" in out.splitlines()[0]
    assert " passed" in out and "skipped" not in out and "failed" not in out


def test_ci_fails_without_the_public_corpus(tmp_path):
    run = _pytest(tmp_path, "-q", "tests/parsing/test_charsets.py", ci=True)
    assert run.returncode == 1
    assert "CI=true and the public mail corpus is missing at" in run.stdout + run.stderr
    assert " passed" not in run.stdout
