"""latkit against a reference it did not write: pgBadger's JSON report on the same log.

For the top 20 query templates by total duration, latkit's count and total duration per
``fingerprint`` must equal pgBadger's per normalised query. Groups are matched through
pgBadger's sample queries: each sample is a statement as logged (pgBadger adds a ``;`` and
puts bind parameters in place of ``$n``), and latkit's ``fingerprint`` of it names the latkit
group. Several pgBadger groups may fold into one fingerprint where latkit normalises more
(``END`` and ``COMMIT``, ``IN`` lists): their counts and durations are added up.

Where latkit differs from pgBadger, on purpose (tests/fixtures/pglogs/README.md):

- pgBadger counts each auto_explain plan entry (``duration: ... plan:``) as one more query,
  under the plan's "Query Text": with JSON plans as a group of its own (the text keeps a
  ``",`` tail from the JSON), with text plans inside the statement's group. latkit makes a
  ``plans`` row of it, not a query: the statement's own ``duration:`` line is the query. So
  pgBadger's count and total for a template are latkit's queries *plus* its plans, and that
  is what is compared.
- Both count an extended-protocol execution once with its execute duration; latkit also keeps
  the parse and bind durations in ``phase_ms`` (pgBadger adds them to separate totals).

pgBadger is a Debian package (``apt-get install pgbadger``); CI installs it (.ci/run). Without
it the test is skipped here, and fails under CI (``CI`` set), so a missing reference is never
silent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import latkit
from latkit.fingerprint import fingerprint

PGLOGS = Path(__file__).resolve().parents[1] / "fixtures" / "pglogs"
TOP = 20


@pytest.fixture(scope="module")
def pgbadger() -> str:
    path = shutil.which("pgbadger")
    if path is None:
        message = "pgbadger is not installed (apt-get install pgbadger): no reference to compare"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it (.ci/run)")
        pytest.skip(message)
    return path


def pgbadger_groups(pgbadger: str, log: Path, prefix: str, tmp: Path) -> list[dict[str, object]]:
    """pgBadger's normalised queries: count, total duration (ms), samples, plan or not."""
    out = tmp / f"{log.name}.json"
    subprocess.run(
        # a pid dir of our own: pgBadger refuses to run beside another run using /tmp's
        [pgbadger, "-q", "-x", "json", "-o", str(out), "-f", "stderr", "--prefix", prefix,
         "-s", "1000", "--pid-dir", str(tmp), str(log)],
        check=True, capture_output=True, timeout=300,
    )
    report = json.loads(out.read_text())
    groups = []
    for per_db in report["normalyzed_info"].values():
        for normalised, info in per_db.items():
            samples = list(info.get("samples", {}).values())
            groups.append({
                "normalised": normalised,
                "count": int(info["count"]),
                "duration": float(info["duration"]),
                "queries": [s["query"] for s in samples],
                "plan": any(s.get("plan") for s in samples),
            })
    return groups


def compare(pgbadger: str, log: Path, prefix: str, tmp: Path) -> dict[str, object]:
    """latkit's top templates, each as pgBadger should count it: its queries plus its plans."""
    wb = latkit.open()
    wb.load(log)
    ours = wb.sql(f"""
        with q as (
            select fingerprint, any_value(query_template) as template,
                   count(*) as n, sum(duration_ms) as total
            from queries where duration_ms is not null group by fingerprint
        ), p as (
            select fingerprint, count(*) as n, sum(duration_ms) as total
            from plans group by fingerprint
        )
        select q.fingerprint, q.template, q.n, round(q.total, 3),
               coalesce(p.n, 0) as plans, round(q.total + coalesce(p.total, 0), 3)
        from q left join p using (fingerprint)
        order by q.total desc, q.fingerprint limit {TOP}
    """)
    theirs: dict[str, list[float]] = {}
    unmatched = []
    for g in pgbadger_groups(pgbadger, log, prefix, tmp):
        # a JSON plan's "Query Text" comes with the JSON's `",` after it
        fps = {fingerprint(re.sub(r'[\s";,]+$', "", str(q))) for q in g["queries"]}  # type: ignore[attr-defined]
        if len(fps) != 1:
            unmatched.append(g["normalised"])
            continue
        total = theirs.setdefault(fps.pop(), [0, 0.0])
        total[0] += g["count"]  # type: ignore[operator]
        total[1] += g["duration"]  # type: ignore[operator]
    mismatches = []
    for fp, template, n, total, plans, with_plans in ours.rows():
        expected = theirs.get(fp)
        if expected is None or (expected[0], round(expected[1], 3)) != (n + plans, with_plans):
            mismatches.append((template, n, total, plans, expected))
    return {
        "mismatches": mismatches,
        "unmatched": unmatched,
        "compared": ours.height,
        "with_plans": int(ours["plans"].sum()),
    }


def test_top_templates_match_pgbadger_on_the_sample_log(pgbadger: str, tmp_path: Path) -> None:
    result = compare(pgbadger, PGLOGS / "main.log", "%m [%p] ", tmp_path)
    assert result["mismatches"] == []
    assert result["unmatched"] == []
    assert result["compared"] >= 10
    # the auto_explain plans (JSON) that pgBadger counts as queries, and latkit as plans
    assert result["with_plans"] >= 3


def test_signed_literals_group_as_pgbadger_groups_them(pgbadger: str, tmp_path: Path) -> None:
    # pgbench's `abalance + -4121`: both must see one template, whatever the sign
    result = compare(pgbadger, PGLOGS / "pgbench.log.gz", "%m [%p] ", tmp_path)
    assert result["mismatches"] == []
    assert result["unmatched"] == []
    assert result["compared"] >= 8


def test_the_long_prefix_matches_too(pgbadger: str, tmp_path: Path) -> None:
    # ... with auto_explain in text, whose plans pgBadger puts in the statement's own group
    prefix = "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h "
    result = compare(pgbadger, PGLOGS / "prefixed.log.gz", prefix, tmp_path)
    assert result["mismatches"] == []
    assert result["unmatched"] == []
    assert result["with_plans"] >= 3
