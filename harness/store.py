"""The results store: SQLite (WAL), one transaction per finished cell, plus a folder per run.

Tables:
- `runs`: one row per `harness run` (id, suite, suite file, times, status, and the
  driver's host and process, so a run whose driver was killed reads as `abandoned`).
- `records`: one row per cell, the columns of `CellRecord`; dict and list fields as
  strict JSON (an undefined metric is `null`, so SQLite's JSON functions read it).
- `metrics`: (run_id, cell_id, name, value), so metrics can be queried in SQL.

Per-example predictions go to `<store dir>/runs/<run_id>/predictions/<file>.parquet`,
where the file name is derived from the cell id (a slug and a short hash: a model label
may hold any text, `/` and `..` included) and kept in the record's `predictions_file`.

Several processes may write one store at once: every write is a `BEGIN IMMEDIATE`
transaction, which waits (up to `BUSY_TIMEOUT_S`) for another writer instead of failing
with "database is locked". Only runners write here; `load_records()` reads into pandas.

Readers (`show`, `report`, `compare`, `export`, `list runs`) open the store read-only: SQLite's
read-only mode, nothing written (no schema, no added columns, no run marked abandoned), and no
`-wal`/`-shm` files left beside a store that had none, so reading a committed store changes
nothing in the checkout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from harness import strict_json
from harness.errors import InputError
from harness.record import CellRecord, fill_variants, now

DEFAULT_STORE = Path("results/harness.db")


def _json_empty(annotation: str) -> str | None:
    """The JSON an empty (NULL) column reads as, for a record field stored as JSON text (a dict
    or list); None for a scalar field, stored in a column of its own type."""
    if not annotation.startswith(("dict", "list")):
        return None
    return "null" if "None" in annotation else "{}" if annotation.startswith("dict") else "[]"


# the record's dict and list fields, stored as JSON text, with the JSON an empty one reads as
JSON_FIELDS = {f.name: empty for f in fields(CellRecord) if (empty := _json_empty(str(f.type))) is not None}
SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}
BUSY_TIMEOUT_S = 120
RUN_COLUMNS = {
    "run_id": "TEXT PRIMARY KEY", "suite": "TEXT", "suite_path": "TEXT", "started_at": "TEXT",
    "finished_at": "TEXT", "status": "TEXT", "cells": "INTEGER",
    "driver_host": "TEXT", "driver_pid": "INTEGER", "driver_started": "REAL",
}  # fmt: skip


def slug(text: str, limit: int, fallback: str) -> str:
    """`text`'s harmless characters (at most `limit`), the rest as `-`: safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip(".-")[:limit] or fallback


def cell_file_stem(cell_id: str) -> str:
    """A file name for a cell id that is safe on any file system and unique per id:
    its slug, then 10 hex digits of its hash."""
    return f"{slug(cell_id, 80, 'cell')}-{hashlib.sha256(cell_id.encode()).hexdigest()[:10]}"


def _record_columns() -> dict[str, str]:
    return {
        f.name: "TEXT" if f.name in JSON_FIELDS else _column_type(str(f.type)) for f in fields(CellRecord)
    }


def _column_type(annotation: str) -> str:
    for python_type, sql in SQL_TYPES.items():
        if annotation.startswith(python_type.__name__):
            return sql
    return "TEXT"


def _schema() -> list[str]:
    runs = ",\n  ".join(f"{name} {kind}" for name, kind in RUN_COLUMNS.items())
    records = ",\n  ".join(f"{name} {kind}" for name, kind in _record_columns().items())
    return f"""
CREATE TABLE IF NOT EXISTS runs (
  {runs}
);
CREATE TABLE IF NOT EXISTS records (
  {records},
  PRIMARY KEY (run_id, cell_id)
);
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT, cell_id TEXT, name TEXT, value REAL,
  PRIMARY KEY (run_id, cell_id, name)
);
CREATE INDEX IF NOT EXISTS records_by_hash ON records (config_hash, status);
""".split(";")[:-1]


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def check_store_path(path: Path, create: bool = True) -> None:
    """A `--store` that cannot be one is one line before anything runs: a folder, a path under a
    file, a place this user cannot write (when writing), or no store at all (when reading)."""
    fix = "pass --store a .db file, e.g. results/harness.db"
    if path.is_dir():
        raise InputError(
            path, "is a folder, not a results store file", f"pass --store {path / 'harness.db'}", "--store"
        )
    if not path.exists():
        if not create:
            raise InputError(path, "no results store here", "run a suite first or pass --store", "--store")
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise InputError(path, f"{folder} is a file, not a folder", fix, "--store")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(path, f"the store cannot be made: {folder} is not writable", fix, "--store")
    elif not os.access(path, os.R_OK):
        raise InputError(
            path, "the store file is not readable", "check its permissions, or " + fix, "--store"
        )
    elif create and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
        raise InputError(
            path,
            "the store (or its folder, where SQLite keeps its journal) is not writable",
            "check the permissions, or " + fix,
            "--store",
        )


class Store:
    def __init__(self, path: Path | str = DEFAULT_STORE, create: bool = True, read_only: bool | None = None):
        """Open (with `create`, make) the store at `path`. `read_only` (default: when not
        `create`, as every reader opens it) writes nothing at all; see `_open_read_only`."""
        self.path = Path(path)
        self.read_only = not create if read_only is None else read_only
        check_store_path(self.path, create and not self.read_only)
        if self.read_only:
            self.db = self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(
                self.path, f"its folder cannot be made ({error.strerror})", "pass another --store", "--store"
            ) from None
        existed = self.path.exists()
        try:
            # autocommit: every write below is an explicit BEGIN IMMEDIATE ... COMMIT
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._use_wal()
            with self.transaction() as db:  # not executescript: that commits first
                for statement in _schema():
                    db.execute(statement)
            self._add_missing_columns()
        except sqlite3.DatabaseError as error:
            if hasattr(self, "db"):
                self.db.close()
            problem = f"not a results store ({error})" if existed else f"no store can be made here ({error})"
            raise InputError(self.path, problem, "pass another --store", "--store") from None

    def _open_read_only(self) -> sqlite3.Connection:
        """SQLite's read-only mode. Without a `-wal` file beside the store every commit is in the
        file itself (the last writer checkpointed and removed it), and it is opened `immutable`:
        plain read-only mode would leave new `-wal` and `-shm` files beside a committed store.
        With a `-wal` (a run writing now, or a killed one) read-only mode reads it as well."""
        immutable = not self.path.with_name(self.path.name + "-wal").exists()
        uri = self.path.resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
        db = None
        try:
            db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as error:
            if db is not None:
                db.close()
            raise InputError(
                self.path, f"not a results store ({error})", "pass another --store", "--store"
            ) from None
        if not {"runs", "records"} <= tables:
            db.close()
            raise InputError(
                self.path,
                "not a results store (it has no runs and records tables)",
                "pass another --store",
                "--store",
            )
        return db

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _use_wal(self) -> None:
        """Switch the file to WAL. SQLite answers "database is locked" to this pragma at once,
        without its busy handler, while another process is switching the same new file; so
        retry until the busy timeout, like every other write here waits."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _add_missing_columns(self) -> None:
        """A store written by an older version gains the columns added since (NULL in old rows)."""
        for table, wanted in (("runs", RUN_COLUMNS), ("records", _record_columns())):
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            missing = [(name, kind) for name, kind in wanted.items() if name not in have]
            if missing:
                with self.transaction() as db:
                    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    for name, kind in missing:
                        if name not in have:  # another process may have added it meanwhile
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind.split()[0]}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: takes the write lock at once (waiting for other writers),
        commits, or rolls back on error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def run_folder(self, run_id: str) -> Path:
        return self.path.parent / "runs" / run_id

    def log_path(self, run_id: str, cell_id: str) -> Path:
        return self.run_folder(run_id) / "logs" / f"{cell_file_stem(cell_id)}.log"

    # ------------------------------------------------------------------ writing

    def start_run(self, run_id: str, suite: str, suite_path: str, cells: int) -> None:
        """Mark the run as running, driven by this process (a resumed run is taken over)."""
        pid = os.getpid()
        driver = (socket.gethostname(), pid, _process_started(pid))
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (run_id, suite, suite_path, started_at, status, cells)"
                " VALUES (?, ?, ?, ?, 'running', ?)",
                (run_id, suite, suite_path, now(), cells),
            )
            db.execute(
                "UPDATE runs SET status = 'running', cells = ?, finished_at = NULL, driver_host = ?,"
                " driver_pid = ?, driver_started = ? WHERE run_id = ?",
                (cells, *driver, run_id),
            )

    def mark_abandoned(self) -> list[str]:
        """Runs of this host still marked `running` whose driver process is gone (killed,
        crashed, the machine restarted) become `abandoned`; returns their ids. Finished cells
        stay in the store, and `harness run --resume` completes the rest. A read-only store is
        not written: its readers show those runs as abandoned (`runs`, `run_status`)."""
        if not {"driver_host", "driver_pid", "driver_started"} <= self._columns("runs"):
            return []  # a store from before drivers were recorded (only read-only opens see one)
        host = socket.gethostname()
        rows = self.db.execute(
            "SELECT run_id, driver_pid, driver_started FROM runs"
            " WHERE status = 'running' AND driver_host = ?",
            (host,),
        ).fetchall()
        gone = [
            run_id
            for run_id, pid, started in rows
            if pid is None or started is None or _process_started(pid) != started
        ]
        if gone and not self.read_only:
            with self.transaction() as db:
                db.executemany(
                    "UPDATE runs SET status = 'abandoned' WHERE run_id = ? AND status = 'running'",
                    [(run_id,) for run_id in gone],
                )
        return gone

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?",
                (now(), status, run_id),
            )

    def write_cell(
        self,
        record: CellRecord,
        predictions: pd.DataFrame | None = None,
        model_files: dict[str, bytes] | None = None,
    ) -> None:
        """Persist one finished cell: its predictions file and kept model, then one transaction
        for its rows.

        A predictions file or model that cannot be written (disk full, a read-only folder) does
        not lose the record: it is stored without them and says so in its notes.
        """
        if model_files is not None:
            self._write_model(record, model_files)
        if predictions is not None:
            relative = (
                Path("runs") / record.run_id / "predictions" / f"{cell_file_stem(record.cell_id)}.parquet"
            )
            try:
                (self.path.parent / relative).parent.mkdir(parents=True, exist_ok=True)
                predictions.to_parquet(self.path.parent / relative, index=False)
                record.predictions_file = relative.as_posix()
            except OSError as error:
                record.predictions_file = None
                record.notes.append(f"predictions not saved: {type(error).__name__}: {error}")
        row = record.to_dict()
        values = [
            strict_json.dumps(row[name]) if name in JSON_FIELDS else _finite_or_none(row[name])
            for name in CellRecord.columns()
        ]
        columns = ", ".join(CellRecord.columns())
        marks = ", ".join("?" for _ in values)  # SQL parameters: values are never formatted in
        with self.transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO records ({columns}) VALUES ({marks})", values)
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

    def _write_model(self, record: CellRecord, files: dict[str, bytes]) -> None:
        relative = Path("runs") / record.run_id / "models" / cell_file_stem(record.cell_id)
        try:
            for name, content in files.items():
                path = self.path.parent / relative / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            record.model_dir = relative.as_posix()
            record.model_mb = sum(len(content) for content in files.values()) / 1024**2
        except OSError as error:
            record.notes.append(f"model not saved: {type(error).__name__}: {error}")

    # ------------------------------------------------------------------ reading

    def runs(self) -> pd.DataFrame:
        gone = self.mark_abandoned()
        frame = pd.read_sql_query("SELECT * FROM runs ORDER BY started_at, run_id", self.db)
        frame.loc[frame["run_id"].isin(gone) & (frame["status"] == "running"), "status"] = "abandoned"
        return frame

    def run_status(self, run_id: str) -> str | None:
        gone = self.mark_abandoned()
        row = self.db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return "abandoned" if row[0] == "running" and run_id in gone else row[0]

    def latest_run(self, suite: str | None = None) -> str | None:
        query = "SELECT run_id FROM runs" + (" WHERE suite = ?" if suite else "")
        row = self.db.execute(
            query + " ORDER BY started_at DESC, run_id DESC LIMIT 1", (suite,) if suite else ()
        ).fetchone()
        return row[0] if row else None

    def has_run(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def ok_hashes(self, run_id: str) -> set[str]:
        rows = self.db.execute(
            "SELECT config_hash FROM records WHERE run_id = ? AND status = 'ok'", (run_id,)
        )
        return {row[0] for row in rows}

    def code_hashes(self, run_id: str, config_hashes: set[str]) -> dict[str | None, int]:
        """How many of the run's ok cells with these config hashes each code fingerprint made."""
        counts: dict[str | None, int] = {}
        rows = self.db.execute(
            "SELECT config_hash, code_hash FROM records WHERE run_id = ? AND status = 'ok'", (run_id,)
        )
        for config_hash, code_hash in rows:
            if config_hash in config_hashes:
                counts[code_hash] = counts.get(code_hash, 0) + 1
        return counts

    def records(self, run_ids: Sequence[str] | None = None, suite: str | None = None) -> pd.DataFrame:
        query, params = "SELECT * FROM records WHERE 1 = 1", []
        if run_ids:
            query += f" AND run_id IN ({', '.join('?' for _ in run_ids)})"
            params += list(run_ids)
        if suite:
            query += " AND suite = ?"
            params.append(suite)
        frame = pd.read_sql_query(query + " ORDER BY run_id, task, model, seed", self.db, params=params)
        for name in CellRecord.columns():  # an older store, read-only (not upgraded), lacks some
            if name not in frame:
                frame[name] = None
        for name, empty in JSON_FIELDS.items():  # a missing value is None, or NaN in a str column
            frame[name] = frame[name].map(
                lambda text, e=empty: json.loads(text if isinstance(text, str) and text else e)
            )
        # metrics are stored as strict JSON (an undefined value as null); NaN again in memory
        frame["metrics"] = frame["metrics"].map(
            lambda metrics: {k: float("nan") if v is None else v for k, v in metrics.items()}
        )
        metric_columns = pd.DataFrame(list(frame["metrics"]), index=frame.index)
        return pd.concat([fill_variants(frame), metric_columns.add_prefix("metric.")], axis=1)

    def predictions(self, run_id: str, cell_id: str) -> pd.DataFrame:
        """A cell's per-example predictions; `FileNotFoundError` when it has none."""
        row = None
        if "predictions_file" in self._columns("records"):  # not in a store older than the field
            row = self.db.execute(
                "SELECT predictions_file FROM records WHERE run_id = ? AND cell_id = ?", (run_id, cell_id)
            ).fetchone()
        if row is None or row[0] is None:
            legacy = (
                self.run_folder(run_id) / "predictions" / f"{cell_id}.parquet"
            )  # records from before `predictions_file`
            if legacy.is_file() and legacy.resolve().is_relative_to(self.path.parent.resolve()):
                return pd.read_parquet(legacy)
            raise FileNotFoundError(f"no predictions stored for {cell_id} of run {run_id}")
        return pd.read_parquet(self.path.parent / row[0])


def load_records(
    store: Path | str = DEFAULT_STORE,
    run_ids: Sequence[str] | None = None,
    suite: str | None = None,
) -> pd.DataFrame:
    """All records (or those of some runs / a suite) as a DataFrame, metrics as `metric.<name>`;
    the store opened read-only."""
    with Store(store, create=False, read_only=True) as db:
        return db.records(run_ids, suite)
