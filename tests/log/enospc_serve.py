"""`homestream serve` on a disk that is full for every new write of the log's small files: the log layer's
os.write and os.ftruncate fail with ENOSPC (allocation of segments still works, so the server can start and take
writes into its pre-allocated segment). Used by test_full_disk.py to check that shutdown still exits 0."""

import errno
import os
import sys

import engine.log.segment as segment
from engine.cli import main


class _FullDisk:
    """The os module as engine/log/segment.py sees it, with the calls that need new blocks failing."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def write(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    @staticmethod
    def ftruncate(fd, length):
        raise OSError(errno.ENOSPC, "No space left on device")


if __name__ == "__main__":
    segment.os = _FullDisk()
    sys.exit(main(["serve", *sys.argv[1:]]))
