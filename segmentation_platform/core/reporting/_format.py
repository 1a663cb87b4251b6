"""Formatting shared by the report's sections: numbers, HTML tables, segment colours."""

import math
from html import escape

import pandas as pd

from segmentation_platform.core.reporting import _charts as charts
from segmentation_platform.core.reporting._data import ReportData


def missing(value) -> bool:
    return (
        value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))
    )


def fmt(value, kind: str = "number") -> str:
    if missing(value):
        return "—"
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "points":
        return f"{value * 100:+.1f} pp"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return charts._number(float(value))


def html_table(frame: pd.DataFrame, columns: list[tuple[str, str, str]], table_id: str) -> str:
    """`columns` = (column, heading, kind)."""
    if frame.empty:
        return "<p class='empty'>No rows for this snapshot.</p>"
    head = "".join(f"<th>{escape(heading)}</th>" for _, heading, _ in columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = []
        for column, _, kind in columns:
            value = record.get(column)
            text = escape(str(value)) if kind == "text" and not missing(value) else escape(fmt(value, kind))
            cells.append(f"<td class='{'text' if kind == 'text' else 'num'}'>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def segment_colors(data: ReportData) -> dict[str, str]:
    names = set()
    for frame, columns in (
        (data.segment_kpis, ["action_segment"]),
        (data.migration, ["from_segment", "to_segment"]),
        (data.lift, ["action_segment"]),
    ):
        for column in columns:
            if column in frame.columns:
                names.update(str(v) for v in frame[column].dropna())
    ordered = sorted(n for n in names if not n.startswith("("))
    colors = {name: charts.color_for(i) for i, name in enumerate(ordered)}
    colors.update({n: "#9e9e9e" for n in names if n.startswith("(")})
    return colors
