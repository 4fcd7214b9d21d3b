"""Small server-side SVG charts for the dashboard: a line chart and horizontal rate bars.

Pure functions from numbers to an SVG string. Every chart is `role="img"` with a <title> and
a <desc> that says in words what the picture shows; the page also prints the numbers in a
table, so nobody has to read the picture. Colours pass WCAG AA against white, and series are
also told apart by dash pattern, not colour alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#0b57d0", "#8a5300", "#6a1b9a", "#11661f", "#b3261e")
DASHES = ("", "6 4", "2 3", "10 3 2 3", "1 5")

# One outcome, one look, in every chart: delivered is green and solid, rejected red and
# dashed, wherever they appear.
DELIVERED = ("#11661f", "")
REJECTED = ("#b3261e", "6 4")
SENT = ("#0b57d0", "2 3")

# the widest a character of an 11 px axis label gets (digits, "m", "%"), to leave room
LABEL_CHAR_PX = 7.0


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: no data in that slot (the line breaks)
    style: tuple[str, str] | None = None  # (colour, dash pattern); default: by position


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return 10.0 * exp


def _slug(title: str) -> str:
    return "chart-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _fmt(v: float) -> str:
    # 18.75 reads "18.8", not a rounded "19" next to a "12" that was 12.5
    return f"{v:,.0f}" if v == int(v) or abs(v) >= 100 else f"{v:.3g}"


def line_chart(
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    width: int = 640,
    height: int = 240,
) -> Markup:
    """Lines over time slots. `labels` name the slots (first, middle and last are drawn)."""
    slug = _slug(title)
    n = max(1, len(labels))
    peak = max((float(v) for s in series for v in s.values if v is not None), default=0.0)
    ymax = _nice_max(peak)
    y_labels = [f"{_fmt(ymax * k / 4)}{unit}" for k in range(5)]
    # the y labels end 6 px left of the plot: room for the longest ("0.625 ms" needs more
    # than "100 ms")
    left = max(56, 6 + 4 + math.ceil(LABEL_CHAR_PX * max(map(len, y_labels))))
    right, top, bottom = 12, 12, 44
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph - ph * v / ymax

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{slug}-t {slug}-d" class="chart">',
        f'<title id="{slug}-t">{escape(title)}</title>',
        f'<desc id="{slug}-d">{escape(description)}</desc>',
    ]
    for k, text in enumerate(y_labels):  # grid lines and y labels
        yy = y(ymax * k / 4)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" '
            'stroke="#d0d0d0" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#333">{escape(text)}</text>'
        )
    for i in sorted({0, (n - 1) // 2, n - 1}):
        if i < len(labels):
            # the first and last labels sit inside the plot's edges, so neither is clipped
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            out.append(
                f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="{anchor}" '
                f'font-size="11" fill="#333">{escape(labels[i])}</text>'
            )
    for si, s in enumerate(series):
        colour, dash = s.style or (PALETTE[si % len(PALETTE)], DASHES[si % len(DASHES)])
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        runs: list[list[str]] = [[]]
        for i, point in enumerate(s.values):
            if point is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(point):.1f}")
        for pts in runs:
            if len(pts) == 1:
                cx, cy = pts[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
            elif pts:
                out.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash_attr} '
                    f'points="{" ".join(pts)}"/>'
                )
        lx = left + si * 150
        out.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{height - 10}" y2="{height - 10}" '
            f'stroke="{colour}" stroke-width="3"{dash_attr}/>'
        )
        out.append(
            f'<text x="{lx + 30}" y="{height - 6}" font-size="12" fill="#1a1a1a">'
            f"{escape(s.name)}</text>"
        )
    out.append("</svg>")
    return Markup("".join(out))


LABEL_CHARS = 24  # a bar's label beyond this is cut at its end


def short_label(text: str, tail: str = "") -> str:
    """`text` then `tail` in at most LABEL_CHARS: `text` is cut (…) to keep `tail` whole."""
    room = LABEL_CHARS - len(tail)
    return (text if len(text) <= room else text[: room - 1] + "…") + tail


def rate_bars(
    title: str,
    description: str,
    rows: Sequence[tuple[str, float, float]],
    *,
    width: int = 640,
) -> Markup:
    """One horizontal bar per row, split into delivered and rejected shares (0..1 each);
    the rest of the bar (retrying) stays pale. Rows are (label, delivered, rejected)."""
    slug = _slug(title)
    bar_h, gap, label_w, top = 22, 14, 180, 8
    height = top + len(rows) * (bar_h + gap) + 28
    pw = width - label_w - 96  # room on the right for "100% / 100%"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{slug}-t {slug}-d" class="chart">',
        f'<title id="{slug}-t">{escape(title)}</title>',
        f'<desc id="{slug}-d">{escape(description)}</desc>',
    ]
    for i, (label, ok, bad) in enumerate(rows):
        yy = top + i * (bar_h + gap)
        short = short_label(label)
        out.append(
            f'<text x="{label_w - 8}" y="{yy + 15}" text-anchor="end" font-size="12" '
            f'fill="#1a1a1a">{escape(short)}</text>'
        )
        out.append(
            f'<rect x="{label_w}" y="{yy}" width="{pw}" height="{bar_h}" fill="#eceff3" '
            'stroke="#767676"/>'
        )
        ok_w, bad_w = pw * max(0.0, ok), pw * max(0.0, bad)
        out.append(
            f'<rect x="{label_w}" y="{yy}" width="{ok_w:.1f}" height="{bar_h}" '
            f'fill="{DELIVERED[0]}"/>'
        )
        out.append(
            f'<rect x="{label_w + ok_w:.1f}" y="{yy}" width="{bad_w:.1f}" height="{bar_h}" '
            f'fill="{REJECTED[0]}" fill-opacity="1" stroke="#fff" stroke-dasharray="3 2"/>'
        )
        out.append(
            f'<text x="{label_w + pw + 6}" y="{yy + 15}" font-size="12" fill="#1a1a1a">'
            f"{ok * 100:.0f}% / {bad * 100:.0f}%</text>"
        )
    ly = height - 12
    out.append(f'<rect x="{label_w}" y="{ly - 10}" width="14" height="12" fill="{DELIVERED[0]}"/>')
    out.append(f'<text x="{label_w + 20}" y="{ly}" font-size="12">delivered</text>')
    out.append(
        f'<rect x="{label_w + 110}" y="{ly - 10}" width="14" height="12" fill="{REJECTED[0]}"/>'
    )
    out.append(f'<text x="{label_w + 130}" y="{ly}" font-size="12">rejected</text>')
    out.append(
        f'<rect x="{label_w + 220}" y="{ly - 10}" width="14" height="12" fill="#eceff3" '
        'stroke="#767676"/>'
    )
    out.append(f'<text x="{label_w + 240}" y="{ly}" font-size="12">retrying</text>')
    out.append("</svg>")
    return Markup("".join(out))
