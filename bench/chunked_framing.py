"""What a chunked body's framing costs the worker, per MiB of the body's data, by chunk size:
the main loop's ChunkedEnd.feed (64 KiB reads, as read_body's recv) and gunicorn's ChunkedReader
in a thread (reading the body through an unreader as SpooledUnreader's, the app reading 64 KiB at a time), next to
a declared body of the same size (the main loop's reads and spool writes, gunicorn's LengthReader);
each chunk size's cost with no allowance (CHUNKS_FREE: the whole body), and where the allowance
refuses it (the body's data read by then). No server: the real classes
on bytes in memory, best of a few runs (CPU time).

    python bench/chunked_framing.py [MiB]
"""
import io
import os
import socket
import sys
import threading
import time

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.unreader import Unreader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pwp.worker_bodies  # noqa: E402
from pwp.worker_bodies import ChunkedEnd  # noqa: E402

READ = 64 * 1024


class BytesUnreader(Unreader):
    def __init__(self, data):
        super().__init__()
        self.file = io.BytesIO(data)

    def chunk(self, size_hint=None):  # (as SpooledUnreader's: mxchunk, or what the caller wants, up to 1 MiB)
        return self.file.read(max(8192, min(size_hint or 0, 1024 * 1024)))


class FakeRequest:
    limit_request_field_size = 8190
    max_buffer_headers = 32768


def chunked(data: bytes, size: int) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[at:at + size]), data[at:at + size])
                    for at in range(0, len(data), size)) + b"0\r\n\r\n"


def best(run, times=3) -> float:
    spent = []
    for _ in range(times):
        start = time.process_time()
        run()
        spent.append(time.process_time() - start)
    return min(spent)


def main_loop(body: bytes) -> ChunkedEnd:
    end = ChunkedEnd(8190)
    for at in range(0, len(body), READ):
        if end.feed(body[at:at + READ]):
            break
    assert not end.bad and end.size
    return end


def thread(reader_class, body: bytes):
    reader = (LengthReader(BytesUnreader(body), len(body)) if reader_class is LengthReader
              else ChunkedReader(FakeRequest(), BytesUnreader(body)))
    while reader.read(READ):
        pass


def spooled(data: bytes):
    """A declared body's cost in the main loop past BODY_IN_MEMORY: 64 KiB socket reads, each
    written to its temporary file (AES-CTR)."""
    from pwp.crypto import temporary_spool

    ours, theirs = socket.socketpair()
    sender = threading.Thread(target=theirs.sendall, args=(data,))
    sender.start()
    with temporary_spool() as spool:
        left = len(data)
        while left:
            piece = ours.recv(READ)
            spool.write(piece)
            left -= len(piece)
    sender.join()
    ours.close()
    theirs.close()


def main():
    mib = float(sys.argv[1]) if len(sys.argv) > 1 else 2
    data = b"x" * int(mib * 1024 * 1024)
    declared = best(lambda: spooled(data)), best(lambda: thread(LengthReader, data))
    print(f"declared body: main loop (recv, spool) {declared[0] / mib * 1000:.1f} ms per MiB, "
          f"thread (gunicorn's LengthReader) {declared[1] / mib * 1000:.1f} ms per MiB")
    print("chunk bytes  framing/data  chunks/MiB  main loop ms/MiB (us/chunk)  thread ms/MiB (us/chunk)  refused after")
    free = pwp.worker_bodies.CHUNKS_FREE
    for size in (1, 8, 16, 32, 48, 64, 80, 128, 256, 512, 1024, 4096, 16384, 65536):
        body = chunked(data, size)
        chunks = len(data) / size / mib
        pwp.worker_bodies.CHUNKS_FREE = free
        refused = main_loop(body)
        pwp.worker_bodies.CHUNKS_FREE = len(body)  # (the whole body: what each chunk costs)
        ours = best(lambda: main_loop(body)) / mib
        theirs = best(lambda: thread(ChunkedReader, body)) / mib
        print(f"{size:11d}  {(len(body) - len(data)) / len(data):12.3f}  {chunks:10.0f}  "
              f"{ours * 1000:10.1f} ({ours / chunks * 1e6:5.2f})          {theirs * 1000:10.1f} ({theirs / chunks * 1e6:5.2f})"
              f"       {f'{refused.size} B of data' if refused.small else '-'}")


if __name__ == "__main__":
    main()
