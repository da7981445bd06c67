"""Count CPU instructions per request of the worker's answer path alone (callgrind).

    python bench/answer_path.py [--dir CHECKOUT] [--no-outbox]

What pwp/workers.py adds to every answer in the default setting, beside the app: the
Outbox work of ThreadWorker.handle and finish_request and gunicorn's two writes of a small
answer (its head, then its body) through the worker's bounded socket, taken whole, the
client reading them; in-process, over a socket pair, no app. Run twice (N1 and N2 requests)
under valgrind, the difference divided by N2 - N1: user-space instructions per request
(system calls' kernel work not counted), the same to 0.1 % from run to run. `--no-outbox`:
the same writes with no Outbox at all (the socket's bounded writes alone, as before stop 34),
the floor. `--dir`: a checkout of another commit (before the Outbox's module: pwp.workers'
own _OUTBOXES and _Outbox, made per request). Needs valgrind; about a minute.
"""
import argparse
import os
import re
import socket
import subprocess
import sys

HEAD = (b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Mon, 07 Dec 2026 04:00:00 GMT\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: 60\r\nCache-Control: no-store\r\n\r\n")
BODY = b'{"payload": "bench-payload-0123456789-abcdefghijklmnopqrs"}\n'


def _paths(workers):
    """What ThreadWorker.handle and finish_request do for a connection's Outbox (their lines)."""
    if hasattr(workers, "_OUTBOXES"):  # (an Outbox made per request)
        boxes, made = workers._OUTBOXES, workers._Outbox

        def handle(worker, sock):
            boxes[sock] = made(worker)

        def finish(sock):
            outbox = boxes.get(sock)
            assert not outbox.pending()
            boxes.pop(sock).release()
        return handle, finish
    from pwp.outbox import OUTBOXES, Outbox

    def handle(worker, sock):
        OUTBOXES[sock] = worker

    def finish(sock):
        outbox = OUTBOXES.pop(sock, None)
        assert not (type(outbox) is Outbox and outbox.pending())
    return handle, finish


def run(n: int, no_outbox: bool):
    """Inside valgrind: n small answers."""
    sys.path.insert(0, os.getcwd())
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from pwp import workers
    handle, finish = _paths(workers)
    if no_outbox:
        def handle(worker, sock):
            pass

        def finish(sock):
            pass
    cfg = Config()
    worker = workers.ThreadWorker(0, os.getppid(), [], None, 30, cfg, Logger(cfg))
    ours, theirs = socket.socketpair()
    workers.bound(ours, 30)
    for _ in range(n):
        handle(worker, ours)
        ours.sendall(HEAD)
        ours.sendall(BODY)
        finish(ours)
        theirs.recv(65536)


def count(args, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, os.path.abspath(__file__),
         "--inside", str(n)] + (["--no-outbox"] if args.no_outbox else []),
        cwd=args.dir, env=dict(os.environ, PYTHONHASHSEED="0"), capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--no-outbox", action="store_true")
    ap.add_argument("--inside", type=int, help=argparse.SUPPRESS)
    ap.add_argument("-n", type=int, nargs=2, default=[2000, 12000], metavar=("N1", "N2"))
    args = ap.parse_args()
    if args.inside:
        return run(args.inside, args.no_outbox)
    n1, n2 = args.n
    per_request = (count(args, n2) - count(args, n1)) / (n2 - n1)
    print(f"answer path: {per_request / 1000:.2f} k instructions per request "
          f"({os.path.abspath(args.dir)}{', no Outbox' if args.no_outbox else ''})")


if __name__ == "__main__":
    main()
