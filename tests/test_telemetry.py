"""Metric samples become rates; counter resets are skipped; charts scale to their data."""

from __future__ import annotations

import datetime as dt
import uuid

from slices_blueprint.telemetry.models import VMMetricSample
from slices_blueprint.telemetry.service import rates
from slices_blueprint.web.charts import HEIGHT, WIDTH, chart_start, metric_charts

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
RID = uuid.uuid4()


def sample(seconds: float, cpu: float, rx: int | None, written: int) -> VMMetricSample:
    return VMMetricSample(resource_id=RID, at=T0 + dt.timedelta(seconds=seconds), cpu_seconds=cpu,
                          memory_bytes=200 * 2**20, net_rx_bytes=rx, net_tx_bytes=rx,
                          disk_read_bytes=0, disk_write_bytes=written)


def test_rates_per_interval_skip_restarts_and_missing_counters() -> None:
    samples = [
        sample(0, 10.0, 1000, 0),
        sample(10, 15.0, 21480, 10240),   # 5 CPU s in 10 s on 2 vCPUs: 25 %
        sample(20, 15.5, None, 10240),    # no network counters (user-mode networking)
        sample(30, 0.2, 100, 0),          # the VMM restarted: counters went down
        sample(40, 2.2, 200, 40960),
    ]
    points = rates(samples, vcpus=2)
    assert [p.at for p in points] == [samples[i].at for i in (1, 2, 4)]
    first, second, third = points
    assert first.cpu_percent == 25.0 and first.memory_mib == 200.0
    assert first.net_rx_bytes_per_s == 2048.0 and first.disk_write_bytes_per_s == 1024.0
    assert second.cpu_percent == 2.5 and second.net_rx_bytes_per_s is None
    assert second.disk_write_bytes_per_s == 0.0
    assert third.cpu_percent == 10.0 and third.net_tx_bytes_per_s == 10.0


def test_charts_place_points_in_time_and_scale() -> None:
    points = rates([sample(0, 0, 0, 0), sample(60, 30, 0, 0), sample(120, 60, 0, 0)], vcpus=1)
    now = T0 + dt.timedelta(seconds=180)
    assert chart_start(points, 5, now) == T0 + dt.timedelta(seconds=60)  # younger data fills the width
    assert chart_start(points, 2, now) == T0 + dt.timedelta(seconds=60)
    assert chart_start(points, 1, now) == T0 + dt.timedelta(seconds=120)  # the window cuts it
    charts = {c.title: c for c in metric_charts(points, T0, now=T0 + dt.timedelta(seconds=120))}
    cpu = charts["CPU"]
    assert round(cpu.top, 6) == 55.0  # 50 % with 10 % headroom
    (line,) = cpu.lines
    coords = [tuple(map(float, xy.split(","))) for xy in line.points.split()]
    assert coords == [(WIDTH / 2, round(HEIGHT * (1 - 50 / 55), 1)), (WIDTH, round(HEIGHT * (1 - 50 / 55), 1))]
    assert line.latest == 50.0 and "now used 50.0 %" in cpu.summary
    # the axes: values 0, half, top in the chart's unit; the window's ends in time
    assert cpu.y_ticks == [(f"{HEIGHT:.1f}", "0.0"), (f"{HEIGHT / 2:.1f}", "27.5"), ("0.0", "55.0")]
    assert cpu.unit == "%" and cpu.x_labels == (f"{T0:%H:%M}", f"{T0 + dt.timedelta(seconds=120):%H:%M} UTC")
    assert charts["Network"].lines[0].latest == 0.0
    assert metric_charts([], T0, now=T0) == []
