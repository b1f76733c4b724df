"""PgBouncer logs: client logins and closes, server connections, and the periodic stats.

PgBouncer (1.x, its ``logfile`` or stderr) writes one line per event::

    2026-01-01 12:00:00.635 UTC [11644] LOG C-0x5632b4e02700: shop/app@10.0.0.7:53096 login attempt: db=shop user=app tls=no
    2026-01-01 12:00:05.652 UTC [11644] LOG C-0x5632b4e02700: shop/app@10.0.0.7:53096 closing because: client close request (age=5s)
    2026-01-01 12:00:00.636 UTC [11644] LOG S-0x5632b4e09de0: shop/app@10.0.0.9:5432 new connection to server (from 10.0.0.8:41234)
    2026-01-01 12:01:00.008 UTC [11644] LOG stats: 1674 xacts/s, 1674 queries/s, in 96890 B/s, out 108838 B/s, xact 501 us, query 501 us, wait 91792 us

Each becomes a ``connections`` row with ``event`` one of ``login``, ``close`` (a client
connection closed), ``server_new``, ``server_close``, ``stats`` and ``start`` (the ``process
up: PgBouncer 1.18.0, ...`` line, whose ``detail`` is the version: the meaning of the stats'
``wait`` changed in 1.24, see ``latkit.analysis.pooling.pool_waits``):

- ``session_id`` is PgBouncer's ``C-0x...`` / ``S-0x...`` pointer. PgBouncer reuses the
  memory of a closed connection, so one pointer names many connections over a log: pair a
  login with its close on ``(session_id, client)``, the next close after the login.
- ``client`` is the client's ``address:port`` for client events, the server's address for
  server events.
- ``session_ms`` is the connection's ``age=`` at close, whole seconds as PgBouncer logs it.
- ``detail`` is the close reason (``client close request``, ``server idle timeout``, ...);
  for ``stats`` it is a JSON object of the line's numbers: ``xacts_per_s``,
  ``queries_per_s``, ``in_bytes_per_s``, ``out_bytes_per_s``, the average ``xact_us``,
  ``query_us`` and ``wait_us`` (time clients waited for a server connection: pool pressure),
  and whatever newer versions add (``client_parses_per_s``, ...).

Other lines (startup, ``listening on``, warnings) are not events and are passed over; a line
without PgBouncer's time / pid / level prefix is rejected with its line number. Times carry
the zone PgBouncer printed: ``UTC``, ``GMT`` or a numeric offset are exact; for a local
abbreviation (``CET``) pass the zone: ``wb.load(path, timezone="Europe/Paris")``.

>>> import latkit
>>> wb = latkit.open()
>>> report = wb.load("tests/fixtures/pgplans/pgbouncer.log")
>>> wb.sql("select count(*) as n from connections where event = 'login'")["n"][0]
8
"""  # noqa: E501

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from latkit.ingest import LoadError, Reject, Rows, Source, excerpt

__all__ = ["CONNECTIONS_STAGING", "FORMAT", "read", "sniff"]

FORMAT = "pgbouncer"

#: What ``read`` yields for the ``connections`` table.
CONNECTIONS_STAGING = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("event", pa.string()),
        ("session_id", pa.string()),
        ("user_name", pa.string()),
        ("database", pa.string()),
        ("client", pa.string()),
        ("session_ms", pa.float64()),
        ("detail", pa.string()),
        ("line", pa.int64()),
    ]
)

#: Lines per batch.
BATCH_LINES = 65_536

# Time, zone, pid (``[123]`` since 1.8, bare before) and level, then the message.
_PREFIX = (
    r"^(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?)"
    r"(?: (?P<tz>[A-Za-z][A-Za-z0-9_+-]*|[+-]\d\d(?::?\d\d)?))? "
    r"\[?(?P<pid>\d+)\]? (?P<level>NOISE|DEBUG|LOG|INFO|WARNING|ERROR|FATAL) (?P<msg>.*)$"
)
_CONNECTION = (
    r"^(?P<side>[CS])-(?P<ptr>0x[0-9a-fA-F]+|\(nil\)): "
    r"(?P<db>[^/ ]*)/(?P<user>[^@ ]*)@(?P<addr>\S+) (?P<rest>.*)$"
)
_CLOSE = r"^closing because: (?P<reason>.*?)(?: \(age=(?P<age>\d+(?:\.\d+)?)s\))?$"
_STATS_RATE = re.compile(r"(\d+) ([a-z][a-z ]*?)/s")
_STATS_BYTES = re.compile(r"\b(in|out) (\d+) B/s")
_STATS_US = re.compile(r"\b(xact|query|wait) (\d+) us")

_VERSION = r"^process up: PgBouncer (?P<v>[0-9][0-9.]*)"

_SNIFF = re.compile(
    _PREFIX[:-len("(?P<msg>.*)$")].encode()
    + rb"(?:[CS]-0x[0-9a-fA-F]+: \S*/\S*@|stats: \d+ xacts/s|process up: PgBouncer)",
    re.MULTILINE,
)
_UTC = {"UTC", "GMT", "Z", "UCT"}


def sniff(head: bytes) -> bool:
    """Whether ``head`` has a PgBouncer log line (a connection, stats or startup line).

    >>> sniff(b"2026-01-01 00:00:01.000 UTC [7] LOG stats: 0 xacts/s, 0 queries/s")
    True
    >>> sniff(b"2026-01-01 00:00:01.000 UTC [7] LOG:  statement: select 1")
    False
    """
    return _SNIFF.search(head) is not None


def read(
    source: Source, timezone: str | None = None, **options: object
) -> Iterator[Rows | Reject]:
    """The events of one PgBouncer log, ``BATCH_LINES`` lines at a time.

    ``timezone`` (an IANA name) is the zone of times logged with a local abbreviation.
    """
    with source.open() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)
        first_line = 1
        while chunk := list(itertools.islice(text, BATCH_LINES)):
            lines = pc.utf8_rtrim(pa.array(chunk, pa.string()), characters="\r\n")
            yield from _events(source, lines, first_line, timezone)
            first_line += len(chunk)


def _events(
    source: Source, lines: pa.Array, first_line: int, timezone: str | None
) -> Iterator[Rows | Reject]:
    line_no = pa.array(range(first_line, first_line + len(lines)), pa.int64())
    prefix = pc.extract_regex(lines, _PREFIX)
    # A line without the prefix is a broken record, unless it is blank.
    blank = pc.equal(pc.utf8_trim_whitespace(lines), "")
    bad = pc.and_(pc.invert(prefix.is_valid()), pc.invert(blank))
    for i in pc.indices_nonzero(bad).to_pylist():
        yield Reject(
            f"line {first_line + i}", "not a PgBouncer log line", excerpt(lines[i].as_py())
        )

    msg = _field(prefix, "msg")
    conn = pc.extract_regex(msg, _CONNECTION)
    rest = _field(conn, "rest")
    client_side = pc.equal(_field(conn, "side"), "C")
    closing = pc.starts_with(rest, "closing because: ")
    event = pc.case_when(
        pc.make_struct(
            pc.and_(client_side, pc.starts_with(rest, "login attempt:")),
            pc.and_(client_side, closing),
            pc.and_(pc.invert(client_side), pc.starts_with(rest, "new connection to server")),
            pc.and_(pc.invert(client_side), closing),
            pc.starts_with(msg, "stats: "),
            pc.starts_with(msg, "process up: PgBouncer "),
        ),
        "login", "close", "server_new", "server_close", "stats", "start",
    )
    keep = event.is_valid()
    if not pc.any(keep).as_py():
        return
    ts_ns = _ts_ns(source, _field(prefix, "ts"), _field(prefix, "tz"), timezone)
    # A time no calendar has (a damaged line: month 13, year 3026) rejects that line only.
    unreadable = pc.and_(keep, pc.is_null(ts_ns))
    for i in pc.indices_nonzero(unreadable).to_pylist():
        yield Reject(f"line {first_line + i}", "unreadable time", excerpt(lines[i].as_py()))
    keep = pc.and_(keep, pc.is_valid(ts_ns))
    close = pc.extract_regex(rest, _CLOSE)
    age = _field(close, "age").cast(pa.float64())
    table = pa.Table.from_arrays(
        [
            ts_ns,
            event,
            pc.binary_join_element_wise(_field(conn, "side"), _field(conn, "ptr"), "-"),
            _field(conn, "user"),
            _field(conn, "db"),
            _field(conn, "addr"),
            pc.multiply(age, 1000.0),
            pc.coalesce(_field(close, "reason"), _field(pc.extract_regex(msg, _VERSION), "v")),
            line_no,
        ],
        schema=CONNECTIONS_STAGING,
    ).filter(keep)
    # Stats lines are few (one per stats_period): their numbers are parsed one by one.
    is_stats = pc.equal(table.column("event"), "stats").combine_chunks()
    if pc.any(is_stats).as_py():
        stats = pc.filter(pc.filter(msg, keep), is_stats)
        detail = pc.replace_with_mask(
            table.column("detail").combine_chunks(), is_stats, _stats_json(stats)
        )
        table = table.set_column(table.schema.get_field_index("detail"), "detail", detail)
    yield Rows("connections", table)


def _field(parsed: pa.Array, name: str) -> pa.Array:
    """A group of ``extract_regex``'s result: null where the line did not match or the
    (optional) group matched nothing."""
    values = pc.struct_field(parsed, name)
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _stats_json(stats: pa.Array) -> pa.Array:
    """The numbers of each ``stats:`` line as a JSON object."""
    out: list[str] = []
    for line in stats.to_pylist():
        body = line[len("stats: "):]
        numbers: dict[str, int] = {}
        for value, name in _STATS_RATE.findall(_STATS_BYTES.sub("", body)):
            numbers[name.strip().replace(" ", "_") + "_per_s"] = int(value)
        for name, value in _STATS_BYTES.findall(body):
            numbers[f"{name}_bytes_per_s"] = int(value)
        for name, value in _STATS_US.findall(body):
            numbers[f"{name}_us"] = int(value)
        out.append(json.dumps(numbers))
    return pa.array(out, pa.string())


def _ts_ns(source: Source, ts: pa.Array, tz: pa.Array, timezone: str | None) -> pa.Array:
    """Nanoseconds since the epoch from PgBouncer's local time and zone name or offset."""
    local = _local_ns(pc.replace_substring(ts, "T", " "))
    utc_ns = pc.subtract(local.cast(pa.int64()), _offset_ns(tz))
    named = pc.fill_null(
        pc.and_(
            pc.invert(pc.is_in(tz, pa.array(sorted(_UTC)))),
            pc.invert(pc.match_substring_regex(tz, r"^[+-]")),
        ),
        False,
    )
    if not pc.any(named).as_py():
        return utc_ns
    if timezone is None:
        zone = pc.filter(tz, named)[0].as_py()
        raise LoadError(
            f"{source.name}: times are logged in local zone {zone!r}; "
            f"give its name, e.g. wb.load(path, timezone='Europe/Paris')"
        )
    zoned = pc.assume_timezone(local, timezone, ambiguous="earliest", nonexistent="earliest")
    return pc.if_else(named, zoned.cast(pa.int64()), utc_ns)


def _local_ns(text: pa.Array) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS[.fff]`` as a nanosecond timestamp; NULL where it is no date or
    lies outside what nanoseconds hold (1677-2262), so that only that line is lost."""
    try:
        return text.cast(pa.timestamp("ns"))
    except (pa.ArrowInvalid, OverflowError):
        out: list[int | None] = []
        for value in text.to_pylist():
            try:
                one = pa.array([value], pa.string()).cast(pa.timestamp("ns"))
                out.append(one.cast(pa.int64())[0].as_py())
            except (pa.ArrowInvalid, OverflowError):
                out.append(None)
        return pa.array(out, pa.int64()).cast(pa.timestamp("ns"))


def _offset_ns(tz: pa.Array) -> pa.Array:
    """``+02``, ``+0200`` or ``+02:00`` as nanoseconds (0 for UTC names and nulls)."""
    parts = pc.extract_regex(tz, r"^(?P<sign>[+-])(?P<h>\d\d):?(?P<m>\d\d)?$")
    hours = pc.coalesce(_field(parts, "h").cast(pa.int64()), 0)
    minutes = pc.coalesce(_field(parts, "m").cast(pa.int64()), 0)
    seconds = pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60))
    sign = pc.if_else(pc.equal(_field(parts, "sign"), "-"), -1, 1)
    return pc.multiply(pc.multiply(seconds, pc.coalesce(sign, 1)), 1_000_000_000)
