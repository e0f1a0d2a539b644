"""The state directory (`serve --state-dir DIR`): what a replica promised survives kill -9 and restarts.

Holds go to an append-only log (`holds.<gen>.log`, one JSON line per reservation or release, with its wall-clock
time `t`: an outside check can replay what every replica held when), written in ledger order and fsync'd before the caller hears of the change: many callers share one fsync (group commit). Once the log
grows past `compact_after` lines, a new log generation is started and a snapshot of the live holds is written
beside it (`holds.snap`, written to a temporary file, fsync'd and renamed), then the old log is dropped. Replay is
idempotent (a hold already live is not booked twice, a release of a hold not live does nothing), so a snapshot that
already holds a few records of the new log is harmless. Expired holds are skipped on restore.

Also kept: the operator's link changes (`links.json`, written whole, atomically) and the boot numbers this
directory's runs used (`boots.json`), so an embedded replica never reuses one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from scheduler.engine.ledger import Ledger

COMPACT_AFTER = 20_000  # log lines between snapshots
SNAPSHOT = "holds.snap"
LINKS = "links.json"
BOOTS = "boots.json"
KEEP_BOOTS = 4096


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a whole file so that a crash leaves either the old content or the new, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _block_record(first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                  expires: list[float], owner: str) -> dict:
    keys = list(dict.fromkeys(pools))
    index = {k: i for i, k in enumerate(keys)}
    return {"r": first, "o": owner, "keys": keys, "k": [index[p] for p in pools], "a": amounts,
            "c": [c if c != float("inf") else None for c in ceilings], "e": expires}


def _restore_record(ledger: Ledger, rec: dict) -> None:
    if "r" in rec:
        keys = rec["keys"]
        ledger.restore(rec["r"], [keys[k] for k in rec["k"]], rec["a"],
                       [float("inf") if c is None else c for c in rec["c"]], rec["e"], rec["o"])
    elif "x" in rec:
        ledger.release_many(rec["x"])


class StateDir:
    """One replica's directory; `ledger()` builds the restored ledger and keeps journaling into it."""

    def __init__(self, path: str | Path, compact_after: int = COMPACT_AFTER):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.compact_after = compact_after
        self._write = threading.Lock()  # file switch vs appends
        self._sync = threading.Lock()  # one fsync at a time; the others wait and usually find their line synced
        self._compacting = threading.Lock()
        self._file = None
        self._gen = 0
        self._written = 0  # tickets: lines written so far (all generations)
        self._synced = 0
        self._since = 0  # lines in the current generation
        self._ledger: Ledger | None = None

    # --- boots and links ---------------------------------------------------------------------------------------
    def used_boots(self) -> list[int]:
        try:
            return list(json.loads((self.path / BOOTS).read_text())["boots"])
        except FileNotFoundError:
            return []

    def add_boot(self, boot: int) -> None:
        boots = (self.used_boots() + [boot])[-KEEP_BOOTS:]
        write_atomic(self.path / BOOTS, json.dumps({"boots": boots}).encode())

    def links(self) -> list[tuple[str, bool]]:
        """The operator's link changes in force at the last save, in the order they were made."""
        try:
            return [(x["id"], bool(x["up"])) for x in json.loads((self.path / LINKS).read_text())["overrides"]]
        except FileNotFoundError:
            return []

    def save_links(self, overrides: Iterable[tuple[str, bool]]) -> None:
        doc = {"overrides": [{"id": i, "up": up} for i, up in overrides]}
        write_atomic(self.path / LINKS, json.dumps(doc).encode())

    # --- holds ---------------------------------------------------------------------------------------------------
    def _logs(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.path.glob("holds.*.log"):
            try:
                out.append((int(p.name.split(".")[1]), p))
            except ValueError:
                continue
        return sorted(out)

    def ledger(self, first_id: int) -> Ledger:
        """A ledger holding every hold still live at the last durable write, journaling from now on into this
        directory; new ids start at `first_id`."""
        ledger = Ledger(first_id=first_id)
        start = 0
        try:
            snap = json.loads((self.path / SNAPSHOT).read_text())
            start = snap["gen"]
            for rec in snap["blocks"]:
                _restore_record(ledger, rec)
        except FileNotFoundError:
            pass
        for gen, path in self._logs():
            if gen < start:
                continue
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break  # the torn tail of a write a crash cut short: it was never acknowledged
                    _restore_record(ledger, rec)
            self._gen = max(self._gen, gen)
        self._ledger = ledger
        self.compact()  # a fresh snapshot of what was restored, and a new empty log
        ledger.journal = self
        return ledger

    def compact(self) -> None:
        """Start a new log generation, snapshot the live holds, drop older logs."""
        if self._ledger is None or not self._compacting.acquire(blocking=False):
            return
        try:
            with self._write:  # appends wait for this switch (an fsync, once per `compact_after` lines)
                if self._file is not None:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                    self._file.close()
                self._gen += 1
                gen = self._gen
                self._file = open(self.path / f"holds.{gen}.log", "a", encoding="utf-8")
                self._since = 0
            blocks = [_block_record(*b) for b in self._ledger.live_blocks()]
            write_atomic(self.path / SNAPSHOT, json.dumps({"gen": gen, "blocks": blocks}).encode())
            for g, path in self._logs():
                if g < gen:
                    path.unlink(missing_ok=True)
            _fsync_dir(self.path)
        finally:
            self._compacting.release()

    # --- the ledger's Journal protocol (called under the ledger's lock) --------------------------------------------
    def _append(self, rec: dict) -> int:
        rec["t"] = time.time()
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self._write:
            self._file.write(line)
            self._written += 1
            self._since += 1
            return self._written

    def reserved(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                 expires_wall: list[float], owner: str) -> int:
        return self._append(_block_record(first, pools, amounts, ceilings, expires_wall, owner))

    def released(self, ids: list[int]) -> int:
        return self._append({"x": ids})

    def durable(self, ticket: int) -> None:
        """Return once line `ticket` is on disk (one fsync covers every line written before it started)."""
        with self._sync:
            if self._synced < ticket:
                with self._write:  # a text file is not thread-safe: flush where appends happen
                    upto, f = self._written, self._file
                    f.flush()
                    fd = os.dup(f.fileno())  # the file may be switched and closed while we sync
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._synced = max(self._synced, upto)
        if self._since > self.compact_after:
            self.compact()

    def close(self) -> None:
        with self._write:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
