"""The Grafana dashboard's panels, drawn from a real Prometheus: each panel's queries asked over
a time range (Grafana's variables filled in as it would: every service, a rate window of four
scrapes), each series a line, laid out by the panel's grid position. Grafana itself has no
image here; this shows what its panels show, from the same queries and the same data."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import httpx

COLUMN_PX = 50  # Grafana's grid: 24 columns
ROW_PX = 30
COLOURS = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0")


@dataclass
class Series:
    legend: str
    points: list[tuple[float, float]]


@dataclass
class Panel:
    title: str
    unit: str
    grid: dict[str, int]
    series: list[Series]


def fill_variables(expr: str, scrape_interval_s: float) -> str:
    return expr.replace('=~"$service"', '=~".+"').replace(
        "$__rate_interval", f"{round(4 * scrape_interval_s)}s"
    )


def _legend(template: str | None, labels: dict[str, str]) -> str:
    if not template:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template)


async def query_panels(
    client: httpx.AsyncClient,
    prometheus: str,
    dashboard: dict[str, Any],
    start: float,
    end: float,
    scrape_interval_s: float,
) -> list[Panel]:
    panels = []
    for panel in dashboard["panels"]:
        series = []
        for target in panel.get("targets", []):
            answer = await client.get(
                f"{prometheus}/api/v1/query_range",
                params={
                    "query": fill_variables(target["expr"], scrape_interval_s),
                    "start": start,
                    "end": end,
                    "step": scrape_interval_s / 2,
                },
            )
            answer.raise_for_status()
            for result in answer.json()["data"]["result"]:
                points = [
                    (float(t), float(v))
                    for t, v in result["values"]
                    if v not in ("NaN", "+Inf", "-Inf")
                ]
                if points:
                    series.append(
                        Series(_legend(target.get("legendFormat"), result["metric"]), points)
                    )
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        panels.append(Panel(panel["title"], unit, panel["gridPos"], series))
    return panels


def _tick(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    suffix = {"ops": "/s", "reqps": " req/s"}.get(unit, "")
    return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"


def _svg(panel: Panel, width: int, height: int, start: float, end: float) -> str:
    left, right, top, bottom = 70, 10, 10, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in panel.series for _, v in s.points]
    peak = max(values, default=1.0) or 1.0
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#2c3235"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{html.escape(_tick(peak * i / 4, panel.unit))}</text>"
        )
    for i, series in enumerate(panel.series):
        path = " ".join(
            f"{left + plot_w * (t - start) / (end - start):.1f},"
            f"{top + plot_h - plot_h * v / peak:.1f}"
            for t, v in series.points
        )
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
    if not panel.series:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" '
            'text-anchor="middle">No data</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def page(panels: list[Panel], title: str, start: float, end: float) -> str:
    boxes = []
    for panel in panels:
        g = panel.grid
        width, height = g["w"] * COLUMN_PX, g["h"] * ROW_PX
        legend = "".join(
            f'<span><i style="background:{COLOURS[i % len(COLOURS)]}"></i>'
            f"{html.escape(s.legend)}</span>"
            for i, s in enumerate(panel.series)
        )
        boxes.append(
            f'<div class="panel" style="left:{g["x"] * COLUMN_PX}px;top:{g["y"] * ROW_PX}px;'
            f'width:{width - 8}px;height:{height - 8}px">'
            f"<h2>{html.escape(panel.title)}</h2>"
            f"{_svg(panel, width - 16, height - 80, start, end)}"
            f'<div class="legend">{legend}</div></div>'
        )
    bottom = max((p.grid["y"] + p.grid["h"]) * ROW_PX for p in panels)
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:12px sans-serif; margin:0; }}
header {{ padding:10px 16px; font-size:16px; }}
main {{ position:relative; height:{bottom}px; width:{24 * COLUMN_PX}px; margin:0 8px; }}
.panel {{ position:absolute; background:#181b1f; border:1px solid #2c3235; padding:4px;
  overflow:hidden; }}
h2 {{ font-size:13px; margin:2px 4px 4px; font-weight:500; }}
svg text {{ fill:#8e8e8e; font-size:10px; }}
.legend span {{ margin-right:12px; white-space:nowrap; }}
.legend i {{ display:inline-block; width:12px; height:3px; margin-right:4px;
  vertical-align:middle; }}
</style></head><body><header>{html.escape(title)}</header><main>{"".join(boxes)}</main></body></html>"""
