"""An origin that holds requests until told, for the scenarios with requests and bodies in
flight (scenarios/inflight.py). Run as `python3 -u hold_origin.py PORT all|put`: with "all"
every request is held; with "put" only PUTs are (reading nothing of their bodies), anything
else is answered at once. Prints "listening", then "held N" as requests arrive; when a line
comes on stdin it reads each held request's body and answers 200 with "<body bytes> ok"."""
import asyncio
import sys

held = 0
hold_all = sys.argv[2] == "all"
release = asyncio.Event()


async def serve(reader, writer):
    global held
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if hold_all or head.startswith(b"PUT"):
                held += 1
                print("held %d" % held, flush=True)
                await release.wait()
            got = 0  # the body is read only now: until then the agent buffers it
            while got < length:
                chunk = await reader.read(min(1 << 20, length - got))
                if not chunk:
                    break
                got += len(chunk)
            body = b"%d ok" % got
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=4096,
                                        limit=65536)
    print("listening", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    release.set()
    await asyncio.sleep(3600)
    server.close()


asyncio.run(main())
