"""The baseline of `homestream bench http`: a bare uvloop + h11 server that reads each request whole and
answers 204 with no body, storing nothing. Usage: python -m engine.bench.peers.bare_h11 PORT"""

from __future__ import annotations

import asyncio
import sys

import h11
import uvloop


class BareH11(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.conn = h11.Connection(h11.SERVER)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if type(event) is h11.EndOfMessage:
                out = conn.send(h11.Response(status_code=204, headers=[]))
                out += conn.send(h11.EndOfMessage())
                self.transport.write(out)
                if conn.our_state is h11.MUST_CLOSE:
                    self.transport.close()
                    return
                conn.start_next_cycle()
            elif type(event) is h11.ConnectionClosed:
                self.transport.close()
                return


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BareH11, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
