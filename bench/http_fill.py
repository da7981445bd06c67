"""Create N pushes through a running pwpush's API and append their url_tokens to OUTFILE.

    python bench/http_fill.py BASE_URL N OUTFILE     ($FILL_VIEWS views, $FILL_DAYS days)

Slower than bench/fill_direct.py (about 1 000 pushes/s) but needs nothing but the URL.
"""
import json
import os
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def create(base, body):
    req = urllib.request.Request(base + "/api/v2/pushes", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["url_token"]


def main():
    base, n, out = sys.argv[1].rstrip("/"), int(sys.argv[2]), sys.argv[3]
    body = json.dumps({"push": {
        "payload": os.environ.get("BENCH_PAYLOAD", "bench-payload-0123456789-abcdefghijklmno"),
        "expire_after_days": int(os.environ.get("FILL_DAYS", "7")),
        "expire_after_views": int(os.environ.get("FILL_VIEWS", "100"))}}).encode()
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: create(base, body), range(n)))
    with open(out, "a") as fh:
        fh.write("".join(t + "\n" for t in tokens))


if __name__ == "__main__":
    main()
