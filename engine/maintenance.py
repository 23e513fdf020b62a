"""Background upkeep of the store while the server serves: retention passes, key-index checkpoints, backups.

One task runs them one at a time (a retention pass moves keys, which a checkpoint being taken must not see; a
backup copies the segments retention rewrites), each as a coroutine whose heavy work runs on worker threads
(engine/log/compaction.py, engine/keyspace/checkpoint.py, engine/log/backup.py). What must stay true: at most
one job runs at a time; none runs after `stop()` returned; a failing job is logged and retried at its next turn,
never stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

log = logging.getLogger("homestream.maintenance")

try:  # state kept beside the log that a backup copies: (file, lock file) in the data directory
    from .policy.users import FILE_NAME as _USERS_FILE, LOCK_NAME as _USERS_LOCK

    BACKUP_EXTRAS: tuple = ((_USERS_FILE, _USERS_LOCK),)
except ImportError:  # a checkout without the policy package
    BACKUP_EXTRAS = ()


class Maintenance:
    def __init__(self, app: Any, settings: Any, loop: asyncio.AbstractEventLoop):
        self.app = app
        self.settings = settings
        self.loop = loop
        self.lock = asyncio.Lock()
        self.stopping = False
        self._tasks: list[asyncio.Task] = []
        self._current: Any = None  # the running retention pass (its `stop` flag ends it at a segment boundary)
        self.checkpoint_seq = app.log.last_seq if getattr(app.keyspace, "checkpoint_used", False) else 0
        self.last: dict[str, dict] = {}

    def start(self) -> None:
        s = self.settings
        if s.retention_age or s.retention_bytes:
            self._every(s.retention_interval, self.retention)
        if s.checkpoint_interval > 0 and self.app.keyspace is not None:  # a relay has no key index
            self._every(s.checkpoint_interval, self.checkpoint)
        if s.backup_interval and s.backup_dir:
            self._every(s.backup_interval, self.backup)

    def _every(self, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
        async def repeat() -> None:
            while not self.stopping:
                await asyncio.sleep(interval)
                if self.stopping:
                    return
                try:
                    await job()
                except Exception:
                    log.exception("%s failed; will retry", job.__name__)

        self._tasks.append(self.loop.create_task(repeat()))

    async def retention(self) -> dict:
        s = self.settings
        async with self.lock:
            if self.stopping:
                return {}
            if self.app.keyspace is None:  # a relay: its own liveness rule (engine/relay/app.py), run inline
                result = self.app.apply_retention(s.retention_age, s.retention_bytes)
            else:
                self._current = self.app.keyspace.retention_pass(s.retention_age, s.retention_bytes)
                try:
                    result = await self._current.run()
                finally:
                    self._current = None
        self.last["retention"] = result
        if result.get("compacted") or result.get("removed"):
            log.info("retention: %s", result)
            if self.settings.checkpoint_interval > 0 and self.app.keyspace is not None:
                await self.checkpoint(force=True)  # the old checkpoint names segments that changed
        return result

    async def checkpoint(self, force: bool = False) -> dict:
        """Write checkpoint.bin if enough records came since the last one (or `force`)."""
        log_ = self.app.log
        if not force and log_.last_seq - self.checkpoint_seq < self.settings.checkpoint_min_records:
            return {}
        async with self.lock:
            if self.stopping and not force:
                return {}
            writer = self.app.keyspace.checkpoint_writer()
            result = await writer.run()
        self.checkpoint_seq = result["seq"]
        result["longest_loop_step_ms"] = round(writer.longest_step * 1000, 2)
        self.last["checkpoint"] = result
        log.info("checkpoint written: %s", result)
        return result

    async def backup(self, dest: str | None = None) -> dict:
        from .log import backup as _backup

        s = self.settings
        async with self.lock:
            if self.stopping:
                return {}
            if dest is None:
                result = await _backup.rotate_async(self.app.log, s.backup_dir, s.backup_keep, BACKUP_EXTRAS)
            else:
                result = await _backup.backup_async(self.app.log, dest, BACKUP_EXTRAS)
        self.last["backup"] = result
        log.info("backup written: %s", result)
        return result

    async def backup_now(self) -> None:
        """A backup into --backup-dir now (SIGUSR1); failures are logged."""
        try:
            await self.backup()
        except Exception:
            log.exception("backup failed")

    async def stop(self, deadline: float) -> None:
        """Stop scheduling, end a running retention pass at its next segment boundary, wait for the job."""
        self.stopping = True
        if self._current is not None:
            self._current.stop = True
        try:
            await asyncio.wait_for(self.lock.acquire(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            log.warning("a maintenance job is still running at the shutdown deadline")
            return
        try:
            for task in self._tasks:  # none is in a job now: each sleeps or waits for the lock
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self.lock.release()
