"""ccnn batch: a folder of crops of the bundled sample with one corrupt file, compressed on all cores.

What the batch promises: one output per input in the same tree, a manifest row per input,
failures recorded while the rest go on (exit code 1), a rerun that skips verified outputs,
the same bytes for any --jobs given the same seed and --threads, and no partial file after
an interrupt or a kill, with a rerun that completes the job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ccnn
from ccnn.batch import read_manifest, run_batch
from ccnn.batch import runners as batch_runners
from ccnn.batch.work import Outcome, Task
from ccnn.cli import main

from .conftest import sample_crop

#: Short, seeded training: the step count (not the time budget) ends it, so bytes repeat.
OPTIONS = {"steps": 30, "seconds": 600.0, "seed": 1}
FAST = ccnn.EncoderOptions("fast", **OPTIONS)
FLAGS = ["--preset", "fast", "--steps", "30", "--seconds", "600", "--seed", "1", "--quiet"]
GOOD = ("a.png", "gray.png", "sub/b.png", "sub/deeper/c.bmp")


def make_folder(root: Path) -> Path:
    """Four small crops in a nested tree (one gray, one BMP), a corrupt PNG and files to ignore."""
    crops = {
        "a.png": sample_crop(40, 40, 48, 64),
        "gray.png": sample_crop(100, 120, 40, 56).mean(axis=2).astype(np.uint8),
        "sub/b.png": sample_crop(70, 150, 48, 64),
        "sub/deeper/c.bmp": sample_crop(130, 30, 48, 48),
    }
    for name, pixels in crops.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    (root / "notes.txt").write_text("not an image, not an input")
    (root / ".hidden.png").write_bytes((root / "a.png").read_bytes())
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def reference(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder compressed in this process, one torch thread per image: the bytes to match."""
    out = tmp_path_factory.mktemp("reference")
    summary = run_batch("compress", folder, out, options=FAST, jobs=1, threads=1)
    assert (summary.done, summary.skipped, summary.failed) == (4, 0, 1)
    return out


def outputs(out: Path) -> dict[str, bytes]:
    return {
        path.relative_to(out).as_posix(): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and not path.name.startswith(".") and path.name != "manifest.csv"
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_consistent(out: Path, killed: bool = False) -> None:
    """Every output decodes and is listed with its checksum; no temporary file is left.

    After a SIGKILL (``killed``) a write may have been cut between its temporary file and the
    rename: the hidden ``.<name>.<random>.tmp`` may remain (the next run removes it), but no
    output is partial.
    """
    rows = read_manifest(out / "manifest.csv")
    listed = {row["output"]: row for row in rows.values() if row["status"] == "ok"}
    for name, data in outputs(out).items():
        assert name in listed, name
        assert sha(data) == listed[name]["sha256"], name
        ccnn.decompress(data)
    if not killed:
        assert not [p for p in out.rglob("*.tmp")]


def test_folder_with_a_corrupt_file(folder: Path, reference: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["batch", "compress", str(folder), str(out), "--jobs", "2", *FLAGS]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ccnn: error: bad.png: not an image file ccnn can read"]

    # the tree is mirrored, one .ccnn per good input, and the bytes do not depend on --jobs
    made = outputs(out)
    assert sorted(made) == ["a.ccnn", "gray.ccnn", "sub/b.ccnn", "sub/deeper/c.ccnn"]
    assert made == outputs(reference)
    assert ccnn.decompress(made["gray.ccnn"]).shape == (40, 56, 1)

    rows = read_manifest(out / "manifest.csv")
    assert sorted(rows) == ["a.png", "bad.png", "gray.png", "sub/b.png", "sub/deeper/c.bmp"]
    assert rows["bad.png"]["status"] == "failed"
    assert rows["bad.png"]["error"] == "not an image file ccnn can read"
    for name in GOOD:
        row = rows[name]
        assert row["status"] == "ok" and row["error"] == ""
        data = made[row["output"]]
        assert int(row["bytes"]) == len(data) and row["sha256"] == sha(data)
        assert row["input_sha256"] == sha((folder / name).read_bytes())
        assert float(row["bpp"]) > 0 and float(row["psnr"]) > 0 and float(row["seconds"]) > 0
        assert row["steps"] == "30" and row["threads"] == "1"
    assert_consistent(out)


def test_rerun_skips_everything(folder: Path, reference: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.ccnn")}

    real = ccnn.compress_image

    def only_the_bad_one(image, *args, **kwargs):
        assert Path(image).name == "bad.png", f"{image}: a verified output was made again"
        return real(image, *args, **kwargs)

    monkeypatch.setattr(ccnn, "compress_image", only_the_bad_one)
    summary = run_batch("compress", folder, out, options=FAST, jobs=2)
    assert (summary.done, summary.skipped, summary.failed) == (0, 4, 1)  # bad.png is tried again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.ccnn")} == before
    # --quality 4 is the preset's default: the same settings, still nothing to do
    summary = run_batch("compress", folder, out, options=dataclasses.replace(FAST, quality=4), jobs=1)
    assert summary.skipped == 4


def test_missing_changed_and_foreign_outputs(folder: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / "a.ccnn").unlink()  # missing: made again, without -f
    tampered = out / "sub" / "b.ccnn"
    tampered.write_bytes(tampered.read_bytes()[:-1] + b"!")  # changed since the batch wrote it
    failures: list[tuple[str, str]] = []
    summary = run_batch(
        "compress",
        folder,
        out,
        options=FAST,
        jobs=1,
        threads=1,
        on_failure=lambda name, message: failures.append((name, message)),
    )
    assert (summary.done, summary.skipped, summary.failed) == (1, 2, 2)
    assert (
        "sub/b.png",
        "output sub/b.ccnn changed since this batch wrote it; use -f to replace it",
    ) in failures
    assert (out / "a.ccnn").read_bytes() == (reference / "a.ccnn").read_bytes()
    assert read_manifest(out / "manifest.csv")["sub/b.png"]["status"] == "failed"

    # other settings: the existing outputs are kept (and their rows), not replaced without -f
    other = dataclasses.replace(FAST, steps=20)
    summary = run_batch("compress", folder, out, options=other, jobs=1, threads=1)
    assert (summary.done, summary.failed) == (0, 5)
    assert "made with other settings" in summary.failures[0][1]
    assert read_manifest(out / "manifest.csv")["a.png"]["status"] == "ok"

    # -f replaces what the manifest cannot verify, with the bytes a fresh run gives
    summary = run_batch(
        "compress", folder, out, options=FAST, jobs=1, threads=1, force=True
    )
    assert (summary.done, summary.skipped, summary.failed) == (1, 3, 1)
    assert outputs(out) == outputs(reference)
    assert_consistent(out)


def test_decompress_folder(reference: Path, folder: Path, tmp_path: Path, capsys) -> None:
    source = tmp_path / "ccnn"
    shutil.copytree(reference, source)
    whole = (source / "a.ccnn").read_bytes()
    (source / "sub" / "broken.ccnn").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "png"
    assert main(["batch", "decompress", str(source), str(out), "--jobs", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ccnn: error: sub/broken.ccnn: ")
    for name in ("a", "gray", "sub/b", "sub/deeper/c"):
        with Image.open(out / f"{name}.png") as image:
            decoded = np.asarray(image)
        expected = ccnn.decompress((source / f"{name}.ccnn").read_bytes())
        assert np.array_equal(decoded.reshape(expected.shape), expected)
    rows = read_manifest(out / "manifest.csv")
    assert rows["sub/broken.ccnn"]["status"] == "failed" and rows["a.ccnn"]["output"] == "a.png"
    assert_consistent_images(out)
    assert main(["batch", "decompress", str(source), str(out), "--format", "bmp", "--quiet"]) == 1
    assert (out / "sub" / "deeper" / "c.bmp").exists()


def assert_consistent_images(out: Path) -> None:
    listed = {row["output"]: row["sha256"] for row in read_manifest(out / "manifest.csv").values()}
    for name, data in outputs(out).items():
        assert listed[name] == sha(data)


def _interruptible() -> None:
    """In the child before exec: Ctrl-C's default action, as a terminal's foreground job has it.

    A shell starts a background job with SIGINT ignored, the ignoring is inherited through
    exec, and Python then leaves it so: launched that way, pytest would hand its children a
    SIGINT they never see, and the Ctrl-C tests would fail for a reason outside ccnn.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ccnn.cli", "batch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
        preexec_fn=_interruptible,
    )


def _wait_for_first_output(process: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(out.rglob("*.ccnn")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no output in time"
        time.sleep(0.05)


def test_killed_midway_then_rerun(folder: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = _run_cli("compress", str(folder), str(out), "--jobs", "2", "--threads", "1", *FLAGS)
    _wait_for_first_output(process, out)
    os.killpg(process.pid, signal.SIGKILL)  # the batch and its workers, with no chance to tidy up
    process.communicate()
    done = outputs(out)
    assert 1 <= len(done) < 4
    assert_consistent(out, killed=True)
    # the rerun keeps what was finished and makes the rest: the same bytes as an uninterrupted run
    assert main(["batch", "compress", str(folder), str(out), "--jobs", "1", "--threads", "1", *FLAGS]) == 1
    assert outputs(out) == outputs(reference)
    assert_consistent(out)


def _group_gone(pgid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c(folder: Path, tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it, while workers are training."""
    out = tmp_path / "out"
    slow = ["--preset", "fast", "--steps", "2000", "--seconds", "600", "--quiet"]
    process = _run_cli("compress", str(folder), str(out), "--jobs", "2", *slow)
    deadline = time.monotonic() + 120
    while "bad.png" not in read_manifest(out / "manifest.csv"):  # running, bad.png already failed
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("ccnn: interrupted;") and "Traceback" not in err
    assert _group_gone(process.pid), "workers left running"
    assert_consistent(out)


def test_interrupt_stops_workers_and_keeps_the_manifest(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def interrupt(name: str, message: str) -> None:  # Ctrl-C while the pool is busy
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch("compress", folder, out, options=FAST, jobs=2, on_failure=interrupt)
    assert not multiprocessing.active_children()
    rows = read_manifest(out / "manifest.csv")
    assert rows["bad.png"]["status"] == "failed" and len(outputs(out)) < 4
    assert_consistent(out)


def test_interrupt_exit_code(folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ccnn.batch.command.run_batch", interrupted)
    assert main(["batch", "compress", str(folder), str(tmp_path / "out"), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "run the same command again" in err[0]


def _flaky(task: Task) -> Outcome:
    """A stand-in for run_task whose worker dies on the first try of 'dies-once'."""
    marker = Path(task.options["marker"])
    if task.name == "always-dies" or (task.name == "dies-once" and not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return Outcome(task.name.encode())


def test_killed_worker_is_retried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(batch_runners, "MAX_ATTEMPTS", 2)
    options = {"marker": str(tmp_path / "marker")}
    tasks = [Task("compress", name, b"", name, 1, options) for name in ("one", "dies-once", "two")]
    results = {task.name: outcome for task, outcome in batch_runners.pool_results(tasks, 2, _flaky)}
    assert {name: outcome.data for name, outcome in results.items()} == {
        "one": b"one",
        "dies-once": b"dies-once",
        "two": b"two",
    }
    monkeypatch.setattr(batch_runners, "MAX_ATTEMPTS", 1)
    tasks = [Task("compress", "always-dies", b"", "x", 1, options)]
    [(_, outcome)] = list(batch_runners.pool_results(tasks, 1, _flaky))
    assert not outcome.ok and "worker process died" in outcome.error


def test_usage_and_input_errors(folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = str(tmp_path / "out")
    usage = [
        ["--jobs", "0"],
        ["--threads", "0"],
        ["--quality", "99"],
        ["--ray", "--jobs", "2"],
    ]
    for extra in usage:
        assert main(["batch", "compress", str(folder), out, "--quiet", *extra]) == 2, extra
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    capsys.readouterr()
    assert main(["batch", "compress", str(folder), out, "--ray"]) == 2
    assert "pip install 'ccnn-codec[ray]'" in capsys.readouterr().err
    assert main(["batch", "compress", str(tmp_path / "missing"), out]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["batch", "compress", str(tmp_path / "empty"), out]) == 1
    assert "no images found" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.ccnn").exists()


def test_clashing_output_names(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    pixels = sample_crop(80, 100, 16, 16)
    Image.fromarray(pixels).save(source / "x.png")
    Image.fromarray(pixels).save(source / "x.bmp")
    summary = run_batch("compress", source, tmp_path / "out", options=FAST, jobs=1)
    assert (summary.done, summary.failed) == (0, 2)
    assert "output x.ccnn would also be made from x.png" in dict(summary.failures)["x.bmp"]
    assert not (tmp_path / "out" / "x.ccnn").exists()


def test_stale_temporaries_of_our_outputs_are_removed(folder: Path, reference: Path, tmp_path: Path) -> None:
    """What a killed run leaves (``.<output>.<random>.tmp``) goes; anyone else's file stays."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    ours = out / "sub" / ".b.ccnn.k3x9q1.tmp"
    theirs = [out / ".notes.txt.k3x9q1.tmp", out / "sub" / "b.ccnn.tmp"]
    for path in (ours, *theirs):
        path.write_bytes(b"partial")
    assert main(["batch", "compress", str(folder), str(out), "--jobs", "1", "--threads", "1", *FLAGS]) == 1
    assert not ours.exists() and all(path.read_bytes() == b"partial" for path in theirs)
    assert outputs(out) == {**outputs(reference), "sub/b.ccnn.tmp": b"partial"}
