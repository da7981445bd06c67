"""The thread that runs a link form's work a while after its answer (notify.later): woken only
for a job or the process's end, a job left run as the process ends, a forked child's its own.
Each in a process of its own, which must end (a deadline, not a sleep)."""
import os
import signal
import subprocess
import sys
import textwrap

from servers import ROOT


def run(script: str) -> list[str]:
    """Run a Python script in its own process group (killed whole past the deadline, a forked
    child with it); return its output's lines, after checking it ended well."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"the process did not end: {out!r} {err[-2000:]!r}") from None
    assert process.returncode == 0, err[-2000:]
    return out.splitlines()


def test_the_idle_thread_is_woken_by_the_processs_end_not_by_a_timeout():
    """It looked every second whether the main thread had ended: woken each second for
    nothing in every worker that had served a link form, and each such worker's exit (a
    restart, max_requests: with one worker, no answer meanwhile) waited up to a second more.
    Now it waits without a timeout until a job or the end. Seen as its waits' results."""
    lines = run("""
        import atexit, threading
        from pwp import notify

        waits, waiting = [], threading.Event()

        def profile(frame, event, arg):
            if frame.f_code is threading.Condition.wait.__code__ \\
                    and threading.current_thread().name == "sending-later":
                if event == "call":
                    waiting.set()
                elif event == "return":
                    waits.append(arg)  # (False: it timed out)
        threading.setprofile(profile)
        notify.prepare_later()
        assert waiting.wait(30)
        atexit.register(lambda: print(waits))  # (once the threads have ended)
    """)
    assert lines == ["[True]"]


def test_a_job_left_as_the_process_ends_runs_then():
    lines = run("""
        from pwp import notify

        notify.prepare_later()
        notify.later(3600, lambda: print("ran"))
    """)
    assert lines == ["ran"]


def test_a_forked_child_runs_its_own_jobs_whatever_its_parent_held():
    """A child forked while its parent's thread held the jobs' lock (as it does while it
    starts a sending thread) waited for it for good at its first link form. Nor does a child
    run its parent's jobs (they are the parent's to run). The same for the sending threads:
    a child inherited their places (its parent's all taken: its own mails queued for a
    thread that never came), its parent's queued jobs (run again by its first sending
    thread: an account mail sent twice; counted as its own at its stop) and the queue's lock
    as another thread held it. gunicorn forks each worker from its master (with --preload,
    one that loaded the app)."""
    lines = run("""
        import os, sys, threading
        from pwp import notify

        notify.prepare_later()
        notify.later(3600, lambda: print("the parent's job in", os.getpid()))
        release = threading.Event()
        for _ in range(notify.MAX_SENDING_THREADS):  # (every place taken)
            assert notify.in_thread(release.wait, (30,), "held")
        queued = threading.Event()
        assert notify.in_thread(lambda: (print("the parent's queued job in", os.getpid()), queued.set()), (),
                                "q", queued=True)
        held = threading.Event()

        def hold():
            with notify._later.ready, notify._queue_lock:
                held.set()
                release.wait(30)
        threading.Thread(target=hold, daemon=True).start()
        assert held.wait(30)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            print("child's jobs", notify.pending_jobs())
            notify.prepare_later()
            later, sent = threading.Event(), threading.Event()
            notify.later(0.01, later.set)
            assert notify.in_thread(sent.set, (), "child", queued=True)
            print("child's jobs ran", later.wait(30), sent.wait(30))
            notify.wait_for_sends(30)
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", os.getpid(), flush=True)
        release.set()
        assert queued.wait(30)  # (its later job runs as it exits)
    """)
    (parent,) = [line.split()[1] for line in lines if line.startswith("parent")]
    assert lines[:2] == ["child's jobs 0", "child's jobs ran True True"]
    assert sorted(lines[2:]) == [f"parent {parent}", f"the parent's job in {parent}",
                                 f"the parent's queued job in {parent}"]


def test_a_job_being_run_later_is_pending_until_its_sending_thread_runs():
    """The later thread took a job off its list before running it: while the job started its
    sending thread, the process had no e-mail job for pwp.worker_mails (pending_jobs 0), so a
    worker stopping then (restart, SIGTERM's wait) ended and cut the mail it was starting.
    Seen from the moment the job calls in_thread (a profile hook of that thread's)."""
    lines = run("""
        import threading
        from pwp import notify

        seen = []

        def profile(frame, event, arg):
            if event == "call" and frame.f_code is notify.in_thread.__code__:
                seen.append(notify.pending_jobs())
        threading.setprofile(profile)
        notify.prepare_later()
        done = threading.Event()
        notify.later(0, lambda: notify.in_thread(done.set, (), "job"))
        assert done.wait(30)
        notify.wait_for_sends(30)
        print(seen, notify.pending_jobs())
    """)
    assert lines == ["[1] 0"]
