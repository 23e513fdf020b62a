"""Writer for the crash test: appends in small batches and prints "seq path value" for every record only after
wait_durable covered it (the parent SIGKILLs this process at a random moment)."""

import asyncio
import os
import random
import sys

from engine.log.record import DEL, PUT
from engine.log.store import Log


async def main(directory: str, mode: str, round_no: int, user: str) -> None:
    log = Log.open(directory, fsync=mode, segment_bytes=64 * 1024, commit_window=0.002)
    rnd = random.Random(os.getpid())
    out = sys.stdout
    out.write(f"open {log.last_seq}\n")
    out.flush()
    i = 0
    while True:
        batch = []
        for _ in range(rnd.randint(1, 40)):
            i += 1
            path = f"/pub/r{round_no}/k{rnd.randint(0, 30)}"
            if rnd.random() < 0.1:
                rec = log.append(DEL, user, path)
                batch.append((rec.seq, path, "-"))
            else:
                value = f"{round_no}.{i}.".encode() * rnd.randint(1, 200)
                rec = log.append(PUT, user, path, value)
                batch.append((rec.seq, path, value.hex()))
        if mode == "always" and rnd.random() < 0.5:
            log.wait_durable_sync(batch[-1][0])
        else:
            await log.wait_durable(batch[-1][0])
        out.write("".join(f"{s} {p} {v}\n" for s, p, v in batch))
        out.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
