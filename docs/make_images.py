"""Make the README's chart images from the sample data: .venv/bin/python docs/make_images.py"""

from __future__ import annotations

from pathlib import Path

import vl_convert

import latkit
from latkit import charts
from latkit.analysis import budget

HERE = Path(__file__).parent
ROOT = HERE.parent


def main() -> None:
    wb = latkit.open()
    wb.load(*sorted((ROOT / "sample_data" / "traces").glob("*.otlp.pb")))
    chart = charts.budget_bars(budget.breakdown(wb), target_ms=100)
    (HERE / "budget.png").write_bytes(vl_convert.vegalite_to_png(chart.to_dict(), scale=2))


if __name__ == "__main__":
    main()
