"""Where tasks run: in this process, on a local process pool, or as Ray tasks.

Each runner takes an iterable of tasks, which it reads lazily so that only a bounded number
of input files is held in memory, and yields ``(task, outcome)`` pairs in completion order.
Runners never write files: the caller does, in one process, after recording the outcome.

The runners are written for ``ccnn batch``'s :class:`~ccnn.batch.work.Task`, but take any
picklable task and module-level function (``function``), with ``failed`` making the outcome
of a task whose worker died: ``ccnn tune`` runs its trials on them too (:mod:`ccnn.tune`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from types import ModuleType
from typing import Any, TypeVar

from ..errors import CCNNError
from ..install import pip_hint
from .work import Outcome, Task, run_task

#: A task whose worker dies (killed, out of memory) is tried this many times in all.
MAX_ATTEMPTS = 3

#: Tasks queued per worker slot: enough to keep workers busy between results, few enough that
#: a large collection is not read into memory at once.
QUEUE_PER_SLOT = 2

RAY_INSTALL_HINT = f"--ray needs Ray, an optional extra: {pip_hint('ray')}"

Results = Iterator[tuple[Task, Outcome]]
TaskFunction = Callable[[Task], Outcome]

#: Any task and its outcome, for callers other than the batch.
T = TypeVar("T")
R = TypeVar("R")


def failed_outcome(message: str) -> Outcome:
    """The batch's outcome of a task that could not run (its worker died, Ray gave up)."""
    return Outcome(None, error=message)


class RayMissingError(CCNNError):
    """``--ray`` was asked for but Ray is not installed (a usage error: exit code 2)."""


def serial_results(tasks: Iterable[T], function: Callable[[T], R] = run_task) -> Iterator[tuple[T, R]]:
    """Run the tasks one after the other in this process (``--jobs 1``: no start-up cost)."""
    for task in tasks:
        yield task, function(task)


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; only the parent handles it (by stopping the
    # workers), so that a worker never dies half-way with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _context() -> multiprocessing.context.BaseContext:
    """How workers start: never a plain fork of this process, which has torch and threads loaded.

    Where it exists, a fork server that has imported the codec once forks the workers (cheap
    starts, even for many workers or a pool restarted after a death); elsewhere each worker is
    a fresh interpreter (spawn) that imports torch itself.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _new_pool(jobs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(jobs, mp_context=_context(), initializer=_worker_init)


def _stop_pool(executor: ProcessPoolExecutor) -> None:
    """Stop the workers now, even in the middle of a task (before Python 3.14 there is no public way)."""
    terminate = getattr(executor, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


Pending = dict[Future[Any], tuple[Any, int]]  # a submitted task and its attempt number
Retries = deque[tuple[Any, int]]  # tasks whose worker died, to submit again first
Failed = Callable[[str], Any]  # the outcome of a task that could not run, from its message


def _died(task: T, attempt: int, retry: Retries, failed: Failed = failed_outcome) -> Any:
    """Queue ``task`` again after its worker died (None), or give up on it after MAX_ATTEMPTS."""
    if attempt < MAX_ATTEMPTS:
        retry.append((task, attempt + 1))
        return None
    tries = f"{MAX_ATTEMPTS} tries" if MAX_ATTEMPTS > 1 else "1 try"
    return failed(f"its worker process died (killed, or out of memory?); {tries}")


def _top_up(
    executor: ProcessPoolExecutor,
    function: Callable[[Any], Any],
    pending: Pending,
    retry: Retries,
    source: Iterator[Any],
    limit: int,
) -> None:
    """Submit tasks until ``limit`` are in flight: retries first, then new ones, read lazily."""
    while len(pending) < limit:
        if retry:
            task, attempt = retry.popleft()
        elif (next_task := next(source, None)) is not None:
            task, attempt = next_task, 1
        else:
            break
        pending[executor.submit(function, task)] = (task, attempt)


def _collect(
    done: Iterable[Future[Any]], pending: Pending, retry: Retries, failed: Failed = failed_outcome
) -> tuple[list[tuple[Any, Any]], bool]:
    """The outcomes of the ``done`` futures, and whether the pool broke (a worker died).

    A task whose worker died is queued for a retry (no outcome yet) or, out of tries, failed.
    """
    results: list[tuple[Any, Any]] = []
    broken = False
    for future in done:
        task, attempt = pending.pop(future)
        try:
            results.append((task, future.result()))
        except BrokenProcessPool:
            broken = True
            if (outcome := _died(task, attempt, retry, failed)) is not None:
                results.append((task, outcome))
        except Exception as exc:  # e.g. a result that cannot travel back
            results.append((task, failed(f"worker error: {type(exc).__name__}: {exc}")))
    return results, broken


def _lost_with_pool(
    pending: Pending, retry: Retries, failed: Failed = failed_outcome
) -> list[tuple[Any, Any]]:
    """Every task still in a broken pool went down with it: retry it, or fail it if out of tries."""
    results: list[tuple[Any, Any]] = []
    for task, attempt in pending.values():
        if (outcome := _died(task, attempt, retry, failed)) is not None:
            results.append((task, outcome))
    pending.clear()
    return results


def pool_results(
    tasks: Iterable[T],
    jobs: int,
    function: Callable[[T], R] = run_task,
    *,
    failed: Callable[[str], R] = failed_outcome,
    per_slot: int = QUEUE_PER_SLOT,
) -> Iterator[tuple[T, R]]:
    """Run the tasks on ``jobs`` worker processes of this machine.

    A worker that dies (killed, out of memory) breaks the whole pool; the tasks it held are
    retried on a fresh pool, up to MAX_ATTEMPTS times each, and the batch goes on.
    ``function`` (a module-level function, since workers import it by name) stands in for
    :func:`run_task` in tests and for other work (``ccnn tune``'s trials); ``failed`` makes
    the outcome of a task out of tries. ``per_slot`` tasks per worker are kept in flight: 1
    when each task should be read from ``tasks`` only once a worker is free for it (a tuner
    asks for its next trial as late as it can).
    """
    source = iter(tasks)
    retry: Retries = deque()
    pending: Pending = {}
    executor = _new_pool(jobs)
    finished = False
    try:
        while True:
            _top_up(executor, function, pending, retry, source, per_slot * jobs)
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            results, broken = _collect(done, pending, retry, failed)
            if broken:
                results += _lost_with_pool(pending, retry, failed)
                _stop_pool(executor)
                executor = _new_pool(jobs)
            yield from results
        finished = True
    finally:
        if finished:
            executor.shutdown(wait=True)
        else:
            _stop_pool(executor)


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`RayMissingError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissingError(RAY_INSTALL_HINT) from None
    return ray


def _connect(ray: ModuleType, address: str | None) -> bool:
    """Start or join the Ray cluster at ``address`` unless Ray is up already.

    True when this call started it, so that the caller shuts down only what it started.
    """
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f" at {address}" if address else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CCNNError(f"cannot start or reach Ray{where}: {first}") from None
    return True


def _on_cpu(task: Task) -> Task:
    """``task`` pinned to the CPU when it gets no GPU and its device is left open: a node's own
    GPU would give other bytes than a local CPU run."""
    if task.options.get("device") in (None, "auto"):
        return dataclasses.replace(task, options={**task.options, "device": "cpu"})
    return task


def _ray_outcome(ray: ModuleType, ref: object, failed: Failed = failed_outcome) -> Any:
    """The outcome of a finished Ray task; a task Ray gave up on fails with Ray's first line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[0] if lines else type(exc).__name__
        return failed(f"Ray task failed: {type(exc).__name__}: {detail}")


def ray_results(
    tasks: Iterable[T],
    address: str | None,
    threads: int,
    device: str | None,
    *,
    function: Callable[[T], R] = run_task,
    failed: Callable[[str], R] = failed_outcome,
    on_cpu: Callable[[T], T] = _on_cpu,
    in_flight: int | None = None,
) -> Iterator[tuple[T, R]]:
    """Run one Ray task per image on the cluster at ``address`` (``None``: Ray's default choice).

    Each task asks for ``threads`` CPUs and, where the cluster has GPUs and ``device`` allows
    them, one GPU. Where no GPU is requested the task trains on the CPU even if its node has
    one (``on_cpu`` pins it), so that its bytes are those of a local CPU run. At most
    ``in_flight`` tasks are submitted at once (default: two per CPU slot of the cluster). A
    Ray instance this function started is shut down at the end; one that was already running
    (``ray.init`` by the caller) is left alone. ``function`` and ``failed`` are as for
    :func:`pool_results`.
    """
    ray = import_ray()
    started = _connect(ray, address)
    pending: dict[object, Any] = {}
    try:
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0) > 0 and device not in ("cpu",)
        remote = ray.remote(function).options(
            num_cpus=threads, num_gpus=1 if gpus else 0, max_retries=MAX_ATTEMPTS - 1
        )
        limit = in_flight or QUEUE_PER_SLOT * max(1, int(resources.get("CPU", 1) // threads))
        source = iter(tasks)
        while True:
            while len(pending) < limit and (task := next(source, None)) is not None:
                task = task if gpus else on_cpu(task)
                pending[remote.remote(task)] = task
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                yield pending.pop(ref), _ray_outcome(ray, ref, failed)
    finally:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
