# engine/log/backup.py: an online backup of the log: a consistent copy of every record up to the durable seq,
# taken while the log takes writes, that opens as a log of its own with no recovery at all (issue 18 item 5).
#
# How: on the owner's thread (the loop), one short step notes the durable seq, the segments that hold it and
# the byte offset where it ends in the last of them. A worker thread then builds `DEST.partial/`:
# - every sealed segment before the last is hard-linked (a sealed segment's bytes never change: retention
#   replaces a file by renaming a new one over it, never by writing into it), or copied on another file system;
# - the last segment is copied up to that offset, so the copy is a sealed-size file ending at the durable seq;
# - meta.json (first_seq, next_seq = durable + 1), highwater.json (naming the copy's last segment, the log's
#   recorded gaps) and log-id are written for the copy, other state files the caller names (the user table)
#   are copied under their own lock, every file and the directory are fsynced;
# - MANIFEST.json is written last, then `DEST.partial` is renamed to `DEST` (and the parent fsynced).
# So a backup is either `DEST` with a MANIFEST (complete: every record 1..seq of the history, the compacted
# segments before it) or `DEST.partial` (unfinished: a crash or kill in the middle; never opened by anything
# here, removed by the next rotation). Retention must not run during a backup (it renames and removes the
# segments being linked): the server runs both from one maintenance task; the CLI holds the log's lock.

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import time
from typing import Callable

from . import recovery as _recovery
from . import segment as _seg

MANIFEST = "MANIFEST.json"
PARTIAL = ".partial"
_NAME_RE = re.compile(r"^\d{8}T\d{6}Z-\d+$")  # backups made by `rotate`: <UTC time>-<seq>


class Plan:
    """What the owner's step saw: the durable seq and (path, first_seq, bytes to copy, link?) per segment."""

    def __init__(self, log):
        seq = log.durable_seq
        self.seq = seq
        self.first_seq = log.first_seq
        self.gaps = list((log._hw or {}).get("gaps") or [])
        self.log_dir = log.directory
        self.files: list[tuple[str, int, int, bool]] = []
        for seg in list(log._segments):
            if seg.first_seq > seq or seg.pending:
                break
            if seg.used == 0:
                continue
            if seg.last_seq <= seq and seg.sealed:
                self.files.append((seg.path, seg.first_seq, seg.used, True))
            else:  # the segment holding the durable seq, still written to: copy its bytes up to there
                end = log._offset_of(seg, seq + 1, seg.used)
                if end:
                    self.files.append((seg.path, seg.first_seq, end, False))
                break
        if self.files:  # the copy's last segment is always a copy (it is the active one of the copy)
            path, first, n, _link = self.files[-1]
            self.files[-1] = (path, first, n, False)


def take(plan: Plan, dest: str, on_file: Callable[[str], None] | None = None, extras=()) -> dict:
    """Worker thread: write the backup described by `plan` into `dest` (via `dest.partial`). `extras`: (file,
    lock file) names of other state in the log directory (the user table) copied whole, under their flock."""
    dest = os.path.abspath(dest)
    if os.path.exists(dest):
        raise FileExistsError(f"{dest} exists; a backup never overwrites")
    tmp = dest + PARTIAL
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.perf_counter()
    linked = copied = nbytes = 0
    for path, first, size, link in plan.files:
        target = os.path.join(tmp, _seg.segment_name(first))
        if link and _try_link(path, target):
            linked += 1
        else:
            _copy_prefix(path, target, size)
            copied += 1
        nbytes += size
        if on_file is not None:
            on_file(target)
    last_first = plan.files[-1][1] if plan.files else plan.seq + 1
    last_size = plan.files[-1][2] if plan.files else 0
    _seg.write_meta(tmp, {"first_seq": plan.first_seq if plan.files else plan.seq + 1, "next_seq": plan.seq + 1})
    if plan.files:  # (an empty copy needs none: its first open makes one)
        gaps = [g for g in plan.gaps if isinstance(g, list) and len(g) == 2 and g[1] <= plan.seq]
        _seg.write_highwater(tmp, {"segment": last_first, "gaps": gaps,
                                   "bound": max(_recovery.seq_bound(last_first, last_size), plan.seq + 1)})
    for name, lock in extras:
        _copy_locked(os.path.join(plan.log_dir, name), os.path.join(tmp, name), os.path.join(plan.log_dir, lock))
    log_id = os.path.join(plan.log_dir, "log-id")
    if os.path.exists(log_id):
        shutil.copyfile(log_id, os.path.join(tmp, "log-id"))
    manifest = {"complete": True, "seq": plan.seq, "first_seq": plan.first_seq, "segments": len(plan.files),
                "bytes": nbytes, "linked": linked, "copied": copied, "source": plan.log_dir,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _seg.write_file_atomic(os.path.join(tmp, MANIFEST), [json.dumps(manifest, sort_keys=True).encode() + b"\n"])
    _seg.fsync_dir(tmp)
    os.rename(tmp, dest)
    _seg.fsync_dir(os.path.dirname(dest))
    manifest["path"] = dest
    manifest["seconds"] = round(time.perf_counter() - t0, 3)
    return manifest


def _copy_locked(src: str, dst: str, lock: str) -> None:
    """Copy `src` (if it exists) while holding an exclusive flock on `lock`, as its writer does; fsync."""
    import fcntl

    if not os.path.exists(src):
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _copy_prefix(src, dst, os.path.getsize(src))
    finally:
        os.close(fd)


def _try_link(src: str, dst: str) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            return False
        raise


def _copy_prefix(src: str, dst: str, size: int) -> None:
    """Copy the first `size` bytes of `src` to a new file `dst` and fsync it (copy_file_range where it works)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        left = size
        off = 0
        while left:
            try:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), left, off, off)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                n = 0
            if n == 0:
                chunk = os.pread(fin.fileno(), min(left, 1 << 20), off)
                if not chunk:
                    raise OSError(errno.EIO, f"{src} ended before {size} bytes")
                n = os.pwrite(fout.fileno(), chunk, off)
            off += n
            left -= n
        fout.flush()
        os.fsync(fout.fileno())


def backup_sync(log, dest: str, on_file: Callable[[str], None] | None = None, extras=()) -> dict:
    """A backup of an open log from the thread that owns it (the CLI, tests)."""
    log.flush()
    return take(Plan(log), dest, on_file, extras)


async def backup_async(log, dest: str, extras=()) -> dict:
    """A backup from the loop: one short step on it, the copying on a worker thread."""
    plan = Plan(log)
    return await asyncio.to_thread(take, plan, dest, None, extras)


def finished(folder: str) -> list[str]:
    """Names of the finished backups `rotate` made in `folder`, oldest first."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    done = [n for n in names if _NAME_RE.match(n) and os.path.exists(os.path.join(folder, n, MANIFEST))]
    return sorted(done, key=lambda n: (n[:16], int(n[17:])))  # by time, then seq


async def rotate_async(log, folder: str, keep: int, extras=()) -> dict:
    """A new backup `<UTC time>-<seq>` in `folder` (none if the newest one has the same seq); then only the
    newest `keep` finished backups are kept and unfinished ones (`*.partial`, left by a crash) are removed."""
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(PARTIAL):
            await asyncio.to_thread(shutil.rmtree, os.path.join(folder, name), True)
    plan = Plan(log)
    done = finished(folder)
    if done and int(done[-1][17:]) == plan.seq:  # nothing new since the newest backup
        return {"skipped": True, "seq": plan.seq, "path": os.path.join(folder, done[-1]), "kept": done}
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{plan.seq}"
    result = await asyncio.to_thread(take, plan, os.path.join(folder, name), None, extras)
    for old in finished(folder)[:-keep]:
        await asyncio.to_thread(shutil.rmtree, os.path.join(folder, old), True)
    result["kept"] = finished(folder)
    return result
