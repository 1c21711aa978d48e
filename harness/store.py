"""The results store: SQLite (WAL), one transaction per finished cell, plus a folder per run.

Tables:
- `runs`: one row per `harness run` (id, suite, suite file, times, status).
- `records`: one row per cell, the columns of `CellRecord`; dict fields as JSON.
- `metrics`: (run_id, cell_id, name, value), so metrics can be queried in SQL.

Per-example predictions go to `<store dir>/runs/<run_id>/predictions/<cell_id>.parquet`.
Only the runner writes here; `load_records()` is the way to read it into pandas.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import InputError
from harness.record import CellRecord

DEFAULT_STORE = Path("results/harness.db")
JSON_FIELDS = {"metrics", "versions", "config"}
SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


def _column_type(annotation: str) -> str:
    for python_type, sql in SQL_TYPES.items():
        if annotation.startswith(python_type.__name__):
            return sql
    return "TEXT"


def _schema() -> str:
    columns = ",\n  ".join(
        f"{f.name} {'TEXT' if f.name in JSON_FIELDS else _column_type(str(f.type))}"
        for f in fields(CellRecord)
    )
    return f"""
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, suite TEXT, suite_path TEXT, started_at TEXT,
  finished_at TEXT, status TEXT, cells INTEGER
);
CREATE TABLE IF NOT EXISTS records (
  {columns},
  PRIMARY KEY (run_id, cell_id)
);
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT, cell_id TEXT, name TEXT, value REAL,
  PRIMARY KEY (run_id, cell_id, name)
);
CREATE INDEX IF NOT EXISTS records_by_hash ON records (config_hash, status);
"""


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class Store:
    def __init__(self, path: Path | str = DEFAULT_STORE, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise InputError(
                self.path, "no results store here", "run a suite first or pass --store"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_schema())
        except sqlite3.DatabaseError as error:
            raise InputError(
                self.path, f"not a results store ({error})", "pass another --store"
            ) from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.db:  # commits, or rolls back on error
            yield self.db

    def run_folder(self, run_id: str) -> Path:
        return self.path.parent / "runs" / run_id

    # ------------------------------------------------------------------ writing

    def start_run(self, run_id: str, suite: str, suite_path: str, cells: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, NULL, 'running', ?)",
                (run_id, suite, suite_path, _now(), cells),
            )
            db.execute(
                "UPDATE runs SET status = 'running', cells = ? WHERE run_id = ?", (cells, run_id)
            )

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?",
                (_now(), status, run_id),
            )

    def write_cell(self, record: CellRecord, predictions: pd.DataFrame | None = None) -> None:
        """Persist one finished cell: predictions file first, then one transaction for the rows."""
        if predictions is not None:
            folder = self.run_folder(record.run_id) / "predictions"
            folder.mkdir(parents=True, exist_ok=True)
            predictions.to_parquet(folder / f"{record.cell_id}.parquet", index=False)
        row = record.to_dict()
        values = [
            json.dumps(row[name], default=str)
            if name in JSON_FIELDS
            else _finite_or_none(row[name])
            for name in CellRecord.columns()
        ]
        placeholders = ", ".join("?" for _ in values)
        with self.transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO records VALUES ({placeholders})", values)
            db.execute(
                "DELETE FROM metrics WHERE run_id = ? AND cell_id = ?",
                (record.run_id, record.cell_id),
            )
            db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                [
                    (record.run_id, record.cell_id, name, _finite_or_none(value))
                    for name, value in record.metrics.items()
                ],
            )

    # ------------------------------------------------------------------ reading

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY started_at, run_id", self.db)

    def latest_run(self, suite: str | None = None) -> str | None:
        query = "SELECT run_id FROM runs" + (" WHERE suite = ?" if suite else "")
        row = self.db.execute(
            query + " ORDER BY started_at DESC, run_id DESC LIMIT 1", (suite,) if suite else ()
        ).fetchone()
        return row[0] if row else None

    def has_run(self, run_id: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None
        )

    def ok_hashes(self, run_id: str) -> set[str]:
        rows = self.db.execute(
            "SELECT config_hash FROM records WHERE run_id = ? AND status = 'ok'", (run_id,)
        )
        return {row[0] for row in rows}

    def records(
        self, run_ids: Sequence[str] | None = None, suite: str | None = None
    ) -> pd.DataFrame:
        query, params = "SELECT * FROM records WHERE 1 = 1", []
        if run_ids:
            query += f" AND run_id IN ({', '.join('?' for _ in run_ids)})"
            params += list(run_ids)
        if suite:
            query += " AND suite = ?"
            params.append(suite)
        frame = pd.read_sql_query(
            query + " ORDER BY run_id, task, model, seed", self.db, params=params
        )
        for name in JSON_FIELDS:
            frame[name] = frame[name].map(lambda text: json.loads(text) if text else {})
        # metrics are stored as strict JSON (an undefined value as null); NaN again in memory
        frame["metrics"] = frame["metrics"].map(
            lambda metrics: {k: float("nan") if v is None else v for k, v in metrics.items()}
        )
        metric_columns = pd.DataFrame(list(frame["metrics"]), index=frame.index)
        return pd.concat([frame, metric_columns.add_prefix("metric.")], axis=1)

    def predictions(self, run_id: str, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.run_folder(run_id) / "predictions" / f"{cell_id}.parquet")


def load_records(
    store: Path | str = DEFAULT_STORE,
    run_ids: Sequence[str] | None = None,
    suite: str | None = None,
) -> pd.DataFrame:
    """All records (or those of some runs / a suite) as a DataFrame, metrics as `metric.<name>`."""
    db = Store(store, create=False)
    try:
        return db.records(run_ids, suite)
    finally:
        db.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
