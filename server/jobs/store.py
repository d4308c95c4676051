"""Job state in SQLite (WAL mode) beside a folder of request and result files.

The database holds one row per job: its state, counters and timestamps. Requests and
results are serialized protobufs in files named after the job id, written atomically
(temporary file, then rename) *before* the row says they exist, so a crash at any point
leaves either the old state or the new one, never a row pointing at half a file.
"""

from __future__ import annotations

import dataclasses
import json
import contextlib
import os
import pathlib
import sqlite3
import time
import uuid

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
UNFINISHED = (QUEUED, RUNNING)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)

_COLUMNS = """
    job_id        TEXT PRIMARY KEY,
    request_id    TEXT,
    owner         TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL,
    item_count    INTEGER NOT NULL,
    failed_items  INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    progress      TEXT NOT NULL DEFAULT '{}',
    error_code    INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    created       REAL NOT NULL,
    started       REAL,
    finished      REAL,
    sequence      INTEGER NOT NULL
"""
# Request ids are unique per owner: one caller's id never names another's job.
_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, sequence);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, sequence);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_request_id ON jobs (owner, request_id);
"""


@dataclasses.dataclass(frozen=True)
class JobRecord:
    job_id: str
    request_id: str | None
    owner: str
    state: str
    item_count: int
    failed_items: int
    attempts: int
    progress: dict
    error_code: int
    error_message: str
    created: float
    started: float | None
    finished: float | None
    sequence: int

    @property
    def done(self) -> bool:
        return self.state in FINISHED


class JobStore:
    """All access from one thread (the server's event loop); each call is a short transaction."""

    def __init__(self, data_dir: str | os.PathLike):
        self.root = pathlib.Path(data_dir)
        (self.root / "requests").mkdir(parents=True, exist_ok=True)
        (self.root / "results").mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "jobs.sqlite3", isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._db.executescript(f"CREATE TABLE IF NOT EXISTS jobs ({_COLUMNS});" + _INDEXES)

    def _migrate(self) -> None:
        """Bring a database from before job owners up to date: one without the owner
        column gets it (its jobs become the anonymous owner's), and one whose request_id
        was unique across all callers is rebuilt with it unique per owner instead."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if not columns:
            return  # a new database
        if "owner" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
        if not any(row["origin"] == "u" for row in self._db.execute("PRAGMA index_list(jobs)")):
            return
        names = ", ".join(line.split()[0] for line in _COLUMNS.strip().splitlines())
        try:
            self._db.executescript(
                f"BEGIN IMMEDIATE; CREATE TABLE jobs_migrated ({_COLUMNS});"
                f"INSERT INTO jobs_migrated ({names}) SELECT {names} FROM jobs;"
                "DROP TABLE jobs; ALTER TABLE jobs_migrated RENAME TO jobs;" + _INDEXES + "COMMIT;"
            )
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # -- files -----------------------------------------------------------------------

    def request_path(self, job_id: str) -> pathlib.Path:
        return self.root / "requests" / f"{job_id}.pb"

    def result_path(self, job_id: str) -> pathlib.Path:
        return self.root / "results" / f"{job_id}.pb"

    @staticmethod
    def _write_atomically(path: pathlib.Path, data: bytes) -> None:
        temporary = path.with_suffix(f".tmp-{uuid.uuid4().hex[:8]}")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def read_request(self, job_id: str) -> bytes:
        return self.request_path(job_id).read_bytes()

    def read_result(self, job_id: str) -> bytes | None:
        path = self.result_path(job_id)
        return path.read_bytes() if path.exists() else None

    # -- rows ------------------------------------------------------------------------

    def _row(self, row) -> JobRecord | None:
        if row is None:
            return None
        fields = dict(row)
        fields["progress"] = json.loads(fields["progress"])
        return JobRecord(**fields)

    def get(self, job_id: str) -> JobRecord | None:
        return self._row(self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone())

    def by_request_id(self, request_id: str, owner: str = "") -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE owner = ? AND request_id = ?",
                               (owner, request_id)).fetchone()
        return self._row(row)

    def create(self, request: bytes, item_count: int, request_id: str | None, owner: str = "") -> tuple[JobRecord, bool]:
        """Insert a queued job; with a request_id this owner used before, return that
        job and False."""
        if request_id:
            existing = self.by_request_id(request_id, owner)
            if existing is not None:
                return existing, False
        job_id = uuid.uuid4().hex
        self._write_atomically(self.request_path(job_id), request)
        try:
            self._db.execute(
                "INSERT INTO jobs (job_id, request_id, owner, state, item_count, created, sequence) "
                "VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(sequence), 0) + 1 FROM jobs))",
                (job_id, request_id or None, owner, QUEUED, item_count, time.time()),
            )
        except sqlite3.IntegrityError:  # a concurrent submit with the same request_id won
            self.request_path(job_id).unlink(missing_ok=True)
            return self.by_request_id(request_id, owner), False
        return self.get(job_id), True

    def update(self, job_id: str, **fields) -> JobRecord:
        if "progress" in fields:
            fields["progress"] = json.dumps(fields["progress"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*fields.values(), job_id))
        return self.get(job_id)

    def start_attempt(self, job_id: str) -> JobRecord:
        self._db.execute(
            "UPDATE jobs SET state = ?, attempts = attempts + 1, started = COALESCE(started, ?) "
            "WHERE job_id = ?",
            (RUNNING, time.time(), job_id),
        )
        return self.get(job_id)

    def finish(self, job_id: str, state: str, result: bytes | None = None, *, failed_items: int = 0,
               error_code: int = 0, error_message: str = "") -> JobRecord:
        """Write the result file first, then the row that says the job is done."""
        if result is not None:
            self._write_atomically(self.result_path(job_id), result)
        return self.update(job_id, state=state, failed_items=failed_items, error_code=error_code,
                           error_message=error_message, finished=time.time())

    def list(self, state: str | None = None, limit: int = 50, before_sequence: int | None = None,
             owner: str | None = None) -> list[JobRecord]:
        """Newest first; only `owner`'s jobs when one is given."""
        query, args = "SELECT * FROM jobs WHERE 1 = 1", []
        if owner is not None:
            query += " AND owner = ?"
            args.append(owner)
        if state:
            query += " AND state = ?"
            args.append(state)
        if before_sequence is not None:
            query += " AND sequence < ?"
            args.append(before_sequence)
        query += " ORDER BY sequence DESC LIMIT ?"
        args.append(limit)
        return [self._row(row) for row in self._db.execute(query, args).fetchall()]

    def unfinished(self) -> list[JobRecord]:
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY sequence", UNFINISHED
        ).fetchall()
        return [self._row(row) for row in rows]

    def count_unfinished(self, owner: str | None = None) -> int:
        """Queued or running jobs, of everyone or of `owner`."""
        if owner is None:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", UNFINISHED).fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?) AND owner = ?",
                                (*UNFINISHED, owner)).fetchone()[0]

    def count_by_state(self) -> dict[str, int]:
        """Jobs per state, read on a connection of its own: callable from any thread
        (Prometheus scrapes from its HTTP thread); WAL lets it read beside the writer."""
        with contextlib.closing(sqlite3.connect(self.root / "jobs.sqlite3", timeout=5)) as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    def delete_finished_before(self, cutoff: float) -> int:
        """Remove finished jobs (rows and files) that ended before `cutoff`."""
        rows = self._db.execute(
            "SELECT job_id FROM jobs WHERE state IN (?, ?, ?) AND finished < ?", (*FINISHED, cutoff)
        ).fetchall()
        for (job_id,) in rows:
            self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
            self.request_path(job_id).unlink(missing_ok=True)
            self.result_path(job_id).unlink(missing_ok=True)
        return len(rows)
