"""Histogram rows count per bucket (one bucket row per observation) and /metrics shows
Prometheus's cumulative buckets; migration 0013 converts rows written cumulatively before it
without changing what /metrics shows, and back."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from connections.models import MetricCounter
from connections.services.monitoring import metrics

pytestmark = pytest.mark.django_db(transaction=True)
NAME = "tenantmail_poll_duration_seconds"


def _rows() -> dict[tuple[str, str], float]:
    return {(r.name, r.labels): r.value for r in MetricCounter.objects.filter(name__startswith=NAME)}


def _exposed() -> list[str]:
    text = metrics.exposition()[0].decode()
    return [line for line in text.splitlines() if line.startswith(NAME)]


def test_an_observation_writes_two_rows_and_the_exposition_is_cumulative():
    metrics.count_poll(outcome="success", stored=0, bytes_stored=0, duration_s=0.3)
    metrics.count_poll(outcome="success", stored=0, bytes_stored=0, duration_s=4.0)
    metrics.count_poll(outcome="success", stored=0, bytes_stored=0, duration_s=999.0)
    assert _rows() == {(f"{NAME}_sum", ""): pytest.approx(1003.3), (f"{NAME}_bucket", 'le="0.5"'): 1.0,
                       (f"{NAME}_bucket", 'le="5.0"'): 1.0, (f"{NAME}_bucket", 'le="+Inf"'): 1.0}
    lines = _exposed()
    assert f'{NAME}_bucket{{le="0.1"}} 0.0' in lines
    assert f'{NAME}_bucket{{le="0.5"}} 1.0' in lines
    assert f'{NAME}_bucket{{le="2.5"}} 1.0' in lines
    assert f'{NAME}_bucket{{le="5.0"}} 2.0' in lines
    assert f'{NAME}_bucket{{le="300.0"}} 2.0' in lines
    assert f'{NAME}_bucket{{le="+Inf"}} 3.0' in lines
    assert f"{NAME}_count 3.0" in lines


def _migrate(target: str) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("connections", target)])


def test_migration_converts_cumulative_rows_and_back():
    _migrate("0012_search_words")
    try:
        cumulative = {"0.1": 0, "0.5": 2, "1.0": 3, "2.5": 3, "5.0": 5, "10.0": 5, "30.0": 5, "60.0": 5, "300.0": 6}
        for le, value in cumulative.items():
            MetricCounter.objects.create(name=f"{NAME}_bucket", labels=f'le="{le}"', value=value)
        MetricCounter.objects.create(name=f"{NAME}_count", labels="", value=7)
        MetricCounter.objects.create(name=f"{NAME}_sum", labels="", value=42.0)
        _migrate("0013_metric_buckets_per_bucket")
        rows = _rows()
        assert (f"{NAME}_count", "") not in rows
        assert {le: rows[(f"{NAME}_bucket", f'le="{le}"')] for le in ("0.1", "0.5", "1.0", "5.0", "300.0", "+Inf")} == {
            "0.1": 0, "0.5": 2, "1.0": 1, "5.0": 2, "300.0": 1, "+Inf": 1}
        lines = _exposed()
        for le, value in cumulative.items():
            assert f'{NAME}_bucket{{le="{le}"}} {float(value)}' in lines
        assert f'{NAME}_bucket{{le="+Inf"}} 7.0' in lines and f"{NAME}_sum 42.0" in lines

        _migrate("0012_search_words")
        rows = _rows()
        assert rows[(f"{NAME}_count", "")] == 7 and (f"{NAME}_bucket", 'le="+Inf"') not in rows
        assert {le: rows[(f"{NAME}_bucket", f'le="{le}"')] for le in cumulative} == cumulative
    finally:
        MetricCounter.objects.all().delete()
        _migrate(_latest())  # not 0013: the later migrations' tables are needed by the tests that follow


def _latest() -> str:
    loader = MigrationExecutor(connection).loader
    [(_, name)] = loader.graph.leaf_nodes("connections")
    return name
