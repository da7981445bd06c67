"""Worker memory of a file push: peak RSS while one is uploaded, viewed and downloaded.

    python bench/file_memory.py [--mib 25] [--port 8391] [-- extra gunicorn args]

Starts `gunicorn pwpush:app` with the project's gunicorn.conf.py on a fresh instance folder
(logins on: file pushes need an account), makes an account with the command line, then
uploads one file of MIB MiB of random bytes through the API, reads the push's JSON, downloads
its last byte alone (a Range request, as a resumed download's end), the whole file (checked
byte for byte), and the last byte again. For each step it prints the worker's RSS before,
its peak during the step (VmHWM, reset before each step) and its RSS after, in MiB. Linux
only (/proc); run it as the user that starts the server.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status(pid, field):
    """A /proc/PID/status memory field in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} for pid {pid}")


def request(url, data=None, headers=None):
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}),
                                timeout=120) as resp:
        return resp.read()


def multipart(fields, name, filename, content):
    """A multipart/form-data body of text fields and one file, and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=25, help="file size in MiB (default 25, the default cap)")
    ap.add_argument("--port", type=int, default=8391)
    ap.add_argument("extra", nargs="*", help="extra gunicorn arguments (after --)")
    args = ap.parse_args()
    instance = tempfile.mkdtemp(prefix="pwpush-filemem-")
    base = f"http://127.0.0.1:{args.port}"
    env = dict(os.environ, PWPUSH_INSTANCE_PATH=instance, PORT="", BIND=f"127.0.0.1:{args.port}",
               PWP__ENABLE_LOGINS="true", PWP__THROTTLING__MINUTE="0", PWP__THROTTLING__SECOND="0")
    made = subprocess.run([sys.executable, "-m", "flask", "--app", "pwpush", "users", "create", "bench@example.com"],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    token = made.stdout.strip().splitlines()[-1]
    content = os.urandom(int(args.mib * 1024 * 1024))
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *args.extra, "pwpush:app"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                request(base + "/api/v2/version")
                break
            except OSError:
                time.sleep(0.05)
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            workers = f.read().split()
        if len(workers) != 1:
            raise SystemExit(f"expected one worker (WEB_CONCURRENCY=1), found {len(workers)}")
        worker = int(workers[0])

        def step(label, action):
            before = status(worker, "VmRSS")
            with open(f"/proc/{worker}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            result = action()
            print(f"{label:9} RSS before {before:6.1f}  peak {status(worker, 'VmHWM'):6.1f} "
                  f"(+{status(worker, 'VmHWM') - before:5.1f})  after {status(worker, 'VmRSS'):6.1f} MiB")
            return result

        print(f"file of {len(content) / 2 ** 20:.1f} MiB; worker pid {worker}")

        def create():
            body, ctype = multipart({"push[payload]": "see the file", "push[expire_after_views]": "2"},
                                    "push[files][]", "bench.bin", content)
            return json.loads(request(base + "/api/v2/pushes", body,
                                      {"Authorization": f"Bearer {token}", "Content-Type": ctype}))

        created = step("upload", create)
        shown = step("view", lambda: json.loads(request(f"{base}/api/v2/pushes/{created['url_token']}")))
        def last_byte():
            if request(shown["files"][0]["url"], headers={"Range": "bytes=-1"}) != content[-1:]:
                raise SystemExit("the range is not the file's last byte")

        step("last byte", last_byte)
        got = step("download", lambda: request(shown["files"][0]["url"]))
        step("last byte", last_byte)  # (again, in a worker that has decrypted the whole file)
        if got != content:
            raise SystemExit("the downloaded file differs from the uploaded one")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    main()
