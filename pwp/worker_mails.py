"""A stopping worker and the app's sending threads (pwp.notify: notification and account
e-mails, each a job of a thread that is not a daemon, so Python joins it as the process exits).

Python waited for them after gunicorn's last word with the worker (its heartbeat file closed):
a worker that stopped while an SMTP server held a mail sat silent until the master killed it
(`timeout`: WORKER TIMEOUT, SIGABRT, a traceback), the mail lost anyway; stopped by
max_requests, its replacement was started only then, so one worker's instance answered no one
meanwhile. Here a stopping worker waits for its jobs at most until a deadline (wait), telling
the master it lives; what is left then is cut as the process exits (cut_at_exit: logged as a
count, never an address), without Python's wait for the threads.

Reads pwp.notify's state only if the app loaded it (sys.modules): this module is loaded by
gunicorn's master (pwp.workers), which must not load the app's packages.
"""
import logging
import os
import sys
import threading
import time


def _notify():
    return sys.modules.get("pwp.notify")


def pending() -> int:
    """The e-mail jobs this process has not finished (pwp.notify.pending_jobs)."""
    notify = _notify()
    return 0 if notify is None else notify.pending_jobs()


def wait(worker, deadline: float) -> int:
    """Wait until this process has no e-mail job left, or until `deadline` (time.monotonic()),
    telling gunicorn's master the worker lives meanwhile; return how many are left."""
    said = False
    while True:
        left = pending()
        now = time.monotonic()
        if not left or now >= deadline:
            return left
        if not said:
            said = True
            worker.log.info("Worker stopping: waiting up to %.0f s for its %d e-mail job(s)",
                            deadline - now, left)
        worker.notify()
        seconds = min(1.0, deadline - now)  # (the master is told at least once a second)
        if not _notify().wait_for_a_job(seconds):  # (jobs queued with no thread left to take them)
            return left


def exit_deadline(worker) -> float:
    """When a stopping worker's e-mails (run) and the requests its exit joins (cut_at_exit) are
    given up: graceful_timeout less a second after the stop began (SIGTERM, or now), before a
    stopping master's SIGKILL; a quick stop's own (ThreadWorker.quit_by); a max_requests
    restart's what is left for its mails (mails_by: restart)."""
    if getattr(worker, "quit_by", 0.0):  # (SIGQUIT, SIGINT: ThreadWorker.quit's deadline)
        return worker.quit_by
    stop_asked = getattr(worker, "stop_asked", None)
    if stop_asked is None and getattr(worker, "restarting", False):
        return worker.mails_by
    return (stop_asked or time.monotonic()) + max(0, worker.cfg.graceful_timeout - 1)


def cut_at_exit(worker):
    """As this process exits (Python's exit, before it joins the threads left: a graceful stop
    that waited, SIGQUIT's or SIGINT's quick one, a worker aborted), the e-mail jobs still
    unfinished are cut once the requests being served are done (or graceful_timeout less a
    second after the stop began), and a quick stop's requests still being served at its deadline
    (ThreadWorker.quit_by): logged, the process ended (status 1 if gunicorn aborted it)."""
    register = getattr(threading, "_register_atexit", None)  # (Python 3.9 and later)
    if register is None:
        return

    def cut():
        pool = getattr(worker, "tpool", None)  # (gthread's: the requests being served)
        quitting = getattr(worker, "quit_by", 0.0) > 0.0  # (SIGQUIT, SIGINT: ThreadWorker.quit)
        serving = 0
        if pool is not None and (quitting or pending()):
            # Python's exit joins them (concurrent.futures' own callback, after this one): a
            # request being served (SIGQUIT's stop) finishes, its answer sent, as it would with
            # no e-mail job left; cut at once, a view it had counted lost its secret. Until
            # graceful_timeout less a second after the stop began, as its mails (run): one stuck
            # longer held the cut until a stopping master's SIGKILL, which no one logged. A restart
            # (max_requests) waits no longer than for its mails (mails_by, already past after a
            # request stuck through its stop): the join tells the master nothing, which kills a
            # worker silent for `timeout`.
            # A quick stop's answers its threads still write at its deadline (TLS: the thread writes
            # it all) are cut then too, as with a mail held, and said: Python's exit joined them
            # until the stopping master's SIGKILL ("Perhaps out of memory?"), the cut unsaid.
            pool.shutdown(wait=False)  # (its idle threads end)
            deadline = exit_deadline(worker)
            threads = list(getattr(pool, "_threads", ()))  # (no public bounded join)
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if quitting:
                serving = sum(thread.is_alive() for thread in threads)
        left = pending()
        if not left and not serving:
            return
        if serving:
            worker.log.warning("Worker exiting with %d request(s) still being served: cut at the "
                               "quick stop's deadline", serving)
        if left:
            worker.log.warning("Worker exiting with %d e-mail job(s) unfinished: not sent (see the "
                               "README, Notify by e-mail)", left)
        logging.shutdown()  # (gunicorn's handlers flushed: os._exit skips Python's own exit)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(1 if getattr(worker, "aborted", False) else 0)
    register(cut)


def guard(worker):
    """(gunicorn.conf.py's post_worker_init, in the worker.) The same for a worker of gunicorn's
    own classes (`-k sync`): its run() wrapped. Stopped by max_requests with e-mail jobs
    unfinished, it serves on (its loop run again) until they are done, at most graceful_timeout
    more, looking each second (its wait for a connection bounded by 1 s meanwhile), then stops
    without waiting for them; otherwise (SIGTERM, its parent gone) it waits for them up to
    graceful_timeout less a second, telling the master it lives. pwp.workers.ThreadWorker does
    this itself (guards_mails)."""
    if getattr(worker, "guards_mails", False):
        return
    cut_at_exit(worker)
    run, notify = worker.run, worker.notify
    restart_by = []  # (max_requests, deferred) when it stops at the latest

    def notify_and_look():
        notify()
        if restart_by and (time.monotonic() >= restart_by[0] or not pending()):
            restart_by.clear()
            worker.alive = False

    def guarded_run():
        run()
        graceful = worker.cfg.graceful_timeout
        restarting = worker.nr >= worker.max_requests and worker.ppid == os.getppid()
        if restarting and (jobs := pending()) and graceful > 0:
            worker.log.info("(Once its %d e-mail job(s) are done, in %d s at most: serving meanwhile.)",
                            jobs, graceful)
            restart_by.append(time.monotonic() + graceful)
            worker.max_requests, worker.timeout, worker.notify = sys.maxsize, 1, notify_and_look
            worker.alive = True
            run()
            restarting = not restart_by  # (else a signal stopped it first)
        if not restarting:
            wait(worker, time.monotonic() + max(0, graceful - 1))
    worker.run = guarded_run
