"""CA files (issue 20, item 8): `trusted_ca_file: path` beside `trusted_ca` (read at apply
time, relative to the YAML file), PEM stored with one line end, exported as a block scalar."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import InboundConnection, OutboundConnection, Tenant
from connections.services.setup import config

from .test_applying import ENV, PEM

pytestmark = pytest.mark.django_db

FILE = """
tenants:
  - slug: acme
    name: ACME Corp
    outbound:
      - name: relay
        host: relay.acme.example
        authentication: none
        from: noreply@acme.example
        {ca}
"""


def _apply(tmp_path, monkeypatch, ca_line: str) -> tuple[str, str]:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "conf" / "tenantmail.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(FILE.format(ca=ca_line))
    out, err = io.StringIO(), io.StringIO()
    call_command("apply_config", str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_trusted_ca_file_is_read_at_apply_time_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "conf" / "certs").mkdir(parents=True)
    (tmp_path / "conf" / "certs" / "acme-ca.pem").write_bytes(PEM.replace("\n", "\r\n").encode())
    _apply(tmp_path, monkeypatch, "trusted_ca_file: certs/acme-ca.pem")
    stored = OutboundConnection.objects.get().trusted_ca
    assert stored == PEM and "\r" not in stored  # one line end
    exported = config.dump(config.export())
    assert "trusted_ca: |\n" in exported and "\\r" not in exported and '"-----BEGIN' not in exported
    assert config.load(exported)["tenants"][0]["outbound"][0]["trusted_ca"] == PEM
    # The file changed on disk: applying again reads it again.
    (tmp_path / "conf" / "certs" / "acme-ca.pem").write_text("")
    with pytest.raises(CommandError):
        _apply(tmp_path, monkeypatch, "trusted_ca_file: certs/acme-ca.pem")
    assert OutboundConnection.objects.get().trusted_ca == PEM  # nothing was changed


@pytest.mark.parametrize("ca_line, message", [
    ("trusted_ca_file: certs/missing.pem", "tenants[0].outbound[0].trusted_ca_file: cannot read "),
    ("trusted_ca_file: ''", "tenants[0].outbound[0].trusted_ca_file: expected the path of a PEM file"),
    ("trusted_ca_file: x.pem\n        trusted_ca: |\n          " + PEM.replace("\n", "\n          ").rstrip(),
     "tenants[0].outbound[0].trusted_ca_file: give trusted_ca or trusted_ca_file, not both"),
])
def test_ca_file_errors_have_their_line(tmp_path, monkeypatch, ca_line, message):
    with pytest.raises(CommandError) as info:
        _apply(tmp_path, monkeypatch, ca_line)
    assert info.value.returncode == 1
    path = tmp_path / "conf" / "tenantmail.yaml"
    line = next(i + 1 for i, text in enumerate(path.read_text().splitlines()) if "trusted_ca_file" in text)
    stderr = io.StringIO()  # the errors are listed on stderr, FILE:LINE: first
    with pytest.raises(CommandError):
        call_command("apply_config", str(path), stderr=stderr)
    assert stderr.getvalue().startswith(f"{path}:{line}: {message}"), stderr.getvalue()
    assert not Tenant.objects.exists()


def test_pasted_crlf_pem_is_stored_with_one_line_end():
    tenant = Tenant.objects.create(slug="acme", name="ACME")
    conn = InboundConnection.objects.create(tenant=tenant, name="in", host="h",
                                            trusted_ca=PEM.replace("\n", "\r\n") + "  \r\n\r\n")
    conn.refresh_from_db()
    assert conn.trusted_ca == PEM
    assert "trusted_ca: |\n" in config.dump(config.export())
