"""Uploaded documents and the background jobs that index them.

Uploads are written to `INDEX/documents/` (file names sanitised, written aside then renamed into
place, so nothing lands outside that folder and no half-written file is indexed); a tenant's uploads go to
`INDEX/documents/TENANT/`, each with a sidecar `NAME.meta.json` holding `{"tenant": TENANT}` and the metadata sent
with it (which the indexer gives its chunks; a sidecar's fields win over the file's own). The index is
kept in step with that folder by one job at a time, each run by `run` (in the server: a child process bounded
in memory and time, `rag.serve.index_job`; a job that goes over a bound fails and its uploads are moved to
`INDEX/quarantine/`), from a worker thread. Each job's state is written
to `INDEX/jobs/ID.json`, so every worker process of the server can report it. An index built from
another folder (`rag index FOLDER`) mirrors that folder, so uploads into it are refused (409).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from rag.core.errors import RagError, ResourceLimitError
from rag.serve.errors import ServiceError

__all__ = ["DOCUMENTS_FOLDER", "SIDECAR_SUFFIXES", "DocumentFolder", "JobQueue", "safe_name"]

logger = logging.getLogger(__name__)

DOCUMENTS_FOLDER = "documents"
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_MAX_NAME = 120
SIDECAR_SUFFIXES = (".meta.json", ".meta.yaml", ".meta.yml")
"""Names of metadata sidecar files (`report.pdf.meta.json` gives `report.pdf` its fields); never uploaded as such."""


def safe_name(name: str) -> str:
    """A file name that stays inside one folder: no folders, no leading dot, only word characters, '.' and '-'."""
    base = PurePosixPath(unicodedata.normalize("NFKC", name).replace("\\", "/")).name
    base = re.sub(r"[^\w.-]+", "_", base).strip("._")
    if not base:
        raise ServiceError(
            f"the file name {name!r} has no usable characters; name it like 'notes.md'", "invalid_name", "name"
        )
    if len(base) > _MAX_NAME:
        stem, dot, suffix = base.rpartition(".")
        base = stem[: _MAX_NAME - len(suffix) - 1] + dot + suffix if dot and len(suffix) < 16 else base[:_MAX_NAME]
    return base


def _is_safe(doc_id: str) -> bool:
    """Whether `doc_id` is a document id: a `safe_name`, or TENANT/`safe_name` (the only ids documents have)."""
    parts = doc_id.split("/")
    try:
        return 1 <= len(parts) <= 2 and all(part and safe_name(part) == part for part in parts)
    except ServiceError:  # no usable characters: no document has that name
        return False


def _is_sidecar(name: str) -> bool:
    return name.lower().endswith(SIDECAR_SUFFIXES)


class DocumentFolder:
    """The folder of uploaded documents inside an index folder."""

    def __init__(self, index: Path, mirrored: Callable[[], str | None]) -> None:
        self.index = Path(index)
        self.root = self.index / DOCUMENTS_FOLDER
        self._mirrored = mirrored

    def check_writable(self) -> None:
        """Refuse (409) when the index mirrors a folder other than the uploads folder."""
        mirrored = self._mirrored()
        if mirrored is not None and Path(mirrored) != self.root.resolve():
            raise ServiceError(
                f"this index mirrors the folder {mirrored}, so documents cannot be uploaded into it; add files "
                f"to that folder and run `rag index {mirrored}` again, or serve a new index for uploads "
                "(`rag serve --index NEW_NAME`)",
                "index_mirrors_folder",
            )

    def quarantine(self, doc_ids: list[str]) -> list[str]:
        """Move these uploads (and their sidecars) out of the uploads folder into `quarantine/` beside it; the ids
        moved."""
        moved = []
        target = self.index / "quarantine"
        for doc_id in doc_ids:
            source = self.root / doc_id
            if _is_safe(doc_id) and source.is_file():
                (target / doc_id).parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target / doc_id)
                sidecar = self._sidecar(doc_id)
                if sidecar.is_file():
                    os.replace(sidecar, target / sidecar.relative_to(self.root))
                moved.append(doc_id)
        return moved

    def path(self, doc_id: str, tenant: str | None = None) -> Path:
        """The file of document `doc_id` (one of `tenant`'s, if given); 404 when there is none."""
        mine = tenant is None or doc_id.startswith(f"{tenant}/")
        if not mine or not _is_safe(doc_id) or _is_sidecar(doc_id) or not (self.root / doc_id).is_file():
            raise ServiceError(f"no uploaded document '{doc_id}' (see GET /v1/documents)", "document_not_found")
        return self.root / doc_id

    def save(
        self, name: str, data: bytes, tenant: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write `data` as document `safe_name(name)` (in `tenant`'s folder, if given), replacing a document of that
        name; `metadata` (with `tenant`) goes to its sidecar, and a sidecar left by an earlier upload goes away."""
        if _is_sidecar(name):
            raise ServiceError(
                f"'{name}' is named as a metadata sidecar; send metadata in the upload's 'metadata' field instead",
                "invalid_name",
                "name",
            )
        doc_id = f"{tenant}/{safe_name(name)}" if tenant is not None else safe_name(name)
        fields = {**(metadata or {}), **({"tenant": tenant} if tenant is not None else {})}
        if fields:
            _write_aside(self._sidecar(doc_id), json.dumps(fields, ensure_ascii=False).encode("utf-8"))
        else:
            self._sidecar(doc_id).unlink(missing_ok=True)
        _write_aside(self.root / doc_id, data)
        return {"id": doc_id, "bytes": len(data)}

    def delete(self, doc_id: str, tenant: str | None = None) -> None:
        self.path(doc_id, tenant).unlink()
        self._sidecar(doc_id).unlink(missing_ok=True)

    def list(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The uploaded documents (`tenant`'s only, if given)."""
        folder = self.root / tenant if tenant is not None else self.root
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_file()]
        if tenant is None:
            found += [p for sub in self.root.iterdir() if sub.is_dir() for p in sub.iterdir() if p.is_file()]
        listed = []
        for path in sorted(found):
            doc_id = path.relative_to(self.root).as_posix()
            if _is_safe(doc_id) and not _is_sidecar(doc_id):
                stat = path.stat()
                listed.append({"id": doc_id, "bytes": stat.st_size, "modified": int(stat.st_mtime)})
        return listed

    def _sidecar(self, doc_id: str) -> Path:
        return self.root / f"{doc_id}{SIDECAR_SUFFIXES[0]}"


def _write_aside(target: Path, data: bytes) -> None:
    """Write `data` to a hidden file beside `target` (never indexed half-written), then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class JobQueue:
    """Indexing jobs run one at a time from a worker thread: `run(folder)` indexes the uploads folder and returns
    the run's report (a dict); `after()` is called when one has committed."""

    def __init__(self, documents: DocumentFolder, run: Callable[[Path], Any], after: Callable[[], Any]) -> None:
        self.documents = documents
        self.folder = documents.index / "jobs"
        self._run = run
        self._after = after
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, action: str, documents: list[str], tenant: str | None = None) -> dict[str, Any]:
        """Queue a job that brings the index in step with the uploads folder (for `tenant`'s documents)."""
        job: dict[str, Any] = {"id": uuid.uuid4().hex, "status": "queued", "action": action, "documents": documents}
        job["tenant"] = tenant
        job["pid"] = os.getpid()  # the process that runs it: `recover` tells a dead one's jobs from live ones
        job |= {"created": time.time(), "started": None, "finished": None, "report": None, "error": None}
        self._write(job)
        self._enqueue(job)
        return job

    def _enqueue(self, job: dict[str, Any]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="rag-index-jobs", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """Job `job_id` of this queue, or None."""
        path = self.folder / f"{job_id}.json"
        if not _JOB_ID.match(job_id) or not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def recover(self) -> list[str]:
        """Take over the jobs of a server process that is gone (killed, crashed): its queued jobs are queued here
        again; the job it was running is marked failed and its uploads are moved to `quarantine/`, so the next
        job does not take up the file that may have brought the server down. Returns the ids of the failed jobs.
        Called once when the server starts."""
        if not self.folder.is_dir():
            return []
        failed, requeued = [], []
        for path in sorted(self.folder.glob("*.json"), key=lambda path: path.stat().st_mtime):
            try:
                job = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if job.get("status") not in ("queued", "running") or _alive(job.get("pid")):
                continue
            if job["status"] == "queued":
                job["pid"] = os.getpid()
                self._write(job)
                self._enqueue(job)
                requeued.append(job["id"])
                continue
            moved = self.documents.quarantine(job.get("documents") or [])
            job["error"] = (
                f"the server stopped while this job ran; its uploads {moved} were moved to quarantine/ beside the "
                "index: check them, then upload them again"
            )
            job |= {"status": "failed", "finished": time.time()}
            self._write(job)
            failed.append(job["id"])
        if failed or requeued:
            logger.warning(
                "a previous server stopped mid-job: %d job(s) marked failed (%s), %d queued again",
                len(failed),
                ", ".join(failed),
                len(requeued),
            )
        return failed

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the running job (queued jobs stay 'queued' on disk)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            job |= {"status": "running", "started": time.time()}
            self._write(job)
            try:
                report = self._run(self.documents.root)
                self._after()
                job |= {"status": "succeeded", "report": report}
            except ResourceLimitError as exc:  # the uploads of this job brought it down: keep them out of the next
                moved = self.documents.quarantine(job["documents"])
                job |= {"status": "failed", "error": f"{exc}; its uploads {moved} were moved to quarantine/"}
            except RagError as exc:
                job |= {"status": "failed", "error": str(exc)}
            except Exception:
                logger.exception("indexing job %s failed", job["id"])
                job |= {"status": "failed", "error": "internal error; the server log has the details"}
            job["finished"] = time.time()
            self._write(job)

    def _write(self, job: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{job['id']}.tmp"
        tmp.write_text(json.dumps(job), encoding="utf-8")
        os.replace(tmp, self.folder / f"{job['id']}.json")


def _alive(pid: Any) -> bool:
    """Whether process `pid` is running (False for a missing or foreign-looking pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
