"""Hot reload: poll the topology file, swap in a valid edit, refuse an invalid one and keep serving the last good.

Polling a content hash every `interval` seconds needs no dependency and works the same on every filesystem
(coarse mtimes included) and with editors that replace the file by rename; hashing a topology file takes
microseconds. A change is re-read after `settle` seconds, so a
file caught half-written is looked at again rather than refused.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from scheduler.model.loader import LoadError, Problem, load_topology
from scheduler.service.state import ReloadOutcome, TopologyState

log = logging.getLogger("scheduler.reload")


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
        """A digest of the file's content, or of the read error (so a vanished file is reported once)."""
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as e:
            return f"error:{e.errno}"

    def poll(self) -> ReloadOutcome | None:
        """Look at the file once; returns the outcome when something was applied or refused."""
        with self._lock:
            digest = self._read()
            if digest == self._seen:
                return None
            if self._stop.wait(self.settle):
                return None
            again = self._read()
            if again != digest:
                return None  # still being written: next poll
            self._seen = digest
            return self._load(quiet=True)

    def reload_now(self) -> ReloadOutcome:
        """Read the file at once (an operator asked): apply it, refuse it, or confirm what is already served."""
        with self._lock:
            self._seen = self._read()
            outcome = self._load(quiet=False)
            return outcome if outcome is not None else self.state.last

    def _load(self, quiet: bool) -> ReloadOutcome | None:
        try:
            loaded = load_topology(self.path)
        except LoadError as e:
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
                    self.path, len(problems), self.state.version)
        return self.state.refuse(problems)
