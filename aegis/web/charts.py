"""Inline SVG charts, drawn on the server: a page shows them without any script.

Every text that goes into a chart (a day, a job id, a tooltip) is escaped here, and the
result is marked safe for the templates. Colours come from classes the page's stylesheet
sets (``chart-*``), so the charts follow its light and dark themes and the
Content-Security-Policy needs no inline style. Pure functions of their data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 960
AXIS_W = 56  # room for the y-axis labels of the column chart
LEGEND_H = 22
PLOT_H = 140
LABELS_H = 22
BAR_LABEL_W = 180  # room for the job ids of the bar chart
BAR_H = 9
BAR_GAP = 3
ROW_GAP = 10


@dataclass(frozen=True)
class Series:
    """One coloured set of values: a column per label, or a bar per row."""

    name: str
    css: str  # the stylesheet's class for it: chart-restarts, chart-escalations...
    values: tuple[float, ...]


def count_text(value: float) -> str:
    return f"{value:.0f}"


def nice_max(value: float) -> float:
    """The axis top: the smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        top = step * 10.0 ** exponent
        if top >= value * (1 - 1e-9):
            return float(top)
    return float(10.0 ** (exponent + 1))  # not reached: 10 x 10^e >= value


def _svg(height: float, title: str, body: list[str]) -> Markup:
    label = escape(title)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" '
        f'height="{height:.0f}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>{"".join(body)}</svg>')


def _legend(series: Sequence[Series], x: float) -> list[str]:
    parts = []
    for item in series:
        parts.append(f'<rect class="{escape(item.css)}" x="{x:.1f}" y="4" width="12" '
                     f'height="12"/><text class="chart-legend" x="{x + 16:.1f}" y="14">'
                     f'{escape(item.name)}</text>')
        x += 28 + 7 * len(item.name)
    return parts


# what the chart says, by keyword: title, unit, how often a label shows, what it says empty
def columns(labels: Sequence[str], series: Sequence[Series], *,  # noqa: PLR0913
            title: str, unit: Callable[[float], str] = count_text, label_every: int = 1,
            empty: str = "nothing in this period") -> Markup:
    """Grouped columns: a group per label (a day, a run), a column per series in it."""
    highest = max((v for item in series for v in item.values), default=0.0)
    top = nice_max(highest)
    plot_w = WIDTH - AXIS_W - 8
    group_w = plot_w / max(len(labels), 1)
    column_w = max(1.0, group_w * 0.8 / max(len(series), 1))
    base_y = LEGEND_H + PLOT_H
    body = _legend(series, AXIS_W)
    for fraction in (0.0, 0.5, 1.0):
        if fraction == 0.5 and unit is count_text and not (top / 2).is_integer():
            continue  # no gridline at half a restart
        y = base_y - fraction * PLOT_H
        body.append(f'<line class="chart-grid" x1="{AXIS_W}" y1="{y:.1f}" '
                    f'x2="{WIDTH - 8}" y2="{y:.1f}"/><text class="chart-axis" '
                    f'x="{AXIS_W - 6}" y="{y + 4:.1f}" text-anchor="end">'
                    f'{escape(unit(top * fraction))}</text>')
    for i, label in enumerate(labels):
        x = AXIS_W + i * group_w + group_w * 0.1
        for item in series:
            value = item.values[i]
            height = value / top * PLOT_H
            if value > 0:
                body.append(f'<rect class="{escape(item.css)}" x="{x:.1f}" '
                            f'y="{base_y - height:.1f}" width="{column_w:.1f}" '
                            f'height="{height:.1f}"><title>{escape(label)}: '
                            f'{escape(item.name)} {escape(unit(value))}</title></rect>')
            x += column_w
        if (len(labels) - 1 - i) % label_every == 0:  # counted from the last: today
            # the first and last labels end at the plot's edges, the others are centred
            x, anchor = AXIS_W + (i + 0.5) * group_w, "middle"
            if len(labels) > 1 and i == 0:
                x, anchor = AXIS_W + i * group_w, "start"
            elif len(labels) > 1 and i == len(labels) - 1:
                x, anchor = AXIS_W + (i + 1) * group_w, "end"
            body.append(f'<text class="chart-axis" x="{x:.1f}" y="{base_y + 16}" '
                        f'text-anchor="{anchor}">{escape(label)}</text>')
    if highest <= 0:
        body.append(f'<text class="chart-empty" x="{AXIS_W + plot_w / 2:.1f}" '
                    f'y="{base_y - PLOT_H / 2:.1f}" text-anchor="middle">{escape(empty)}'
                    '</text>')
    return _svg(LEGEND_H + PLOT_H + LABELS_H, title, body)


def bars(labels: Sequence[str], series: Sequence[Series], *, title: str,
         unit: Callable[[float], str] = count_text, empty: str = "nothing in this period"
         ) -> Markup:
    """Horizontal bars: a row per label (a job), a bar per series in it."""
    highest = max((v for item in series for v in item.values), default=0.0)
    top = nice_max(highest)
    plot_w = WIDTH - BAR_LABEL_W - 80
    row_h = len(series) * (BAR_H + BAR_GAP) + ROW_GAP
    body = _legend(series, BAR_LABEL_W)
    y = float(LEGEND_H + 4)
    for i, label in enumerate(labels):
        shown = label if len(label) <= 26 else label[:25] + "…"
        body.append(f'<text class="chart-axis" x="{BAR_LABEL_W - 8}" '
                    f'y="{y + row_h / 2 - 2:.1f}" text-anchor="end">{escape(shown)}</text>')
        for item in series:
            value = item.values[i]
            width = value / top * plot_w
            body.append(f'<rect class="{escape(item.css)}" x="{BAR_LABEL_W}" y="{y:.1f}" '
                        f'width="{max(width, 1.0):.1f}" height="{BAR_H}"><title>'
                        f'{escape(label)}: {escape(item.name)} {escape(unit(value))}'
                        f'</title></rect><text class="chart-value" '
                        f'x="{BAR_LABEL_W + max(width, 1.0) + 4:.1f}" y="{y + BAR_H - 1:.1f}">'
                        f'{escape(unit(value))}</text>')
            y += BAR_H + BAR_GAP
        y += ROW_GAP
    if not labels:
        body.append(f'<text class="chart-empty" x="{WIDTH / 2:.1f}" y="{y + 14:.1f}" '
                    f'text-anchor="middle">{escape(empty)}</text>')
        y += 24
    return _svg(y + 4, title, body)
