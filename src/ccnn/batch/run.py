"""Running a batch: find the inputs, decide what is left to do, run it, keep the manifest.

Only this module's process writes into OUT_DIR. For each result it first appends the
manifest row (with the output's SHA-256), then moves the output into place atomically; so a
run stopped at any point leaves complete outputs only, each listed in the manifest, and a
rerun verifies them by checksum and does the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image
from tqdm import tqdm

from ..errors import CCNNError, ConfigError
from ..files import write_atomic
from ..settings import EncoderOptions
from .manifest import MANIFEST_NAME, Manifest, Row, read_manifest
from .runners import Results, import_ray, pool_results, ray_results, serial_results
from .work import Outcome, Task

COMPRESS = "compress"
DECOMPRESS = "decompress"

#: Lossless formats ``batch decompress`` writes (JPEG would lose what the codec kept).
DECOMPRESS_FORMATS: tuple[str, ...] = ("png", "bmp", "tif", "tiff", "ppm", "webp")

LOCK_NAME = ".ccnn-batch.lock"

FailureReport = Callable[[str, str], None]


@dataclass
class BatchSummary:
    """What a batch run did, for the closing line and for callers of :func:`run_batch`."""

    mode: str
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    manifest: Path = field(default_factory=Path)
    workers: str = ""
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_minute(self) -> float:
        """Outputs made per minute of wall time (skipped ones do not count)."""
        return 60.0 * self.done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        verb = "compressed" if self.mode == COMPRESS else "decompressed"
        return (
            f"{self.total} input{'s' if self.total != 1 else ''}: {self.done} {verb}, "
            f"{self.skipped} skipped (already done), {self.failed} failed; "
            f"{self.seconds:.1f} s on {self.workers}, {self.images_per_minute:.1f} images/min; "
            f"manifest {self.manifest}"
        )


@dataclass
class _Item:
    name: str  # relative to IN_DIR, forward slashes
    source: Path
    output_name: str  # relative to OUT_DIR, forward slashes
    target: Path
    replace: bool = False


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def image_suffixes() -> frozenset[str]:
    """File extensions (lower case, with the dot) of the image formats Pillow can open."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def find_inputs(in_dir: Path, suffixes: frozenset[str], exclude: Path | None = None) -> list[str]:
    """Files under ``in_dir`` whose extension is in ``suffixes``, relative, sorted.

    Hidden files and folders (names starting with a dot: temporary files, .git) and the folder
    ``exclude`` (OUT_DIR when it lies inside IN_DIR) are skipped; symlinked folders are not
    followed, so a link loop cannot make the walk endless.
    """
    found: list[str] = []
    for root, dirs, files in os.walk(in_dir):
        base = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (exclude is None or (base / d).resolve() != exclude)
        )
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                found.append((base / name).relative_to(in_dir).as_posix())
    return sorted(found)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """Hold OUT_DIR for this run, so that two batches cannot interleave writes and rows there."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one batch per folder is then up to the user
        yield
        return
    with (out_dir / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CCNNError(f"{out_dir}: another ccnn batch is writing there") from None
        yield


def _remove_stale_temporaries(out_dir: Path, targets: list[Path]) -> None:
    """Delete what write_atomic leaves when a run is killed in the middle of a write.

    write_atomic names its temporary ``.<name>.<random>.tmp`` beside ``<name>``; only those of
    this batch's own outputs (and manifest) are removed, and only while the lock is held.
    """
    wanted = {(str(target.parent), target.name) for target in targets}
    for root, _, files in os.walk(out_dir):
        for name in files:
            temporary = name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3
            if temporary and (root, name[1:].rsplit(".", 2)[0]) in wanted:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, name))


def _check(item: _Item, row: Row | None, settings: str) -> tuple[str, str]:
    """The state of ``item``'s output, and why it cannot be kept.

    ``missing``: not there, to be made. ``verified``: made by this batch from this input with
    these settings, unchanged since: skipped. ``stale``: made by this batch, unchanged, but
    from other settings or another version of the input (its row is still true about the
    file). ``foreign``: not listed, or changed since it was listed. ``blocked``: not a file.
    """
    target = item.target
    if not target.exists() and not target.is_symlink():
        return "missing", ""
    if not target.is_file():
        return "blocked", f"output {item.output_name} is in the way and is not a file"
    if row is None or row.get("status") != "ok" or row.get("output") != item.output_name:
        return "foreign", f"output {item.output_name} exists but is not listed in the manifest"
    if sha256_file(target) != row.get("sha256"):
        return "foreign", f"output {item.output_name} changed since this batch wrote it"
    if row.get("settings") != settings:
        return "stale", f"output {item.output_name} was made with other settings"
    if sha256_file(item.source) != row.get("input_sha256"):
        return "stale", f"output {item.output_name} was made from another version of the input"
    return "verified", ""


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class _ModeSettings:
    """What the mode decides: the inputs looked for, the outputs made, the settings recorded."""

    mode: str
    fingerprint: str  # the manifest's ``settings``: an output made otherwise is stale
    task_options: dict[str, Any]  # compress: ccnn.compress_image's keywords
    input_suffixes: frozenset[str]
    output_suffix: str


@dataclass(frozen=True)
class _Workers:
    """Where the tasks run, and the torch threads each image trains with (part of its bytes)."""

    threads: int
    description: str  # for the summary line
    jobs: int = 1  # local worker processes; a local run only
    ray: bool = False
    address: str | None = None  # the Ray cluster; None lets ray.init() choose


@dataclass
class _Plan:
    """What a run does with each input, decided before any work starts."""

    items: list[_Item]  # every input, with its output
    todo: list[_Item] = field(default_factory=list)
    refused: list[tuple[_Item, str, bool]] = field(default_factory=list)  # (item, why, keep its row)
    skipped: int = 0  # verified outputs


def _check_arguments(mode: str, jobs: int | None, threads: int | None, ray: bool | str) -> None:
    """Refuse bad arguments before anything is read or written (ConfigError: exit code 2)."""
    if mode not in (COMPRESS, DECOMPRESS):
        raise ConfigError(f"unknown batch mode {mode!r}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, not {threads}")
    if ray is not False and jobs is not None:
        raise ConfigError("jobs sizes the local process pool; with ray use threads (CPUs per task)")


def _mode_settings(
    mode: str, options: EncoderOptions, device: str | None, image_format: str
) -> _ModeSettings:
    """The mode's inputs, outputs and settings fingerprint (checking the image format)."""
    if mode == COMPRESS:
        return _ModeSettings(
            mode,
            fingerprint=options.fingerprint(),
            task_options={"options": options, "device": device},
            input_suffixes=image_suffixes() - {".ccnn"},
            output_suffix=".ccnn",
        )
    if image_format not in DECOMPRESS_FORMATS:
        choices = ", ".join(DECOMPRESS_FORMATS)
        raise ConfigError(f"image format must be one of {choices}, not {image_format!r}")
    return _ModeSettings(mode, "decompress", {}, frozenset({".ccnn"}), f".{image_format}")


def _choose_workers(jobs: int | None, threads: int | None, ray: bool | str) -> _Workers:
    """Workers x threads = cores locally (threads are chosen for ``jobs``, so that a resumed run
    trains with the threads a fresh one would); one CPU per Ray task unless told otherwise."""
    if ray is False:
        cores = cpu_count()
        jobs = jobs or cores
        threads = threads or max(1, cores // jobs)
        description = f"{jobs} local worker{'s' if jobs > 1 else ''} x {threads} torch thread"
        description += "s" if threads > 1 else ""
        return _Workers(threads, description, jobs=jobs)
    threads = threads or 1
    description = f"Ray ({threads} CPU{'s' if threads > 1 else ''} per task)"
    address = None if ray is True or ray == "" else str(ray)
    return _Workers(threads, description, ray=True, address=address)


def _find_names(mode_settings: _ModeSettings, source_dir: Path, target_dir: Path) -> list[str]:
    """The inputs under IN_DIR (relative, sorted), after checking that both folders can be used.

    OUT_DIR is left out of the search when it lies inside IN_DIR, so that a rerun does not take
    its own outputs for inputs.
    """
    if not source_dir.is_dir():
        raise CCNNError(f"{source_dir}: {'is not a folder' if source_dir.exists() else 'no such folder'}")
    if target_dir.exists() and not target_dir.is_dir():
        raise CCNNError(f"{target_dir}: is not a folder")
    resolved_out = target_dir.resolve()
    exclude = resolved_out if resolved_out != source_dir.resolve() else None
    names = find_inputs(source_dir, mode_settings.input_suffixes, exclude)
    if not names:
        kinds = ".ccnn files" if mode_settings.mode == DECOMPRESS else "images"
        raise CCNNError(f"{source_dir}: no {kinds} found")
    return names


def _map_outputs(names: list[str], source_dir: Path, target_dir: Path, output_suffix: str) -> list[_Item]:
    """Each input with its output: the same relative path under OUT_DIR, the extension changed."""
    items: list[_Item] = []
    for name in names:
        output_name = PurePosixPath(name).with_suffix(output_suffix).as_posix()
        items.append(_Item(name, source_dir / name, output_name, target_dir / output_name))
    return items


def _clashes(items: list[_Item]) -> dict[str, str]:
    """Why each input whose output another input would also make is refused, by input name.

    Both are refused, so that neither silently overwrites the other.
    """
    by_output: dict[str, list[str]] = {}
    for item in items:
        by_output.setdefault(item.output_name, []).append(item.name)
    messages: dict[str, str] = {}
    for item in items:
        clash = by_output[item.output_name]
        if len(clash) > 1:
            others = ", ".join(n for n in clash if n != item.name)
            messages[item.name] = f"output {item.output_name} would also be made from {others}"
    return messages


def _plan(items: list[_Item], rows: dict[str, Row], settings: str, force: bool) -> _Plan:
    """Sort the inputs into skipped (verified), to do (missing, or replaced with ``force``) and
    refused (clashing, blocked, or an unverified output that only ``force`` may replace)."""
    plan = _Plan(items)
    clashes = _clashes(items)
    for item in items:
        if item.name in clashes:
            plan.refused.append((item, clashes[item.name], False))
            continue
        state, reason = _check(item, rows.get(item.name), settings)
        if state == "verified":
            plan.skipped += 1
        elif state == "missing":
            plan.todo.append(item)
        elif state in ("foreign", "stale") and force:
            item.replace = True
            plan.todo.append(item)
        else:
            hint = "" if state == "blocked" else "; use -f to replace it"
            # a stale row still describes the file on disk truly: keep it, report the refusal
            plan.refused.append((item, reason + hint, state == "stale"))
    return plan


def _ok_row(item: _Item, outcome: Outcome, input_sha256: str, settings: str) -> Row:
    """The manifest row of a finished output, with the checksum a rerun verifies it by."""
    assert outcome.data is not None
    return {
        "input": item.name,
        "output": item.output_name,
        "status": "ok",
        "bytes": str(len(outcome.data)),
        "bpp": _fmt(outcome.bpp, 5),
        "psnr": _fmt(outcome.psnr, 3),
        "seconds": _fmt(outcome.seconds, 2),
        "steps": "" if outcome.steps is None else str(outcome.steps),
        "threads": str(outcome.threads),
        "host": outcome.host,
        "sha256": hashlib.sha256(outcome.data).hexdigest(),
        "input_sha256": input_sha256,
        "settings": settings,
    }


def _results(workers: _Workers, tasks: Iterator[Task], left: int, device: str | None) -> Results:
    """The runner for ``tasks``: in this process, on a local pool, or on Ray.

    A local run starts fewer processes when fewer images are left; the threads per image stay
    as they were chosen for ``jobs``, so that a resumed run gives the bytes a fresh one would.
    """
    if not workers.ray:
        pool = min(workers.jobs, left)
        return serial_results(tasks) if pool <= 1 else pool_results(tasks, pool)
    return ray_results(tasks, workers.address, workers.threads, device)


def _progress_bar(mode: str, total: int, skipped: int, enabled: bool) -> tqdm:
    """A bar over all inputs on stderr, starting at the ones already verified."""
    return tqdm(
        total=total,
        initial=skipped,
        desc=f"batch {mode}",
        unit="image",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


class _BatchRun:
    """One run's state while it works: the manifest, the counts, the bar and the input checksums.

    Only this object writes into OUT_DIR, one result at a time: the manifest row first, then
    the output's atomic move, so that an output on disk always has its row.
    """

    def __init__(
        self,
        mode_settings: _ModeSettings,
        workers: _Workers,
        summary: BatchSummary,
        manifest: Manifest,
        bar: tqdm,
        on_failure: FailureReport | None,
    ) -> None:
        self.mode_settings = mode_settings
        self.workers = workers
        self.summary = summary
        self.manifest = manifest
        self.bar = bar
        self.on_failure = on_failure
        self.input_digests: dict[str, str] = {}  # of the bytes sent with each task

    def execute(self, plan: _Plan, device: str | None) -> None:
        """Report the refused inputs, then run the tasks and record each result as it comes.

        Leaving (normally or by an interrupt) stops the workers, closes the bar and compacts
        the manifest.
        """
        by_name = {item.name: item for item in plan.todo}
        with self.manifest, contextlib.closing(self.bar):
            for item, message, keep in plan.refused:
                self.fail(item, message, record=not keep)
            results = _results(self.workers, self._tasks(plan.todo), len(plan.todo), device)
            with contextlib.closing(results):
                for task, outcome in results:
                    self.finish(by_name[task.name], outcome)

    def _tasks(self, todo: list[_Item]) -> Iterator[Task]:
        """Read each input as its task is wanted (not all at once); an unreadable one fails."""
        mode_settings, threads = self.mode_settings, self.workers.threads
        for item in todo:
            try:
                data = item.source.read_bytes()
            except OSError as exc:
                self.fail(item, f"cannot read ({exc.strerror or exc})")
                continue
            self.input_digests[item.name] = hashlib.sha256(data).hexdigest()
            yield Task(
                mode_settings.mode, item.name, data, item.output_name, threads, mode_settings.task_options
            )

    def fail(self, item: _Item, message: str, record: bool = True) -> None:
        """Count and report a failed input; ``record`` its row unless the old one stays true."""
        self.summary.failed += 1
        self.summary.failures.append((item.name, message))
        if record:
            self.manifest.record(
                {
                    "input": item.name,
                    "output": item.output_name,
                    "status": "failed",
                    "settings": self.mode_settings.fingerprint,
                    "input_sha256": self.input_digests.get(item.name, ""),
                    "error": message,
                }
            )
        if self.on_failure is not None:
            self.on_failure(item.name, message)
        self.bar.update(1)
        self.bar.set_postfix_str(f"{self.summary.failed} failed", refresh=False)

    def finish(self, item: _Item, outcome: Outcome) -> None:
        """Record a task's outcome: for an output, its row first, then the file moved into place."""
        if not outcome.ok:
            self.fail(item, outcome.error or "failed")
            return
        assert outcome.data is not None
        input_sha256 = self.input_digests.get(item.name, "")
        self.manifest.record(_ok_row(item, outcome, input_sha256, self.mode_settings.fingerprint))
        try:
            write_atomic(item.target, outcome.data, force=item.replace)
        except (CCNNError, OSError) as exc:
            message = str(exc) if isinstance(exc, CCNNError) else f"cannot write {item.output_name}: {exc}"
            self.fail(item, message)
            return
        self.summary.done += 1
        self.bar.update(1)


def run_batch(
    mode: str,
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    options: EncoderOptions | None = None,
    device: str | None = None,
    image_format: str = "png",
    jobs: int | None = None,
    threads: int | None = None,
    ray: bool | str = False,
    force: bool = False,
    progress: bool = False,
    on_failure: FailureReport | None = None,
) -> BatchSummary:
    """Compress (``mode="compress"``) or decompress every input under ``in_dir`` into ``out_dir``.

    ``options`` are the encoder settings (default: the default preset's), and ``device``
    where training runs (:func:`ccnn.compress_image`). Without ``ray`` the work runs on ``jobs`` local
    processes (default: one per core, ``jobs=1`` runs in this process), each training with
    ``threads`` torch threads (default: cores // jobs). ``ray=True`` runs one Ray task per
    image on the cluster ``ray.init()`` finds or starts, a string is its ``address``
    (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``); Ray tasks use ``threads`` CPUs
    each (default 1). Outputs already made and verified by the manifest are skipped; other
    existing files are replaced only with ``force``. Failures are recorded, reported through
    ``on_failure(name, message)`` and counted; the batch always goes on.

    Local workers start from a fork server or by ``spawn``, never by forking this process
    (which has torch loaded), so, as with :mod:`multiprocessing`, a script that calls this
    with ``jobs > 1`` must do so under ``if __name__ == "__main__":``.

    Raises ConfigError for bad settings, RayMissingError when ``ray`` is asked for but not
    installed, CCNNError when IN_DIR or OUT_DIR cannot be used, and KeyboardInterrupt
    (after stopping the workers and saving the manifest) when interrupted.
    """
    _check_arguments(mode, jobs, threads, ray)
    mode_settings = _mode_settings(mode, options or EncoderOptions(), device, image_format)
    if ray is not False:
        import_ray()  # fail early, with the install hint, before any work
    workers = _choose_workers(jobs, threads, ray)
    source_dir, target_dir = Path(in_dir), Path(out_dir)
    names = _find_names(mode_settings, source_dir, target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    manifest_path = target_dir / MANIFEST_NAME
    summary = BatchSummary(mode, total=len(names), manifest=manifest_path, workers=workers.description)
    with _locked(target_dir):
        old_rows = read_manifest(manifest_path)
        rows = {name: old_rows[name] for name in names if name in old_rows}  # rows of gone inputs go
        items = _map_outputs(names, source_dir, target_dir, mode_settings.output_suffix)
        plan = _plan(items, rows, mode_settings.fingerprint, force)
        summary.skipped = plan.skipped
        _remove_stale_temporaries(target_dir, [item.target for item in items] + [manifest_path])
        bar = _progress_bar(mode, len(names), summary.skipped, progress)
        run = _BatchRun(mode_settings, workers, summary, Manifest(manifest_path, rows), bar, on_failure)
        run.execute(plan, device)
    summary.seconds = time.perf_counter() - start
    return summary
