"""Per-key state: files, tasks, ledger, journal, webhook deliveries, config overrides.

All of it lives in memory except bytes (uploads and results), which live under a temporary
directory, so memory stays bounded however many tasks run. Every structure is guarded by a lock:
handlers run on the event loop, the engine and compose run in worker threads.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ids, profiles
from .ratelimit import Bucket
from .settings import NOT_PER_KEY, SandboxSettings

JOURNAL_MAX = 50_000  # a 1,000-picture batch makes about 5,000 entries; the benches read them all
WEBHOOKS_MAX = 2000


@dataclass
class StoredFile:
    file_id: str
    file_name: str
    content_type: str
    file_size: int
    upload_token: str
    path: Path
    uploaded: bool = False


@dataclass
class Task:
    task_id: str
    key: str
    slug: str
    src_file_id: str | None
    src_file_url: str | None
    file_name: str | None
    prompt: str | None
    template_id: str | None
    kind: str
    scripted_error: str | None
    engine_fault: bool
    lost: bool
    created: float
    due: float  # monotonic
    last_touch: float  # monotonic: creation or last poll
    duration_s: float = 0.0  # vendor seconds
    times_out_at: float | None = None  # monotonic: from then on its polls answer TaskTimeout (task_timeout_s)
    status: str = "running"
    error: str | None = None
    error_message: str | None = None
    finished: float | None = None
    charged: int = 0
    polls: int = 0
    expired: bool = False
    deleted: bool = False
    result_path: Path | None = None
    result_token: str = field(default_factory=ids.token)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id, "slug": self.slug, "status": self.status,
            "created": self.created, "finished": self.finished,
            "duration_s": self.duration_s, "charged": self.charged,
            "polls": self.polls, "prompt": self.prompt, "template_id": self.template_id,
            "type": self.kind, "src_file_id": self.src_file_id, "src_file_url": self.src_file_url,
            "error": self.error, "error_message": self.error_message, "expired": self.expired,
            "deleted": self.deleted, "lost": self.lost,
        }


@dataclass
class Charge:
    history_id: int
    task_id: str
    units: int
    time: float


class KeyState:
    """Everything one API key owns."""

    def __init__(self, key: str, base: SandboxSettings, root: Path) -> None:
        self.key = key
        self.root = root
        self.lock = threading.RLock()
        self._base = base
        self.overrides: dict[str, Any] = {}
        self.config = base
        self._reset_data()

    def _reset_data(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.tasks: dict[str, Task] = {}
        self.charges: list[Charge] = []
        self.adjustment = 0
        self.lot_id = ids.big_id()
        self.journal: deque[dict[str, Any]] = deque(maxlen=JOURNAL_MAX)
        self.webhooks: deque[dict[str, Any]] = deque(maxlen=WEBHOOKS_MAX)
        self.bucket = Bucket()
        self.counters: dict[str, itertools.count[int]] = {}
        self.burst_left = 0
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        with self.lock:
            self.overrides = {}
            self.config = self._base
            self._reset_data()

    def patch_config(self, changes: dict[str, Any]) -> SandboxSettings:
        """Validate and apply per-key overrides; raises ValueError on unknown or global fields."""
        bad = sorted(set(changes) - set(SandboxSettings.model_fields) | set(changes) & NOT_PER_KEY)
        if bad:
            raise ValueError(f"Unknown or read-only config fields: {', '.join(bad)}")
        if "profile" in changes:  # the profile's values, under the fields named in this PATCH
            changes = {**profiles.patch_body(changes["profile"]), **changes}
        with self.lock:
            merged = {**self.overrides, **changes}
            data = {**self._base.model_dump(), **merged}
            self.config = SandboxSettings.model_validate(data)  # raises ValidationError
            self.overrides = merged
            return self.config

    def rng(self, purpose: str) -> random.Random:
        """A generator fixed by (seed, purpose, how many times this key asked for it)."""
        with self.lock:
            n = next(self.counters.setdefault(purpose, itertools.count()))
        return random.Random(f"{self.config.seed}:{purpose}:{n}")  # noqa: S311 - seeded: reproducible runs

    # ledger
    @property
    def charged_total(self) -> int:
        return sum(c.units for c in self.charges)

    @property
    def balance(self) -> int:
        return self.config.starting_balance + self.adjustment - self.charged_total

    def set_balance(self, balance: int) -> None:
        with self.lock:
            self.adjustment = balance - self.config.starting_balance + self.charged_total

    def charge(self, task: Task, units: int) -> bool:
        """Charge on success; False (nothing charged) if the balance no longer covers it."""
        with self.lock:
            if self.balance < units:
                return False
            self.charges.append(Charge(ids.big_id(), task.task_id, units, time.time()))
            task.charged = units
            return True

    def journal_add(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.journal.append(entry)

    def live_task(self, task_id: str) -> Task | None:
        """The task as the vendor API sees it: None once unknown, deleted, expired or purged."""
        with self.lock:
            task = self.tasks.get(task_id)
        if task is None or task.deleted:
            return None
        window = self.config.real(self.config.polling_window_s)
        if not task.expired and time.monotonic() - task.last_touch > window:
            task.expired = True
        return None if task.expired else task


class Registry:
    """All keys' state plus the server-wide maps (storage tokens, due-task heap, IP buckets)."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self._pattern = re.compile(settings.key_pattern)
        self._tmp = tempfile.TemporaryDirectory(prefix="backdrop-sandbox-")
        self.root = Path(self._tmp.name)
        self.lock = threading.RLock()
        self.keys: dict[str, KeyState] = {}
        self.upload_tokens: dict[str, tuple[str, str]] = {}  # token -> (key, file_id)
        self.result_tokens: dict[str, tuple[str, str]] = {}  # token -> (key, task_id)
        self.ip_buckets: dict[str, Bucket] = {}
        self._due: list[tuple[float, int, str, str]] = []
        self._due_seq = itertools.count()
        self._dirs = itertools.count()

    def close(self) -> None:
        self._tmp.cleanup()

    def key_allowed(self, key: str) -> bool:
        return key in self.settings.api_keys or self._pattern.fullmatch(key) is not None

    def state(self, key: str) -> KeyState:
        with self.lock:
            st = self.keys.get(key)
            if st is None:
                st = KeyState(key, self.settings, self.root / f"k{next(self._dirs)}")
                self.keys[key] = st
            return st

    def reset(self, key: str) -> None:
        st = self.state(key)
        with self.lock:
            for tokens in (self.upload_tokens, self.result_tokens):
                for tok in [t for t, (k, _) in tokens.items() if k == key]:
                    del tokens[tok]
        st.reset()

    def ip_bucket(self, address: str) -> Bucket:
        with self.lock:
            return self.ip_buckets.setdefault(address, Bucket())

    def schedule(self, task: Task) -> None:
        with self.lock:
            heapq.heappush(self._due, (task.due, next(self._due_seq), task.key, task.task_id))

    def pop_due(self, now: float) -> list[Task]:
        out: list[Task] = []
        with self.lock:
            while self._due and self._due[0][0] <= now:
                _, _, key, tid = heapq.heappop(self._due)
                st = self.keys.get(key)
                task = st.tasks.get(tid) if st else None
                if task is not None and task.status == "running":
                    out.append(task)
        return out

    def purge(self) -> None:
        """Forget tasks older than their key's task_ttl_s (and their result files)."""
        now = time.time()
        with self.lock:
            states = list(self.keys.values())
        for st in states:
            ttl = st.config.real(st.config.task_ttl_s)
            with st.lock:
                old = [t for t in st.tasks.values()
                       if now - t.created > ttl and t.status != "running"]
                for t in old:
                    del st.tasks[t.task_id]
            for t in old:
                with self.lock:
                    self.result_tokens.pop(t.result_token, None)
                if t.result_path:
                    t.result_path.unlink(missing_ok=True)
