"""Histogram rows count per bucket instead of cumulatively (services.monitoring.metrics.observe):
an observation now writes two shared rows instead of up to bounds + 2. The rows written so far
are converted so that /metrics shows the same numbers: each bucket keeps only what the bucket
below it did not count, the observations above the last bound go to le="+Inf", and the _count
row goes (the exposition sums the buckets)."""
from django.db import migrations

# Frozen copies of metrics.HISTOGRAMS' names and bounds at this migration.
HISTOGRAMS = {
    "tenantmail_poll_duration_seconds": (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    "tenantmail_dispatch_lag_seconds": (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
}


def _labels(le: str) -> str:
    return f'le="{le}"'


def to_per_bucket(apps, schema_editor) -> None:
    MetricCounter = apps.get_model("connections", "MetricCounter")
    for name, bounds in HISTOGRAMS.items():
        rows = {r.labels: r for r in MetricCounter.objects.filter(name=f"{name}_bucket")}
        count_row = MetricCounter.objects.filter(name=f"{name}_count", labels="").first()
        if not rows and count_row is None:
            continue  # never observed
        below = 0.0
        for le in [*map(str, bounds), "+Inf"]:
            cumulative = (count_row.value if count_row else below) if le == "+Inf" else (
                rows[_labels(le)].value if _labels(le) in rows else below)
            MetricCounter.objects.update_or_create(name=f"{name}_bucket", labels=_labels(le),
                                                   defaults={"value": cumulative - below})
            below = cumulative
        if count_row:
            count_row.delete()


def to_cumulative(apps, schema_editor) -> None:
    MetricCounter = apps.get_model("connections", "MetricCounter")
    for name, bounds in HISTOGRAMS.items():
        rows = {r.labels: r for r in MetricCounter.objects.filter(name=f"{name}_bucket")}
        if not rows:
            continue
        running = 0.0
        for le in map(str, bounds):
            running += rows[_labels(le)].value if _labels(le) in rows else 0.0
            MetricCounter.objects.update_or_create(name=f"{name}_bucket", labels=_labels(le),
                                                   defaults={"value": running})
        if _labels("+Inf") in rows:
            running += rows[_labels("+Inf")].value
            rows[_labels("+Inf")].delete()
        MetricCounter.objects.update_or_create(name=f"{name}_count", labels="", defaults={"value": running})


class Migration(migrations.Migration):
    dependencies = [("connections", "0012_search_words")]
    operations = [migrations.RunPython(to_per_bucket, to_cumulative)]
