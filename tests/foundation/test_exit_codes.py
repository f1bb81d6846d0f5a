"""Every command: exit 0 success, 1 failure or problems found, 2 usage error or unknown
tenant/connection — with one wording for an unknown tenant (README, "Exit status")."""
from __future__ import annotations

import sys

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError

from connections.models import Tenant

pytestmark = pytest.mark.django_db


def run(capsys, name: str, *args: str) -> tuple[int, str]:
    """The command as `manage.py` runs it from the shell (BaseCommand.run_from_argv, without
    its closing of the database connections): (exit status, stdout + stderr)."""
    command = load_command_class(get_commands()[name], name)
    command._called_from_command_line = True
    parser = command.create_parser("manage.py", name)
    try:
        options = vars(parser.parse_args(args))
        command.execute(*options.pop("args", ()), **options)
        code = 0
    except CommandError as exc:
        print(f"CommandError: {exc}", file=sys.stderr)
        code = exc.returncode
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


UNKNOWN_TENANT = [
    ["test_connection", "nope", "orders"],
    ["check_setup", "nope"],
    ["poll_mailbox", "nope", "orders"],
    ["export_config", "nope"],
    ["export_messages", "nope", "orders", "--out", "/tmp/never-written"],
    ["send_message", "nope", "orders", "--to", "a@example.test", "--subject", "s", "--body", "b"],
]


@pytest.mark.smoke
@pytest.mark.parametrize("argv", UNKNOWN_TENANT, ids=lambda a: a[0])
def test_unknown_tenant_exits_2_with_one_wording(capsys, argv):
    code, out = run(capsys, *argv)
    assert code == 2, out
    assert "No tenant with slug 'nope'." in out


@pytest.mark.parametrize("argv", [
    ["test_connection", "acme", "orders"],
    ["poll_mailbox", "acme", "orders"],
    ["export_messages", "acme", "orders", "--out", "/tmp/never-written"],
    ["send_message", "acme", "orders", "--to", "a@example.test", "--subject", "s", "--body", "b"],
], ids=lambda a: a[0])
def test_unknown_connection_exits_2(capsys, argv):
    Tenant.objects.create(slug="acme", name="ACME")
    code, out = run(capsys, *argv)
    assert code == 2, out
    assert "orders" in out


@pytest.mark.parametrize("argv", [
    ["poll_mailbox", "acme"],                       # missing argument
    ["check_setup", "--no-such-option"],
    ["test_connection", "acme"],                    # neither a name nor --all
    ["apply_config", "/nonexistent/tenantmail.yaml"],
    ["sweep_orphan_files", "--older-than", "0.1"],
], ids=lambda a: " ".join(a[:2]))
def test_usage_errors_exit_2(capsys, argv):
    Tenant.objects.create(slug="acme", name="ACME")
    code, out = run(capsys, *argv)
    assert code == 2, out


def test_success_and_problems(capsys, tmp_path):
    assert run(capsys, "check_setup")[0] == 0
    Tenant.objects.create(slug="acme", name="ACME")
    assert run(capsys, "export_config", "acme")[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants:\n  - slug: acme\n    name: ACME\n    bogus_key: 1\n")
    code, out = run(capsys, "apply_config", str(bad))
    assert code == 1, out  # problems found in the file
