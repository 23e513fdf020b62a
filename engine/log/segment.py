# engine/log/segment.py: the only module of the log that touches files: segment files, their mmaps, the
# directory, the metadata file and the directory lock.
#
# A segment is a file named by the seq of its first record, 20 decimal digits + ".seg", so names sort like seqs.
# The active segment is pre-allocated with posix_fallocate (real blocks: a full disk is LogFull here, never a
# SIGBUS on a later page touch) and mapped shared; records are written into the map by store.py.
#
# Invariants:
# - a new segment is created as "<name>.seg.pending" and renamed to "<name>.seg" only by the committer, after
#   the previous segment was sealed (synced and truncated to its data). So every ".seg" file but the last is
#   sealed and durable, and a ".pending" file found at open holds only unacknowledged records (it is removed);
# - a sealed segment's file size is exactly its data; the active one's tail beyond its data is zeros;
# - a compacted segment is written as "<name>.seg.compact", fsynced, then renamed over its original name
#   (atomic), then renamed to the seq of its first record; a ".compact" found at open is removed;
# - highwater.json ({"segment", "bound", "gaps"}, see store.py `_note_highwater`) is written atomically like
#   meta.json and only ever read as evidence of what existed: a missing or damaged one weakens checks, no more;
# - nothing reads a segment's map past `used` (a sealed file is shorter than its map: that would be SIGBUS);
# - `retire()` closes the descriptor but never unmaps while memoryviews may exist: the mapping goes away when
#   the last view into it is released.

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import re
import threading

from engine.errors import LogFull, StorageError

SEGMENT_SUFFIX = ".seg"
PENDING_SUFFIX = ".seg.pending"
COMPACT_SUFFIX = ".seg.compact"
META_NAME = "meta.json"
HIGHWATER_NAME = "highwater.json"
LOCK_NAME = "LOCK"
_NAME_RE = re.compile(r"(\d{20})\.seg\Z")
_ZERO_CHUNK = bytes(1 << 20)


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    m = _NAME_RE.match(name)
    return int(m.group(1)) if m else None


class Segment:
    """One segment file and its shared mapping. Attributes other modules read: id, path, first_seq, capacity,
    used, count, last_seq, last_ts, sealed, mv (a memoryview over the whole map), index (a SparseIndex)."""

    _ids: "SegmentIds"  # set below: made on the loop and by retention's worker thread

    def __init__(self, path: str, fd: int, first_seq: int, capacity: int):
        self.id = Segment._ids.take()
        self.loc_base = self.id << 40  # store.LOC_SHIFT
        self.path = path
        self.fd = fd
        self.first_seq = first_seq
        self.capacity = capacity
        self.mm = mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) if capacity else None
        self.mv = memoryview(self.mm) if self.mm is not None else memoryview(b"")
        self.used = 0
        self.count = 0
        self.last_seq = first_seq - 1
        self.last_ts = 0
        self.sealed = False
        self.pending = path.endswith(PENDING_SUFFIX)
        self.retired = False
        self.index = None  # set by store.py

    def adopt_id(self, seg_id: int) -> None:
        """Take the id a checkpoint knew this segment by (engine/log/trusted.py `adopt_ids`), before any
        location in it is handed out."""
        self.id = seg_id
        self.loc_base = seg_id << 40

    # ---- creation ----

    @classmethod
    def create(cls, directory: str, first_seq: int, capacity: int) -> "Segment":
        """A new pre-allocated segment under its pending name. LogFull if the disk refuses the space."""
        path = os.path.join(directory, segment_name(first_seq) + ".pending")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _storage_error(exc, f"cannot create segment {path}") from exc
        try:
            allocate(fd, capacity)
        except BaseException:
            os.close(fd)
            _unlink_quiet(path)
            raise
        try:
            return cls(path, fd, first_seq, capacity)
        except OSError as exc:
            os.close(fd)
            _unlink_quiet(path)
            raise _storage_error(exc, f"cannot map segment {path}") from exc

    @classmethod
    def open(cls, path: str, first_seq: int) -> "Segment":
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise _storage_error(exc, f"cannot open segment {path}") from exc
        size = os.fstat(fd).st_size
        try:
            return cls(path, fd, first_seq, size)
        except OSError as exc:
            os.close(fd)
            raise _storage_error(exc, f"cannot map segment {path}") from exc

    # ---- writing ----

    def zero(self, start: int, end: int) -> None:
        """Write zeros over [start, end) of the map."""
        mm = self.mm
        while start < end:
            n = min(end - start, len(_ZERO_CHUNK))
            mm[start:start + n] = _ZERO_CHUNK[:n]
            start += n

    def last_nonzero(self, start: int) -> int:
        """The offset just past the last non-zero byte at or after `start` (== start if all zeros)."""
        mm = self.mm
        end = self.capacity
        chunk = len(_ZERO_CHUNK)
        hi = end
        while hi > start:
            lo = max(start, hi - chunk)
            if mm[lo:hi] != _ZERO_CHUNK[:hi - lo]:
                return lo + len(mm[lo:hi].rstrip(b"\0"))
            hi = lo
        return start

    def grow(self, capacity: int) -> None:
        """Allocate the file to `capacity` bytes and remap (only for an empty active segment)."""
        if capacity <= self.capacity:
            return
        allocate(self.fd, capacity)
        self._unmap()
        self.mm = mmap.mmap(self.fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.mv = memoryview(self.mm)
        self.capacity = capacity

    def sync(self) -> None:
        """fdatasync: the file's data, including every write made through the map, reaches the disk."""
        os.fdatasync(self.fd)

    def seal(self) -> None:
        """Make the data durable and cut the file to its data (the seal: a sealed file's size is its data).

        The cut only gives back the zero tail: if it fails on a full disk (ENOSPC/EDQUOT) the data is already
        durable, the file keeps its zeros (recovery reads them as the end of the data) and the seal stands."""
        os.fdatasync(self.fd)
        try:
            os.ftruncate(self.fd, self.used)
            os.fsync(self.fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
        self.sealed = True

    def publish(self) -> None:
        """Rename '<name>.seg.pending' to '<name>.seg' and make the rename durable."""
        if not self.pending:
            return
        final = self.path[:-len(".pending")]
        os.rename(self.path, final)
        fsync_dir(os.path.dirname(self.path))
        self.path = final
        self.pending = False

    def rename_to_first_seq(self, first_seq: int) -> None:
        directory = os.path.dirname(self.path)
        final = os.path.join(directory, segment_name(first_seq))
        if final != self.path:
            os.rename(self.path, final)
            fsync_dir(directory)
            self.path = final
        self.first_seq = first_seq

    # ---- end of life ----

    def _unmap(self) -> None:
        mm, self.mm = self.mm, None
        self.mv.release()
        self.mv = memoryview(b"")
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # memoryviews into it are still alive; it is unmapped when the last one goes

    def retire(self, unlink: bool = False) -> None:
        """Close the descriptor (and remove the file with `unlink`); the map lives while views into it do."""
        if self.retired:
            return
        self.retired = True
        if unlink:
            _unlink_quiet(self.path)
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.mm = None  # dropped, not closed: live memoryviews keep it mapped until they are released

    def close(self) -> None:
        if self.retired:
            return
        self._unmap()
        self.retired = True
        try:
            os.close(self.fd)
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"Segment({os.path.basename(self.path)}, used={self.used}, count={self.count})"


class SegmentIds:
    """Segment ids, unique for the life of the process (a location names one record); thread-safe."""

    def __init__(self) -> None:
        self._next = 1
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            n = self._next
            self._next += 1
            return n

    def peek(self) -> int:
        """The next id `take` gives: every id at or above it was never handed out."""
        return self._next

    def reserve_through(self, n: int) -> None:
        """Never hand out ids up to `n` (they were adopted from a checkpoint)."""
        with self._lock:
            self._next = max(self._next, n + 1)


Segment._ids = SegmentIds()


# ---- directory operations ----

def allocate(fd: int, size: int) -> None:
    """Reserve real blocks for [0, size) of the file; LogFull on ENOSPC/EDQUOT."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LogFull(f"disk full: cannot allocate {size} bytes for a log segment") from exc
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: write zeros
            _allocate_by_writing(fd, size)
            return
        raise _storage_error(exc, "cannot allocate a log segment") from exc


def _allocate_by_writing(fd: int, size: int) -> None:
    have = os.fstat(fd).st_size
    try:
        while have < size:
            n = min(size - have, len(_ZERO_CHUNK))
            have += os.pwrite(fd, _ZERO_CHUNK[:n], have)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LogFull(f"disk full: cannot allocate {size} bytes for a log segment") from exc
        raise


def list_directory(directory: str) -> tuple[list[tuple[int, str]], list[str]]:
    """([(first seq from the name, path)] sorted, [leftover temp files]) of a log directory."""
    segments, leftovers = [], []
    for name in os.listdir(directory):
        seq = parse_segment_name(name)
        if seq is not None:
            segments.append((seq, os.path.join(directory, name)))
        elif name.endswith(PENDING_SUFFIX) or name.endswith(COMPACT_SUFFIX) or name.endswith(".tmp"):
            leftovers.append(os.path.join(directory, name))
    segments.sort()
    return segments, leftovers


def remove(path: str) -> None:
    _unlink_quiet(path)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_directory(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)


def write_file_atomic(path: str, chunks, *, tmp_suffix: str = ".tmp") -> None:
    """Write `chunks` to `path + tmp_suffix`, fsync it, rename it to `path`, fsync the directory."""
    tmp = path + tmp_suffix
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while len(view):
                    n = os.write(fd, view)
                    view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _unlink_quiet(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LogFull(f"disk full while writing {path}") from exc
        raise _storage_error(exc, f"cannot write {path}") from exc
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def read_meta(directory: str) -> dict:
    try:
        with open(os.path.join(directory, META_NAME), "rb") as fh:
            data = json.loads(fh.read())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # the metadata is a hint the segments override; a damaged one is ignored


def write_meta(directory: str, meta: dict) -> None:
    write_file_atomic(os.path.join(directory, META_NAME), [json.dumps(meta, sort_keys=True).encode()])


def read_highwater(directory: str) -> dict | None:
    """highwater.json (see store.py `_note_highwater`), or None if it is missing or unreadable."""
    try:
        with open(os.path.join(directory, HIGHWATER_NAME), "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_highwater(directory: str, highwater: dict) -> None:
    write_file_atomic(os.path.join(directory, HIGHWATER_NAME), [json.dumps(highwater, sort_keys=True).encode()])


def lock_directory(directory: str) -> int:
    """Take an exclusive lock on the log directory (one process per log); StorageError if held."""
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageError(f"the log in {directory} is open in another process") from None
    return fd


def unlock_directory(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LogFull(f"{what}: disk full")
    return StorageError(f"{what}: {exc.strerror or exc}")
