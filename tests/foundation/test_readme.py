"""The README's commands and example stay true."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


@pytest.mark.django_db
def test_readme_config_example_applies(tmp_path, monkeypatch):
    example = re.search(r"```yaml\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "tenantmail.yaml"
    path.write_text(example)
    monkeypatch.setenv("ACME_MAILBOX_PASSWORD", "readme-example-pw")
    out = io.StringIO()
    call_command("apply_config", str(path), stdout=out)
    from connections.models import InboundConnection, UserCredential

    assert InboundConnection.objects.get(tenant__slug="acme", name="orders").credential_name == "acme-mailbox"
    assert UserCredential.objects.get(tenant__slug="acme", name="acme-mailbox").version == 1


def test_readme_names_the_commands_that_exist():
    assert "./scripts/run" in README and "./scripts/test" in README
    for script in ("scripts/run", "scripts/test", ".ci/run"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
    commands = set(re.findall(r"python manage\.py (\w+)", README))
    available = {p.stem for p in (ROOT / "connections" / "management" / "commands").glob("*.py")}
    available |= {"migrate", "collectstatic", "createsuperuser", "check"}
    assert commands and commands <= available, commands - available
    for doc in re.findall(r"\]\((docs/[\w.-]+\.md)\)", README):
        assert (ROOT / doc).is_file(), doc
