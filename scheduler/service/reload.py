"""Hot reload: poll the topology file, swap in a valid edit, refuse an invalid one and keep serving the last good.

Polling a content hash every `interval` seconds needs no dependency and works the same on every filesystem
(coarse mtimes included) and with editors that replace the file by rename; hashing a topology file takes
microseconds. A change is re-read after `settle` seconds, so a
file caught half-written is looked at again rather than refused.

A file that cannot be read (an I/O error: too many open files, permission denied, the file missing) is not an
edit: nothing is refused, the served version stays, and the read is tried again at the next poll. It is logged
once per error (event `topology_watch_error`, and `topology_watch_recovered` when the file reads again) and
counted on every failed read by the `error_listeners` (metric `scheduler_topology_watch_errors_total`). Only a file
that was read and is invalid is a refused edit (event `topology_edit_refused`, metric
`scheduler_topology_reload_failures_total`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scheduler.model.loader import LoadError, Problem, load_topology
from scheduler.service.state import ReloadOutcome, TopologyState

log = logging.getLogger("scheduler.reload")
READ_FAILED = "cannot read:"  # how the loader words a file it could not read (an I/O error, not a bad edit)


class Unreadable(Exception):
    """The topology file could not be read (an OSError, or the loader's "cannot read" for one)."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class FileWatcher:
    def __init__(self, state: TopologyState, path: str | Path, interval: float = 0.5, settle: float = 0.1):
        self.state = state
        self.path = Path(path)
        self.interval = interval
        self.settle = settle
        self._seen: str | None = None  # digest (or read error) last acted on; None: compare versions first time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the poller and ReloadTopology calls take turns
        self._failing: str | None = None  # the I/O error being reported (logged once), None while the file reads
        self.error_listeners: list[Callable[[OSError], None]] = []  # told of every failed read (metrics)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="topology-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # the watcher must outlive any surprise; the service keeps its topology
                log.exception("topology watcher: unexpected error while polling %s", self.path)

    def _read(self) -> str:
        """A digest of the file's content; Unreadable when it cannot be read."""
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as e:
            raise Unreadable(e.strerror or str(e), e.errno) from e

    def poll(self) -> ReloadOutcome | None:
        """Look at the file once; returns the outcome when something was applied or refused (None also when the
        file could not be read: that is reported as a watch error, not an outcome)."""
        with self._lock:
            try:
                digest = self._read()
                if digest == self._seen:
                    self._recovered()
                    return None
                if self._stop.wait(self.settle):
                    return None
                again = self._read()
                if again != digest:
                    return None  # still being written: next poll
                outcome = self._load(quiet=True)
            except Unreadable as e:
                self._unreadable(e)
                return None
            self._seen = digest
            self._recovered()
            return outcome

    def reload_now(self) -> ReloadOutcome:
        """Read the file at once (an operator asked): apply it, refuse it, or confirm what is already served.
        When the file cannot be read, the answer says so (not ok, "cannot read: ...") but nothing is recorded as
        a refused edit: the served version and the last reload result stay."""
        with self._lock:
            try:
                digest = self._read()
                outcome = self._load(quiet=False)
            except Unreadable as e:
                self._unreadable(e)
                problem = Problem(str(self.path), 1, "", f"{READ_FAILED} {e}")
                return ReloadOutcome(False, str(self.path), "", (problem,), time.time(), self.state.version)
            self._seen = digest
            self._recovered()
            return outcome if outcome is not None else self.state.last

    def _unreadable(self, e: Unreadable) -> None:
        error = OSError(e.errno, str(e))
        for listener in self.error_listeners:
            listener(error)
        if self._failing != str(e):
            self._failing = str(e)
            log.warning("topology watcher: cannot read %s: %s; not an edit, nothing refused: still serving version "
                        "%s, retrying every %g s", self.path, e, self.state.version, self.interval,
                        extra={"event": "topology_watch_error", "path": str(self.path), "errno": e.errno,
                               "error": str(e), "version": self.state.version})

    def _recovered(self) -> None:
        if self._failing is not None:
            log.info("topology watcher: %s reads again (after: %s)", self.path, self._failing,
                        extra={"event": "topology_watch_recovered", "path": str(self.path)})
            self._failing = None

    def _load(self, quiet: bool) -> ReloadOutcome | None:
        try:
            loaded = load_topology(self.path)
        except LoadError as e:
            if len(e.problems) == 1 and e.problems[0].message.startswith(READ_FAILED):
                # read fine a moment ago (the digest), then not: an I/O error (e.g. EMFILE), not a bad edit
                raise Unreadable(e.problems[0].message[len(READ_FAILED):].strip()) from None
            return self._refuse(e.problems)
        except Exception as e:  # a loader surprise must not stop the watcher, nor let the file in
            log.exception("topology %s: the loader failed", self.path)
            return self._refuse([Problem(str(self.path), 1, "", f"cannot load: {type(e).__name__}: {e}")])
        if loaded.version == self.state.version:
            if quiet and self.state.last.ok:
                return None
            return self.state.confirm(loaded)
        try:
            outcome = self.state.apply(loaded)
        except Exception as e:  # valid YAML the engine still cannot build: refuse it like a schema error
            log.exception("topology %s: cannot build the engine snapshot", self.path)
            return self._refuse([Problem(str(self.path), 1, "", f"cannot build the topology: {e}")])
        log.info("topology %s: now serving version %s", self.path, loaded.version)
        return outcome

    def _refuse(self, problems: list[Problem]) -> ReloadOutcome:
        for p in problems:
            log.warning("%s", p)
        log.warning("topology %s: edit refused (%d problem(s)); still serving version %s",
                    self.path, len(problems), self.state.version,
                    extra={"event": "topology_edit_refused", "path": str(self.path), "problems": len(problems),
                           "version": self.state.version})
        return self.state.refuse(problems)
