"""Inline SVG charts for the offline report.

The report must open from a file share or an email attachment with no network, so
charts are plain SVG strings built here instead of a JavaScript library from a CDN.
Every data mark carries `data-label`/`data-value` attributes and a `<title>` tooltip,
which keeps the numbers readable by screen readers, browsers' hover and tests alike.
"""

import math
from collections.abc import Sequence
from html import escape

PALETTE = (
    "#2f6db3",
    "#e07b39",
    "#3a9d5d",
    "#c8453c",
    "#8360c3",
    "#8c6d46",
    "#d36fae",
    "#6f7d8c",
    "#b5a22e",
    "#2aa3b5",
)
FONT = "font-family='system-ui, -apple-system, Segoe UI, Roboto, sans-serif'"
_EMPTY_NOTE = "No data for this snapshot."


def color_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _number(value: float) -> str:
    """Compact human number: 1234567 -> 1.23M, 0.0345 -> 0.0345."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    magnitude = abs(value)
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _svg(chart: str, width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' data-chart='{escape(chart)}' role='img' "
        f"aria-label='{escape(label)}' viewBox='0 0 {width} {height}' width='{width}' height='{height}' {FONT}>"
        + "".join(body)
        + "</svg>"
    )


def _empty(chart: str, label: str, note: str = _EMPTY_NOTE) -> str:
    return _svg(
        chart,
        480,
        60,
        label,
        [f"<text x='10' y='35' font-size='14' fill='#666' data-empty='true'>{escape(note)}</text>"],
    )


def bar_chart(
    chart: str,
    label: str,
    items: Sequence[tuple[str, float]],
    colors: Sequence[str] | None = None,
    value_format=_number,
    width: int = 560,
) -> str:
    """Horizontal bars, one per (label, value); negative values extend left of the axis."""
    values = [v for _, v in items if v is not None and not math.isnan(v)]
    if not values:
        return _empty(chart, label)
    row, label_width, value_width = 26, 170, 70
    height = row * len(items) + 16
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0
    plot = width - label_width - value_width
    zero_x = label_width + plot * (0 - low) / span
    body = [f"<line x1='{zero_x:.1f}' x2='{zero_x:.1f}' y1='4' y2='{height - 8}' stroke='#999'/>"]
    for i, (name, value) in enumerate(items):
        y = 8 + i * row
        body.append(
            f"<text x='{label_width - 8}' y='{y + 15}' font-size='12' text-anchor='end'>{escape(str(name))}</text>"
        )
        if value is None or math.isnan(value):
            body.append(f"<text x='{zero_x + 4:.1f}' y='{y + 15}' font-size='12' fill='#888'>n/a</text>")
            continue
        x0 = label_width + plot * (min(value, 0) - low) / span
        bar_width = max(plot * abs(value) / span, 1.0)
        fill = colors[i] if colors else color_for(i)
        shown = value_format(value)
        body.append(
            f"<rect class='bar' x='{x0:.1f}' y='{y + 2}' width='{bar_width:.1f}' height='{row - 8}' fill='{fill}' "
            f"data-label='{escape(str(name))}' data-value='{value:.6g}'><title>{escape(str(name))}: {shown}</title></rect>"
        )
        body.append(
            f"<text x='{x0 + bar_width + 4:.1f}' y='{y + 15}' font-size='12' fill='#333'>{escape(shown)}</text>"
        )
    return _svg(chart, width, height, label, body)


def histogram(chart: str, label: str, values: Sequence[float], bins: int = 30, width: int = 560) -> str:
    """Counts per equal-width bin; the top 1% is folded into the last bin so one whale does not flatten the rest."""
    finite = sorted(v for v in values if v is not None and not math.isnan(v))
    if not finite:
        return _empty(chart, label)
    low = finite[0]
    high = finite[min(len(finite) - 1, int(len(finite) * 0.99))]
    if high <= low:
        high = low + 1.0
    step = (high - low) / bins
    counts = [0] * bins
    for value in finite:
        counts[min(int((value - low) / step), bins - 1)] += 1
    height, left, bottom, top = 240, 50, 40, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(counts)
    bar_w = plot_w / bins
    body = [
        f"<line x1='{left}' x2='{left + plot_w}' y1='{top + plot_h}' y2='{top + plot_h}' stroke='#999'/>",
        f"<text x='{left}' y='{height - 12}' font-size='11'>{escape(_number(low))}</text>",
        f"<text x='{left + plot_w}' y='{height - 12}' font-size='11' text-anchor='end'>"
        f"{escape(_number(high))}+</text>",
        f"<text x='{left - 6}' y='{top + 10}' font-size='11' text-anchor='end'>{peak}</text>",
        f"<text x='{left - 6}' y='{top + plot_h}' font-size='11' text-anchor='end'>0</text>",
    ]
    for i, count in enumerate(counts):
        bar_h = plot_h * count / peak if peak else 0
        start = low + i * step
        body.append(
            f"<rect class='bar' x='{left + i * bar_w + 0.5:.1f}' y='{top + plot_h - bar_h:.1f}' "
            f"width='{max(bar_w - 1, 0.5):.1f}' height='{bar_h:.1f}' fill='{PALETTE[0]}' "
            f"data-label='{start:.4g}-{start + step:.4g}' data-value='{count}'>"
            f"<title>{escape(_number(start))} to {escape(_number(start + step))}: {count} customers</title></rect>"
        )
    return _svg(chart, width, height, label, body)


def heatmap(
    chart: str,
    label: str,
    rows: Sequence[str],
    columns: Sequence[str],
    cells: dict[tuple[str, str], float],
    row_title: str,
    column_title: str,
    cell_size: int = 64,
) -> str:
    """A grid of cells shaded by value (darker = more), with the value written in each cell."""
    if not cells:
        return _empty(chart, label)
    left, top = 70, 30
    width = left + cell_size * len(columns) + 20
    height = top + cell_size * len(rows) + 50
    peak = max(cells.values()) or 1
    body = [
        f"<text x='{left + cell_size * len(columns) / 2}' y='{height - 10}' font-size='12' "
        f"text-anchor='middle'>{escape(column_title)}</text>",
        f"<text x='14' y='{top + cell_size * len(rows) / 2}' font-size='12' text-anchor='middle' "
        f"transform='rotate(-90 14 {top + cell_size * len(rows) / 2})'>{escape(row_title)}</text>",
    ]
    for j, column in enumerate(columns):
        body.append(
            f"<text x='{left + j * cell_size + cell_size / 2}' y='{top + cell_size * len(rows) + 16}' "
            f"font-size='12' text-anchor='middle'>{escape(str(column))}</text>"
        )
    for i, row in enumerate(rows):
        body.append(
            f"<text x='{left - 8}' y='{top + i * cell_size + cell_size / 2 + 4}' font-size='12' "
            f"text-anchor='end'>{escape(str(row))}</text>"
        )
        for j, column in enumerate(columns):
            value = cells.get((row, column), 0)
            intensity = value / peak
            fill = _blend("#f4f7fb", "#1f4e8c", intensity)
            ink = "#fff" if intensity > 0.55 else "#222"
            x, y = left + j * cell_size, top + i * cell_size
            body.append(
                f"<rect class='cell' x='{x}' y='{y}' width='{cell_size - 2}' height='{cell_size - 2}' fill='{fill}' "
                f"data-label='{escape(str(row))}x{escape(str(column))}' data-value='{value:.6g}'>"
                f"<title>{escape(row_title)} {escape(str(row))}, {escape(column_title)} {escape(str(column))}: "
                f"{escape(_number(value))}</title></rect>"
                f"<text x='{x + cell_size / 2 - 1}' y='{y + cell_size / 2 + 4}' font-size='12' fill='{ink}' "
                f"text-anchor='middle'>{escape(_number(value))}</text>"
            )
    return _svg(chart, width, height, label, body)


def _blend(light: str, dark: str, t: float) -> str:
    a = [int(light[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(dark[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(
        f"{round(x + (y - x) * max(0.0, min(1.0, t))):02x}" for x, y in zip(a, b, strict=True)
    )


def flow_diagram(
    chart: str,
    label: str,
    flows: Sequence[tuple[str, str, int]],
    left_title: str,
    right_title: str,
    segment_colors: dict[str, str],
    width: int = 640,
) -> str:
    """Two-column flow (Sankey) diagram: a band from each source to each target, as thick as its customers."""
    flows = [(a, b, n) for a, b, n in flows if n > 0]
    if not flows:
        return _empty(chart, label)
    sources = sorted({a for a, _, _ in flows}, key=_flow_order)
    targets = sorted({b for _, b, _ in flows}, key=_flow_order)
    total = sum(n for _, _, n in flows)
    gap, top, node_w, band_w = 8, 28, 14, 360

    def label_width(names: list[str]) -> int:
        # ~7 px per character at 12 px system-ui: long segment names must not be clipped.
        return 12 + 7 * max(len(f"{name} ({_number(total)})") for name in names)

    left_label, right_label = label_width(sources), label_width(targets)
    width = max(width, left_label + band_w + 2 * node_w + right_label)
    height = 420
    scale = (height - top - 10 - gap * (max(len(sources), len(targets)) - 1)) / total
    left_x = left_label
    right_x = left_x + node_w + band_w

    def layout(names: list[str], side: int) -> dict[str, float]:
        y, positions = float(top), {}
        for name in names:
            positions[name] = y
            y += sum(n for a, b, n in flows if (a if side == 0 else b) == name) * scale + gap
        return positions

    source_y, target_y = layout(sources, 0), layout(targets, 1)
    body = [
        f"<text x='{left_x}' y='16' font-size='12' font-weight='600'>{escape(left_title)}</text>",
        f"<text x='{right_x + node_w}' y='16' font-size='12' font-weight='600' text-anchor='end'>"
        f"{escape(right_title)}</text>",
    ]
    out_offset = dict.fromkeys(sources, 0.0)
    in_offset = dict.fromkeys(targets, 0.0)
    for a, b, n in sorted(flows, key=lambda f: (_flow_order(f[0]), _flow_order(f[1]))):
        thickness = n * scale
        y0 = source_y[a] + out_offset[a] + thickness / 2
        y1 = target_y[b] + in_offset[b] + thickness / 2
        out_offset[a] += thickness
        in_offset[b] += thickness
        x0, x1 = left_x + node_w, right_x
        middle = (x0 + x1) / 2
        body.append(
            f"<path class='flow' d='M{x0:.1f},{y0:.1f} C{middle:.1f},{y0:.1f} {middle:.1f},{y1:.1f} {x1:.1f},{y1:.1f}' "
            f"stroke='{segment_colors.get(a, '#999')}' stroke-opacity='0.45' stroke-width='{max(thickness, 1):.1f}' "
            f"fill='none' data-label='{escape(a)} to {escape(b)}' data-value='{n}'>"
            f"<title>{escape(a)} to {escape(b)}: {n} customers</title></path>"
        )
    for names, positions, x, anchor, text_x in (
        (sources, source_y, left_x, "end", left_x - 6),
        (targets, target_y, right_x, "start", right_x + node_w + 6),
    ):
        for name in names:
            size = sum(n for a, b, n in flows if (a if x == left_x else b) == name)
            body.append(
                f"<rect class='node' x='{x}' y='{positions[name]:.1f}' width='{node_w}' height='{max(size * scale, 1):.1f}' "
                f"fill='{segment_colors.get(name, '#999')}' data-label='{escape(name)}' data-value='{size}'>"
                f"<title>{escape(name)}: {size} customers</title></rect>"
                f"<text x='{text_x}' y='{positions[name] + size * scale / 2 + 4:.1f}' font-size='12' "
                f"text-anchor='{anchor}'>{escape(name)} ({_number(size)})</text>"
            )
    return _svg(chart, width, height, label, body)


def _flow_order(name: str) -> tuple[int, str]:
    return (1 if name.startswith("(") else 0, name)


def interval_chart(
    chart: str,
    label: str,
    items: Sequence[tuple[str, float, float, float]],
    value_format=_number,
    width: int = 560,
    empty_note: str = _EMPTY_NOTE,
) -> str:
    """Point estimates with confidence-interval bars against a zero line: does the interval exclude 0?"""
    finite = [i for i in items if not any(v is None or math.isnan(v) for v in i[1:])]
    if not finite:
        return _empty(chart, label, empty_note)
    row, label_w, right_pad = 30, 170, 20
    height = row * len(items) + 40
    low = min(0.0, *(i[2] for i in finite))
    high = max(0.0, *(i[3] for i in finite))
    pad = (high - low) * 0.08 or 1.0
    low, high = low - pad, high + pad
    plot = width - label_w - right_pad

    def x_of(value: float) -> float:
        return label_w + plot * (value - low) / (high - low)

    zero = x_of(0.0)
    body = [
        f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='6' y2='{height - 28}' stroke='#999' stroke-dasharray='4 3'/>",
        f"<text x='{zero:.1f}' y='{height - 12}' font-size='11' text-anchor='middle'>0</text>",
        f"<text x='{label_w}' y='{height - 12}' font-size='11'>{escape(value_format(low))}</text>",
        f"<text x='{width - right_pad}' y='{height - 12}' font-size='11' text-anchor='end'>"
        f"{escape(value_format(high))}</text>",
    ]
    for i, (name, estimate, lower, upper) in enumerate(items):
        y = 10 + i * row + row / 2
        body.append(
            f"<text x='{label_w - 8}' y='{y + 4}' font-size='12' text-anchor='end'>{escape(str(name))}</text>"
        )
        if any(v is None or math.isnan(v) for v in (estimate, lower, upper)):
            body.append(f"<text x='{zero + 6:.1f}' y='{y + 4}' font-size='12' fill='#888'>pending</text>")
            continue
        significant = lower > 0 or upper < 0
        ink = ("#2e7d32" if estimate > 0 else "#c62828") if significant else "#555"
        text = f"{name}: {value_format(estimate)} (95% CI {value_format(lower)} to {value_format(upper)})"
        body.append(
            f"<g class='interval' data-label='{escape(str(name))}' data-value='{estimate:.6g}' "
            f"data-low='{lower:.6g}' data-high='{upper:.6g}'><title>{escape(text)}</title>"
            f"<line x1='{x_of(lower):.1f}' x2='{x_of(upper):.1f}' y1='{y}' y2='{y}' stroke='{ink}' stroke-width='3'/>"
            f"<line x1='{x_of(lower):.1f}' x2='{x_of(lower):.1f}' y1='{y - 6}' y2='{y + 6}' stroke='{ink}' stroke-width='2'/>"
            f"<line x1='{x_of(upper):.1f}' x2='{x_of(upper):.1f}' y1='{y - 6}' y2='{y + 6}' stroke='{ink}' stroke-width='2'/>"
            f"<circle cx='{x_of(estimate):.1f}' cy='{y}' r='5' fill='{ink}'/></g>"
        )
    return _svg(chart, width, height, label, body)
