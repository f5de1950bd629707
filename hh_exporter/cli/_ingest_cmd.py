"""``hh-exporter ingest``'s command: arguments, signals, the workers' choice and the summary
(the run itself is ``_ingest.run_ingest``, or ``_ingest_workers`` for many processes)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time

from ._progress import fmt_dropped

__all__ = ["command"]


def _cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _default_workers(files: list[str], cores: int) -> int:
    """``--workers`` when not given: one process unless workers pay.

    Measured (benchmarks/README.md, "ingest under users' conditions"): on 2 cores a second
    process only adds the reader's routing and the pipe (~4 µs a line more CPU) while the
    API's client, the loop and, often, a local API share the cores, so one process is the
    faster. Workers need a core each beside the reader's; stdin is one stream (and is read
    by one process anyway), and a small file does not repay their start (~0.3 s each).
    """
    if cores <= 2 or "-" in files:
        return 1
    try:
        size = sum(os.path.getsize(f) for f in files)
    except OSError:  # a missing file is reported by the run itself
        return 1
    if size < _WORKERS_MIN_BYTES:
        return 1
    return min(cores - 1, 8)


#: Below this much input, extra processes do not repay their start.
_WORKERS_MIN_BYTES = 256 << 20


class _Signals:
    """SIGINT/SIGTERM for ``ingest``: the first asks for a stop within ``--timeout``, a
    second SIGINT (or SIGTERM) for an immediate one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stop = asyncio.Event()
        self.now = asyncio.Event()
        self.halt = threading.Event()  # the same, for the workers' reader thread
        self.halt_now = threading.Event()
        self.at: float | None = None  # time.monotonic() of the first signal
        self.signo = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on, sig)

    def _on(self, sig: int) -> None:
        if self.at is None:
            self.at, self.signo = time.monotonic(), sig
            self.stop.set()
            self.halt.set()
        else:
            self.now.set()
            self.halt_now.set()

    def left(self, timeout: float) -> float:
        """Seconds left of ``timeout`` counted from the first signal (all of it if none)."""
        if self.at is None:
            return timeout
        return max(0.0, self.at + timeout - time.monotonic())


async def command(args: argparse.Namespace) -> int:
    """``hh-exporter ingest``: files to the API, or to the rejects file; the exit status."""
    from .._config import ExporterConfig
    from .._exporter import Exporter
    from .._stats import DropNotice
    from ._checkpoint import Checkpoint, Tracker, destination_id
    from ._ingest import close_within, run_ingest

    rejects_path = args.rejects or "ingest-rejects.jsonl"
    checkpoint_path = args.checkpoint or os.path.join(
        os.path.dirname(rejects_path), "ingest-checkpoint.json")
    exporter = None
    config = None
    if not args.dry_run:
        try:
            config = ExporterConfig.from_env(
                api_key=args.api_key, api_url=args.api_url, project=args.project, api=args.api,
                session_start=args.session_start, max_in_flight=args.max_in_flight,
                max_batch_events=args.batch_events,
                close_timeout=args.timeout, linger=0.2,
                # A small buffer: backpressure reaches the reader at once, memory stays flat,
                # and Ctrl-C leaves little to flush.
                max_buffer_events=max(2000, 4 * args.batch_events * args.max_in_flight))
        except ValueError as exc:
            print(f"hh-exporter ingest: {exc}", file=sys.stderr)
            return 2
    tracker = None
    if config is not None and not args.no_checkpoint:
        # A checkpoint belongs to a file and a destination: the same file to another API
        # (or generation, or key) is read from the start.
        tracker = Tracker(Checkpoint(checkpoint_path), restart=args.restart,
                          destination=destination_id(config.api_url, config.api,
                                                     config.api_key))
    # A resumed run keeps the rejects of the runs before it.
    resuming = tracker is not None and not args.restart and any(
        tracker.key(f) in tracker.checkpoint.files for f in args.files
        if f != "-" and tracker.checkpoint is not None)
    refused = asyncio.Event()
    if config is not None:
        def on_drop(notice: DropNotice) -> None:
            if notice.reason == "unauthorized":
                refused.set()

        exporter = Exporter(config=config, on_drop=on_drop,
                            on_settled=None if tracker is None else tracker.on_settled)
        project = config.project
        v1 = config.api == "v1"
    else:
        project = args.project or os.environ.get("HH_PROJECT") or None
        v1 = (args.api or os.environ.get("HH_API_VERSION")) == "v1"
    workers = args.workers if args.workers is not None else _default_workers(
        args.files, _cores())
    if workers < 1:
        print("hh-exporter ingest: --workers must be >= 1", file=sys.stderr)
        return 2
    signals = _Signals(asyncio.get_running_loop())
    # The rejects file gets a line per bad input line only: small, rare writes.
    with open(rejects_path, "a" if resuming else "w",  # noqa: ASYNC230
              encoding="utf-8") as rejects:
        if exporter is None or config is None:
            res = await run_ingest(args.files, None, project=project, rejects=rejects,
                                   dry_run=True, progress=not args.no_progress,
                                   stop=signals.stop, v1=v1, redact=args.redact)
        elif workers > 1:
            import dataclasses

            from ._ingest_workers import run_parallel_ingest

            settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
            settings["redact"] = args.redact
            res = await asyncio.to_thread(
                run_parallel_ingest, args.files, workers, settings, rejects=rejects,
                max_event_bytes=config.max_batch_bytes, progress=not args.no_progress,
                stop=signals.halt, stop_now=signals.halt_now, tracker=tracker,
                deadline=signals.left)
        else:
            saver = None if tracker is None else asyncio.create_task(tracker.autosave())
            try:
                await exporter.start()
                res = await run_ingest(
                    args.files, exporter, project=project, rejects=rejects,
                    progress=not args.no_progress, stop=signals.stop, refused=refused, v1=v1,
                    max_event_bytes=exporter.config.max_batch_bytes, tracker=tracker,
                    redact=args.redact)
                print("flushing...", file=sys.stderr, flush=True)
                # Waiting would only collect more refusals after a refused key.
                await close_within(exporter, 0.5 if res.abort_reason else args.timeout,
                                   signals.stop, signals.now, signals.left)
            finally:
                if not exporter.closed:  # an error above: close, counting what is left
                    await exporter.aclose(0)
                if saver is not None and tracker is not None:
                    saver.cancel()
                    await asyncio.gather(saver, return_exceptions=True)
                    # In any case: a save the cancel interrupted may hold an older state.
                    await tracker.save(final=True)
            res.stats = exporter.stats()
    if signals.at is not None:
        res.interrupted = True
    if res.rejected == 0 and not resuming:
        os.unlink(rejects_path)
    print("summary")
    if res.interrupted:
        why = res.abort_reason or (signal.Signals(signals.signo).name if signals.signo
                                   else None)
        print(f"  interrupted   yes{f' ({why})' if why else ''}: lines after the last one "
              "read were not sent; what was cut is counted as shutdown")
    if res.skipped:
        print(f"  skipped       {res.skipped:,} lines settled by an earlier run "
              f"(checkpoint {checkpoint_path})")
    print(f"  lines read    {res.lines:,}")
    print(f"  rejected      {res.rejected:,}" + (f" (see {rejects_path})" if res.rejected else ""))
    if args.dry_run:
        print(f"  valid         {res.sent:,} (dry run: nothing sent)")
        if signals.at is not None:
            return 128 + signals.signo
        return 1 if res.rejected else 0
    st = res.stats
    print(f"  accepted      {st.accepted:,}")
    if res.sessions:
        print(f"  sessions      {st.sessions_started:,} started, {st.sessions_failed:,} failed")
    print(f"  delivered     {st.delivered:,}")
    print(f"  dropped       {st.dropped_total:,} ({fmt_dropped(dict(st.dropped))})")
    print(f"  pending       {st.pending:,}")
    print(f"  requests      {st.requests:,} ({st.retries:,} retries)")
    print(f"  throughput    {st.delivered / max(res.elapsed, 1e-9):,.0f} events/s "
          f"({res.elapsed:.2f} s)")
    if st.unconfirmed:
        print(f"  unconfirmed   {st.unconfirmed:,} (acknowledged without their event_ids)")
    if signals.at is not None:  # the conventional status of a run a signal ended
        return 128 + signals.signo
    failed = res.rejected or st.dropped_total or st.pending or res.interrupted or (
        st.unconfirmed)
    return 1 if failed else 0
