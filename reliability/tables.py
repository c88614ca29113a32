"""The metrics table as text: report rows rendered through report.COLUMNS, for the CLI and the dashboard.

Pure functions: rows (plain dicts, rates as fractions 0..1) in, headers, cells and aligned text out.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from reliability.report import COLUMNS, NOTE, PERCENT, RGI


def table_headers(setup: Sequence[str] = ()) -> list[str]:
    """The headers of the text and dashboard tables: `setup` columns, then COLUMNS."""
    return [*setup, *(c.label for c in COLUMNS)]


def table_cells(row: Mapping[str, Any], bound_digits: int = 1, missing: str = "-") -> list[str]:
    """One row's cells in COLUMNS order: rates in percent with their intervals, RGI with its label."""
    cells = []
    for column in COLUMNS:
        if column.format == PERCENT:
            cells.append(percent_cell(row, column.key, bound_digits, missing))
        elif column.format == RGI:
            cells.append(rgi_cell(row, column.key, missing))
        elif column.format == NOTE:
            cells.append(row.get(f"{column.key}_why") or "")
        else:
            cells.append(str(row[column.key]))
    return cells


def format_table(rows: Sequence[Mapping[str, Any]], setup: Sequence[str] = ()) -> str:
    """The rows as aligned text: rates in percent with their intervals, RGI with its label.

    :param setup: extra leading columns present in the rows (e.g. "model", "condition")
    """
    header = table_headers(setup)
    lines = [header] + [[str(r[c]) for c in setup] + table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def percent_cell(row: Mapping[str, Any], name: str, bound_digits: int = 1, missing: str = "-") -> str:
    """A rate as "76.0 [60.0, 92.0]" (percent, with its interval where there is one)."""
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if value is None:
        return missing
    text = f"{100 * value:.1f}"
    return text + (f" [{100 * low:.{bound_digits}f}, {100 * high:.{bound_digits}f}]" if low is not None and high is not None else "")


def rgi_cell(row: Mapping[str, Any], name: str = "rgi", missing: str = "-") -> str:
    """RGI's label ("0.27", "+inf (no conservatism)") with its interval when both ends are finite numbers."""
    if not row[f"{name}_label"]:
        return missing
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    finite = value is not None and math.isfinite(value) and low is not None and high is not None
    return row[f"{name}_label"] + (f" [{low:.2f}, {high:.2f}]" if finite else "")
