"""Writing every format of a bundle, two processes side by side: ExecuTorch lowering in the
exporting process, Core ML in a spawned one; ONNX methods are shared out between both as each
finishes its own format, and the exporting process writes the ONNX files (weights stored once)."""

from __future__ import annotations

import logging
import multiprocessing
import queue as queue_module
import time
import traceback
import warnings
from pathlib import Path

from .formats import FORMATS, ExportError, ExportJob, GraphJob, onnx_models, save_onnx
from .progress import printer

# Formats written side by side, one process per group
FORMAT_GROUPS = (("executorch",), ("coreml", "onnx"))
SHARED = "onnx"  # converted by both processes (method by method), written by the exporting one


def format_groups(formats: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The requested formats split into the groups written concurrently (order kept in a group)."""
    grouped = [tuple(f for f in formats if f in group) for group in FORMAT_GROUPS]
    rest = tuple(f for f in formats if not any(f in group for group in FORMAT_GROUPS))
    return [g for g in [*grouped, rest] if g]


def write_formats(
    jobs: list[GraphJob], stamp: dict, formats: tuple[str, ...], root: Path, say
) -> tuple[dict[str, dict], dict[str, float]]:
    """Write every format's artifacts into ``root``: the first group in this process, the other
    groups in one spawned process running alongside. ONNX methods convert independently, so
    each process, once its own formats are written, takes ONNX methods from a shared queue until
    none are left, and this process writes the ONNX files. Any failure fails the whole export;
    the other process is stopped before the error propagates."""
    groups = format_groups(formats)
    if len(groups) < 2:
        return _write_group(jobs, stamp, formats, root, say)[:2]
    shared = SHARED in formats
    here = tuple(f for f in groups[0] if f != SHARED)
    there = tuple(f for g in groups[1:] for f in g if f != SHARED)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for job in jobs if shared else ():
        queue.put(job.name)
    receive, send = ctx.Pipe(duplex=False)
    worker = ctx.Process(
        target=_group_worker,
        name=f"lazydit-export-{'-'.join(there) or SHARED}",
        daemon=True,
        args=(send, jobs, stamp, there, queue, root, getattr(say, "start", None), _quiet_state()),
    )
    worker.start()
    send.close()
    try:
        artifacts, timings, models = _write_group(jobs, stamp, here, root, say, queue)
        status, *result = _receive(receive, worker)
        if status != "ok":
            error, remote = result
            raise ExportError(f"writing {', '.join(there) or SHARED} failed: {error}\n{remote}")
        artifacts.update(result[0])
        timings.update({k: v + timings.get(k, 0.0) for k, v in result[1].items()})
        models.update(result[2])
        if shared:
            t = time.perf_counter()
            # a name neither process saw (a queue read that timed out early) is converted here
            missing = [j.name for j in jobs if j.name not in models]
            models.update(onnx_models(ExportJob(jobs, stamp, say), missing, root) if missing else {})
            artifacts[SHARED] = save_onnx({j.name: models[j.name] for j in jobs}, stamp, root)
            timings[SHARED] = timings.get(SHARED, 0.0) + time.perf_counter() - t
        return artifacts, timings
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join()
        receive.close()
        queue.close()


def _write_group(
    jobs: list[GraphJob], stamp: dict, formats: tuple[str, ...], root: Path, say, onnx_queue=None
) -> tuple[dict[str, dict], dict[str, float], dict]:
    """This process's formats, then (given a queue) ONNX methods from the queue until it is empty:
    artifacts and seconds per format, and the ONNX models converted here."""
    artifacts, timings, models = {}, {}, {}
    job = ExportJob(jobs, stamp, say)  # one trace per method, shared by the formats of this process
    for fmt in formats:
        t = time.perf_counter()
        say(f"writing {fmt} ({len(jobs)} methods)")
        artifacts[fmt] = FORMATS[fmt](job, root)
        timings[fmt] = time.perf_counter() - t
    if onnx_queue is None:
        return artifacts, timings, models
    t = time.perf_counter()
    while True:
        try:
            name = onnx_queue.get(timeout=0.1)
        except queue_module.Empty:
            break
        models.update(onnx_models(job, [name], root))
    if models:
        timings[SHARED] = time.perf_counter() - t
    return artifacts, timings, models


def _group_worker(send, jobs, stamp, formats, onnx_queue, root, start, quiet) -> None:
    filters, levels = quiet
    warnings.filters[:] = filters
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    say = printer(start is not None, start)
    try:
        send.send(("ok", *_write_group(jobs, stamp, formats, root, say, onnx_queue)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the exporting process
        send.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        send.close()


def _receive(conn, worker):
    while not conn.poll(0.5):
        if not worker.is_alive() and not conn.poll(0):
            raise ExportError(f"the process writing the other formats stopped (exit code {worker.exitcode})")
    try:
        return conn.recv()
    except EOFError as exc:
        raise ExportError(f"the process writing the other formats stopped (exit code {worker.exitcode})") from exc


def _quiet_state() -> tuple[list, dict[str, int]]:
    """This process's warning filters and logger levels, so a worker is as quiet as its parent."""
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
    }
    return list(warnings.filters), levels
