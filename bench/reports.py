"""Usage reports over a year of rollups, on SQLite and PostgreSQL, against a naive scan.

The data: ``--subscribers`` subscribers (10,000) spread over 3 ISPs, each with one line and
one open service session, and ``--days`` (365) days of what the accounting writer stores:
hourly and daily usage rollups per subscriber and per ISP (the daily and ISP rows carry the
same totals as the hourly subscriber rows they sum). Hourly traffic is a deterministic
function of (subscriber, hour) that the database computes while loading:

* SQLite (a temporary file): ``INSERT ... SELECT`` over a subscribers table crossed with an
  hours table, in primary-key order (the key's index grows at its end), the secondary index
  dropped during the load and rebuilt after it, no journal during the load, then ``ANALYZE``;
* PostgreSQL (a throwaway cluster, started as ``tests/pg.py`` starts one): ``INSERT ...
  SELECT`` from ``generate_series`` with the primary key and the index dropped during the
  load and rebuilt after it (what ``pg_restore`` does), then ``VACUUM ANALYZE``.

Then, on each database, interleaved sample by sample:

* vpop: ``vpop.reports.service.usage_report(url, start, end, by="isp")`` for a month and
  ``by="subscriber"`` for a day: seconds, rollup rows read per second (the rows its queries
  select: see :func:`rows_read`; the database sums them), report rows per second;
* naive peer: the same totals by ``SELECT sum(...) ... GROUP BY`` over the hourly
  subscriber rows of the window (a report with no daily rollups), and the ratio
  naive/vpop. Both totals are compared, row by row; a difference stops the bench.

Run: .venv/bin/python bench/reports.py [--subscribers 10000] [--days 365] [--repeat 5]
                                        [--no-postgres] [--quick] [--keep DIR]
The full size (87.6 M hourly rows) takes about 20 GB of disk per database (in /tmp; each
database is removed after its measurements) and 13 (SQLite) + 9 (PostgreSQL) minutes to
load. ``--keep DIR`` keeps the loaded SQLite file and PostgreSQL data directory in DIR and
reuses them on the next run when they hold the same ``--subscribers`` and ``--days`` (a
marker file per database, written after a complete load), so a re-measurement skips the
load; ``rm -rf DIR`` frees the disk.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.pg: the throwaway PostgreSQL cluster of the tests
WORK = Path(tempfile.mkdtemp(prefix="vpop-bench-reports-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # nothing left behind
os.environ.setdefault("VPOP_STATE_DIR", str(WORK / "state"))

from sqlalchemy import func, insert, select  # noqa: E402

from vpop.accounting.service import ServiceSession, UsageRollup  # noqa: E402
from vpop.catalogue.service import Isp, Line, Subscriber  # noqa: E402
from vpop.core.db import dispose_engines, get_engine, session_scope  # noqa: E402
from vpop.core.migrate import upgrade  # noqa: E402
from vpop.reports.service import usage_report  # noqa: E402
from vpop.reports.usage import SERIES_HOURLY_UP_TO  # noqa: E402
from vpop.reports.windows import in_ranges, plan_window  # noqa: E402

ISPS = ("isp-a", "isp-b", "isp-c")
START = datetime(2025, 1, 1, tzinfo=UTC)
TOTALS = ("bytes_in", "bytes_out", "packets_in", "packets_out", "covered_seconds")
NAMES = (*TOTALS, "samples")
COLUMNS = f"period, level, isp_id, subject, bucket, {', '.join(NAMES)}"
SUMS = ", ".join(f"sum({name})" for name in NAMES)


def hourly(h: str) -> list[str]:
    """One hour of subscriber ``s.k`` at hour index ``h``: the values of :data:`NAMES`.

    Integers the same in SQLite and PostgreSQL; one hour in 97 lost five minutes of polls.
    """
    b_in = f"(((s.k * 7919 + {h} * 104729) % 1000003) * 61 + 1000)"
    b_out = f"(((s.k * 104729 + {h} * 7919) % 1000033) * 317 + 5000)"
    gap = f"(s.k + {h}) % 97 = 0"
    return [
        b_in,
        b_out,
        f"{b_in} / 900",
        f"{b_out} / 1200",
        f"CASE WHEN {gap} THEN 3300.0 ELSE 3600.0 END",
        f"CASE WHEN {gap} THEN 660 ELSE 720 END",
    ]


def named(exprs: list[str]) -> str:
    return ", ".join(f"{e} AS {n}" for e, n in zip(exprs, NAMES, strict=True))


def subscriber_rows(count: int) -> list[tuple[int, str, str]]:
    """``(k, ISP, subscriber id)`` in the rollups' primary-key order (ISP, then id)."""
    rows = [(k, ISPS[k % len(ISPS)], f"sub{k:05d}") for k in range(1, count + 1)]
    return sorted(rows, key=lambda r: (r[1], r[2]))


def catalogue(url: str, subs: list[tuple[int, str, str]]) -> None:
    """ISPs, subscribers, one line each and one session each, open since the year's start."""
    with get_engine(url).begin() as conn:
        conn.execute(
            insert(Isp),
            [{"id": i, "name": f"ISP {i[-1].upper()}", "outbound_deny": []} for i in ISPS],
        )
        conn.execute(insert(Subscriber), [{"id": s, "name": s, "profile": {}} for _, _, s in subs])
        conn.execute(
            insert(Line),
            [
                {
                    "id": k,
                    "subscriber_id": s,
                    "router": f"rc{k % 2 + 1}",
                    "interface": f"s{k}",
                    "prefix": f"2001:db8:{k >> 12:x}:{k & 0xFFF:x}::/64",
                }
                for k, _, s in subs
            ],
        )
        conn.execute(
            insert(ServiceSession),
            [
                {
                    "source": "selection",
                    "line_id": k,
                    "subscriber_id": s,
                    "isp_id": isp,
                    "router": f"rc{k % 2 + 1}",
                    "interface": f"s{k}",
                    "started_at": START,
                }
                for k, isp, s in subs
            ],
        )


def derived() -> list[str]:
    """Daily subscriber rows are loaded from the generator; these statements add the ISP
    rows (hour and day) as the sums of the stored subscriber rows, and each session's
    totals as the sum of its subscriber's daily rows."""
    sessions = ", ".join(
        f"{c} = (SELECT coalesce(sum(u.{c}), 0) FROM usage_rollups u WHERE u.period = 'day' "
        "AND u.level = 'subscriber' AND u.isp_id = service_sessions.isp_id "
        "AND u.subject = service_sessions.subscriber_id)"
        for c in TOTALS
    )
    return [
        f"INSERT INTO usage_rollups ({COLUMNS}) SELECT 'hour', 'isp', isp_id, isp_id, bucket, "
        f"{SUMS} FROM usage_rollups WHERE period = 'hour' AND level = 'subscriber' "
        "GROUP BY isp_id, bucket",
        f"INSERT INTO usage_rollups ({COLUMNS}) SELECT 'day', 'isp', isp_id, isp_id, bucket, "
        f"{SUMS} FROM usage_rollups WHERE period = 'day' AND level = 'subscriber' "
        "GROUP BY isp_id, bucket",
        f"UPDATE service_sessions SET {sessions}",
    ]


def load_sqlite(url: str, path: Path, subs: list[tuple[int, str, str]], days: int) -> None:
    """Fill the rollups with SQLite's own INSERT ... SELECT, in primary-key order."""
    catalogue(url, subs)
    dispose_engines()
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-2000000"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("DROP INDEX ix_usage_period_level_bucket")
    db.execute("CREATE TEMP TABLE s (k INTEGER, isp_id TEXT, subject TEXT)")
    db.executemany("INSERT INTO s VALUES (?, ?, ?)", subs)
    stamp = "strftime('%Y-%m-%d %H:00:00.000000', '{start}', '+' || ({n}) || ' {unit}')"
    begin = START.strftime("%Y-%m-%d %H:%M:%S")
    db.execute("CREATE TEMP TABLE d (d INTEGER PRIMARY KEY, bucket TEXT)")
    db.execute(
        "INSERT INTO d WITH RECURSIVE n(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM n "
        f"WHERE d + 1 < {days}) SELECT d, {stamp.format(start=begin, n='d', unit='days')} FROM n"
    )
    db.execute("CREATE TEMP TABLE x (x INTEGER PRIMARY KEY)")  # the hours of a day
    db.execute(
        "INSERT INTO x WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n "
        "WHERE x < 23) SELECT x FROM n"
    )
    db.execute("CREATE TEMP TABLE hr (h INTEGER PRIMARY KEY, bucket TEXT)")
    db.execute(
        "INSERT INTO hr SELECT d.d * 24 + x.x, "
        f"{stamp.format(start=begin, n='d.d * 24 + x.x', unit='hours')} "
        "FROM d CROSS JOIN x ORDER BY 1"
    )
    statements = [
        # hourly per subscriber: subscribers (in key order) x hours (in order)
        f"INSERT INTO usage_rollups ({COLUMNS}) SELECT 'hour', 'subscriber', s.isp_id, "
        f"s.subject, hr.bucket, {', '.join(hourly('hr.h'))} FROM s CROSS JOIN hr",
        # daily per subscriber: the sums of the same 24 hours, grouped in loop order
        f"INSERT INTO usage_rollups ({COLUMNS}) SELECT 'day', 'subscriber', isp_id, subject, "
        f"bucket, {SUMS} FROM (SELECT s.rowid AS r, d.d AS dd, s.isp_id, s.subject, d.bucket, "
        f"{named(hourly('(d.d * 24 + x.x)'))} FROM s CROSS JOIN d CROSS JOIN x) GROUP BY r, dd",
        *derived(),
    ]
    for sql in statements:
        db.execute("BEGIN")
        db.execute(sql)
        db.execute("COMMIT")
    db.execute("CREATE INDEX ix_usage_period_level_bucket ON usage_rollups (period, level, bucket)")
    db.execute("ANALYZE")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()


def load_postgres(url: str, subs: list[tuple[int, str, str]], days: int) -> None:
    """Fill the rollups from generate_series, keys and index rebuilt after the load."""
    catalogue(url, subs)
    start = f"TIMESTAMPTZ '{START.isoformat()}'"
    engine = get_engine(url)
    with engine.begin() as conn:
        pkey = conn.exec_driver_sql(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'usage_rollups'::regclass "
            "AND contype = 'p'"
        ).scalar_one()
        for sql in (
            "SET LOCAL maintenance_work_mem = '2GB'",
            "SET LOCAL work_mem = '256MB'",
            "SET LOCAL synchronous_commit = off",
            f"ALTER TABLE usage_rollups DROP CONSTRAINT {pkey}",
            "DROP INDEX ix_usage_period_level_bucket",
            "CREATE TEMP TABLE s (k integer, isp_id text, subject text) ON COMMIT DROP",
        ):
            conn.exec_driver_sql(sql)
        conn.exec_driver_sql("INSERT INTO s VALUES (%s, %s, %s)", subs)
        for sql in (
            f"INSERT INTO usage_rollups ({COLUMNS}) SELECT 'hour', 'subscriber', s.isp_id, "
            f"s.subject, {start} + h * INTERVAL '1 hour', {', '.join(hourly('h'))} "
            f"FROM s CROSS JOIN generate_series(0, {days * 24 - 1}) AS h",
            f"INSERT INTO usage_rollups ({COLUMNS}) SELECT 'day', 'subscriber', isp_id, subject, "
            f"{start} + dd * INTERVAL '1 day', {SUMS} FROM (SELECT s.k, s.isp_id, s.subject, "
            f"d AS dd, {named(hourly('(d * 24 + x)'))} FROM s "
            f"CROSS JOIN generate_series(0, {days - 1}) AS d "
            "CROSS JOIN generate_series(0, 23) AS x) AS q GROUP BY k, isp_id, subject, dd",
            *derived()[:2],
            f"ALTER TABLE usage_rollups ADD CONSTRAINT {pkey} "
            "PRIMARY KEY (period, level, isp_id, subject, bucket)",
            "CREATE INDEX ix_usage_period_level_bucket ON usage_rollups (period, level, bucket)",
            derived()[2],  # the sessions' totals: after the key (it looks rows up by it)
        ):
            conn.exec_driver_sql(sql.replace("%", "%%"))  # psycopg's placeholders: % is %%
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def naive(url: str, by: str, start: datetime, end: datetime) -> dict[str, dict[str, float]]:
    """The peer: the totals per ``by`` summed over the window's hourly subscriber rows."""
    r = UsageRollup
    key = r.isp_id if by == "isp" else r.subject
    statement = (
        select(key, *(func.sum(getattr(r, name)) for name in TOTALS))
        .where(r.period == "hour", r.level == "subscriber", r.bucket >= start, r.bucket < end)
        .group_by(key)
    )
    with session_scope(url) as session:
        return {
            row[0]: dict(zip(TOTALS, row[1:], strict=True)) for row in session.execute(statement)
        }


def rows_read(url: str, by: str, start: datetime, end: datetime) -> tuple[int, int]:
    """Rollup rows the report's queries select, and the window's hourly subscriber rows
    (what the peer reads). The report reads the whole days and hours of the window: by
    subscriber, the subscriber rows (summed per pair); by ISP, the ISP rows (summed per
    ISP) and the subscriber rows' keys (which subscribers had traffic); and for its series
    the ISP rows of its grain (summed per bucket)."""
    grain = "day" if end - start > SERIES_HOURLY_UP_TO else "hour"
    r = UsageRollup
    plan, fine = plan_window(start, end), plan_window(start, end, days=grain == "day")
    with session_scope(url) as session:

        def count(*where: Any) -> int:
            found = session.scalar(select(func.count()).select_from(r).where(*where))
            return int(found or 0)

        report = count(r.level == "subscriber", in_ranges(plan.ranges, r.bucket, r.period))
        report += count(r.level == "isp", in_ranges(fine.ranges, r.bucket, r.period))
        if by == "isp":
            report += count(r.level == "isp", in_ranges(plan.ranges, r.bucket, r.period))
        hours = count(
            r.period == "hour", r.level == "subscriber", r.bucket >= start, r.bucket < end
        )
    return report, hours


def compare(report: dict[str, Any], peer: dict[str, dict[str, float]], by: str) -> None:
    """Stop the bench unless the report's rows and the peer's totals are the same."""
    mine = {row[by]: {name: row[name] for name in TOTALS} for row in report["rows"]}
    if set(mine) != set(peer):
        raise SystemExit(f"by={by}: the report has {len(mine)} rows, the naive scan {len(peer)}")
    for subject, values in mine.items():
        theirs = {name: peer[subject][name] for name in TOTALS}
        if any(abs(values[n] - float(theirs[n])) > 0.05 for n in TOTALS):
            raise SystemExit(f"by={by} {subject}: report {values} != naive {theirs}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def measure(label: str, url: str, days: int, repeat: int) -> None:
    """Time both reports and their peers, interleaved, and print the figures."""
    month = min(30, days)
    first = START + timedelta(days=(days - month) // 2)
    windows = {
        "isp": (first, first + timedelta(days=month), f"{month} days"),
        "subscriber": (
            first + timedelta(days=month // 2),
            first + timedelta(days=month // 2 + 1),
            "1 day",
        ),
    }
    for by, (start, end, span) in windows.items():
        mine: list[float] = []
        peer: list[float] = []
        report: dict[str, Any] = {}
        totals: dict[str, dict[str, float]] = {}
        for _ in range(repeat):
            seconds, report = timed(partial(usage_report, url, start, end, by=by, now=end))
            mine.append(seconds)
            seconds, totals = timed(partial(naive, url, by, start, end))
            peer.append(seconds)
        compare(report, totals, by)
        read, hours = rows_read(url, by, start, end)
        t_mine, t_peer = statistics.median(mine), statistics.median(peer)
        rows = len(report["rows"])
        print(
            f"  {label} by={by:<10} {span:>8} ({start:%Y-%m-%d} .. {end:%Y-%m-%d}), {rows} rows, "
            f"median of {repeat} (first run in brackets)"
        )
        print(
            f"    vpop usage_report    {t_mine * 1000:9.1f} ms ({mine[0] * 1000:.1f})  "
            f"{read / t_mine:12,.0f} rollup rows/s ({read:,} rows)  "
            f"{rows / t_mine:10,.0f} report rows/s"
        )
        print(
            f"    naive hourly scan    {t_peer * 1000:9.1f} ms ({peer[0] * 1000:.1f})  "
            f"{hours / t_peer:12,.0f} hourly rows/s ({hours:,} rows)  "
            f"{rows / t_peer:10,.0f} report rows/s"
        )
        print(f"    ratio naive/vpop: {t_peer / t_mine:6.2f}x   totals equal: yes")


def table_rows(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(UsageRollup)) or 0)


def report_load(label: str, url: str, seconds: float, args: argparse.Namespace) -> None:
    total = table_rows(url)
    print(
        f"{label}: loaded {total:,} rollup rows ({args.subscribers:,} subscribers x "
        f"{args.days} days x 24 hours, and the daily and ISP rows) in {seconds:.1f} s "
        f"({total / seconds:,.0f} rows/s)"
    )


def _same_size(keep: Path | None, name: str, args: argparse.Namespace) -> bool:
    """Whether ``keep`` holds a complete load of this size for ``name`` (its marker file)."""
    if keep is None:
        return False
    marker = keep / f"{name}.size"
    return marker.exists() and marker.read_text().split() == [str(args.subscribers), str(args.days)]


def _mark_size(keep: Path | None, name: str, args: argparse.Namespace) -> None:
    """Record a complete load of this size in ``keep`` (written only after the load)."""
    if keep is not None:
        (keep / f"{name}.size").write_text(f"{args.subscribers} {args.days}\n")


def run_sqlite(args: argparse.Namespace) -> None:
    """Load and measure a SQLite file: a temporary one (removed afterwards), or the one
    kept in ``--keep`` (reused when it holds a load of the same size)."""
    keep: Path | None = args.keep
    folder = WORK if keep is None else keep
    path = folder / "reports.sqlite"
    url = f"sqlite:///{path}"
    try:
        if _same_size(keep, "sqlite", args) and path.exists():
            print(f"sqlite: reusing {path} ({table_rows(url):,} rollup rows)")
        else:
            if keep is not None:
                (keep / "sqlite.size").unlink(missing_ok=True)
            for leftover in folder.glob("reports.sqlite*"):
                leftover.unlink()
            upgrade(url)
            seconds, _ = timed(
                lambda: load_sqlite(url, path, subscriber_rows(args.subscribers), args.days)
            )
            report_load("sqlite", url, seconds, args)
            _mark_size(keep, "sqlite", args)
        print(f"  file size {path.stat().st_size / 1e9:.1f} GB")
        measure("sqlite", url, args.days, args.repeat)
    finally:
        dispose_engines()
        if keep is None:
            for leftover in WORK.glob("reports.sqlite*"):
                leftover.unlink()


@contextmanager
def kept_cluster(base: Path, fresh: bool) -> Iterator[str]:
    """A PostgreSQL cluster in ``base`` that outlives the run (``tests/pg.py``'s, stopped
    cleanly with a checkpoint, its files left in place)."""
    from tests.pg import running_cluster

    with running_cluster(base, fresh=fresh, stop="fast") as url:
        yield url


def run_postgres(args: argparse.Namespace) -> None:
    """Load and measure a PostgreSQL cluster: a throwaway one, or the one kept in
    ``--keep`` (reused when it holds a load of the same size)."""
    from tests.pg import postgres_cluster

    keep: Path | None = args.keep
    reuse = _same_size(keep, "postgresql", args)
    if keep is not None and not reuse:
        (keep / "postgresql.size").unlink(missing_ok=True)
    cluster = (
        postgres_cluster("bench-reports") if keep is None else kept_cluster(keep / "pg", not reuse)
    )
    with cluster as url:
        if reuse:
            print(f"postgresql: reusing {keep} ({table_rows(url):,} rollup rows)")
        else:
            upgrade(url)
            seconds, _ = timed(
                lambda: load_postgres(url, subscriber_rows(args.subscribers), args.days)
            )
            report_load("postgresql", url, seconds, args)
            _mark_size(keep, "postgresql", args)
        with get_engine(url).connect() as conn:
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        print(f"  database size {size / 1e9:.1f} GB")
        measure("postgresql", url, args.days, args.repeat)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="300 subscribers, 35 days")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the loaded SQLite file and PostgreSQL data directory in DIR, and reuse "
        "them on the next run if they hold the same size (delete DIR to free the disk)",
    )
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.days = 300, 35
    if args.keep is not None:
        args.keep = args.keep.resolve()
        args.keep.mkdir(parents=True, exist_ok=True)
    try:
        run_sqlite(args)
        if not args.no_postgres:
            run_postgres(args)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
