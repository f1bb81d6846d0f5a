"""connections/mail/ is the protocol layer: it must import and run without Django."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import connections.mail

MAIL_DIR = Path(connections.mail.__file__).parent


def test_no_module_mentions_django_imports():
    offenders = []
    for path in sorted(MAIL_DIR.glob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(from|import)\s+django\b", line):
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
    assert offenders == []


def test_package_imports_without_django_loaded():
    # A fresh interpreter, so that nothing the test run imported can hide an import.
    code = (
        "import sys\n"
        "import connections.mail as m\n"
        "from connections.mail import smtp, imap, pop3, probe, tls, errors, settings\n"
        "loaded = sorted(name for name in sys.modules if name == 'django' or name.startswith('django.'))\n"
        "assert not loaded, loaded\n"
        "s = m.MailSettings(protocol='imap', host='127.0.0.1', protection='off')\n"
        "assert s.effective_port == 143\n"
        "print('ok')\n"
    )
    root = MAIL_DIR.parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
