"""``python -m latkit``: the ``latkit`` command."""

from __future__ import annotations

from latkit.cli import main

main(prog_name="latkit")
