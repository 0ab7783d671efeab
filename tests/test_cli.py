"""The ccnn command as a user runs it: exit codes, one-line errors, no clobbering."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ccnn
from ccnn.cli import main
from ccnn.files import write_atomic, writes_in_place


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ccnn.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_compress_decompress_info(tmp_path: Path, crop_png: Path, capsys) -> None:
    out = tmp_path / "x.ccnn"
    assert (
        main(["compress", str(crop_png), "-o", str(out), "--preset", "fast", "--steps", "10", "--quiet"]) == 0
    )
    assert main(["info", str(out)]) == 0
    assert "total" in capsys.readouterr().out
    back = tmp_path / "back.png"
    assert main(["decompress", str(out), "-o", str(back), "--quiet"]) == 0
    with Image.open(back) as image:
        assert image.size == (96, 64) and image.format == "PNG"
    assert main(["decompress", str(out), "-o", str(tmp_path / "back.bmp"), "--quiet"]) == 0


def test_default_output_names(tmp_path: Path, crop: np.ndarray) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(crop).save(source)
    before = source.read_bytes()
    assert main(["compress", str(source), "--preset", "fast", "--steps", "5", "--quiet"]) == 0
    assert (tmp_path / "photo.ccnn").exists()
    assert source.read_bytes() == before  # the input is never touched
    source.unlink()
    assert main(["decompress", str(tmp_path / "photo.ccnn"), "--quiet"]) == 0
    assert (tmp_path / "photo-ccnn.png").exists()  # never photo.png, the original's name


def test_refuses_to_overwrite(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    existing = tmp_path / "x-ccnn.png"
    existing.write_bytes(b"precious")
    result = run("decompress", str(source))
    assert result.returncode == 1
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    assert existing.read_bytes() == b"precious"
    assert main(["decompress", str(source), "-f", "--quiet"]) == 0
    assert existing.read_bytes() != b"precious"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_input_exit_1_one_line(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    bad = tmp_path / "bad.ccnn"
    bad.write_bytes(encoded.data[: len(encoded.data) // 2])
    (tmp_path / "empty.ccnn").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    cases = [
        ("decompress", str(bad), "-o", str(tmp_path / "o1.png")),
        ("decompress", str(tmp_path / "empty.ccnn"), "-o", str(tmp_path / "o2.png")),
        ("info", str(bad)),
        ("compress", str(tmp_path / "text.png"), "-o", str(tmp_path / "o.ccnn")),
        ("compress", str(tmp_path / "missing.png")),
        ("decompress", str(tmp_path / "missing.ccnn")),
    ]
    for args in cases:
        result = run(*args)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ccnn: error:"), (args, result.stderr)
    assert not (tmp_path / "o1.png").exists() and not (tmp_path / "o.ccnn").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_one_line(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    """Writing where no space is left (/dev/full fails every write with ENOSPC) is one line and
    exit 1, not a traceback."""
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    result = run("decompress", str(source), "-o", "/dev/full", "--format", "png")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccnn: error:") and "space" in lines[0]


def test_bad_usage_exit_2(crop_png: Path) -> None:
    assert run().returncode == 2
    assert run("compress").returncode == 2
    assert run("compress", str(crop_png), "--preset", "nope").returncode == 2
    for args in (("--quality", "0"), ("--ratio", "4"), ("--steps", "0"), ("--slope", "-1")):
        result = run("compress", str(crop_png), "--preset", "fast", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_output_folder_is_checked_before_training(tmp_path: Path, crop_png: Path) -> None:
    """A file where the output's folder should be is refused at once, not after the training."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"x")
    result = run("compress", str(crop_png), "-o", str(blocker / "x.ccnn"), "--steps", "100000")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("ccnn: error:") and "is a file, not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_option_values_are_one_line_usage_errors(tmp_path: Path, crop_png: Path) -> None:
    out = str(tmp_path / "x.ccnn")
    for options in (
        ("--device", "foo"),
        ("--seed", "-1"),
        ("--seed", "99999999999999999999"),
        ("--seconds", "nan"),
        ("--seconds", "inf"),
        ("--quality", "x"),
        *([] if torch.cuda.is_available() else [("--device", "cuda")]),
    ):
        result = run("compress", str(crop_png), "-o", out, "--preset", "fast", *options)
        assert result.returncode == 2, options
        assert result.stderr.startswith("ccnn: error:") and len(result.stderr.strip().splitlines()) == 1
    assert not Path(out).exists()


def pipe(*args: str, data: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``ccnn`` with ``data`` on standard input and standard output captured as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "ccnn.cli", *args], input=data, capture_output=True, cwd=cwd, timeout=300
    )


def test_pipes_compress_decompress_info(tmp_path: Path, crop_png: Path) -> None:
    """``-`` reads standard input and ``-o -`` writes standard output; nothing else goes there."""
    (tmp_path / "-").write_bytes(b"a file named '-' is not what '-' means")
    encoded = pipe(
        "compress",
        "-",
        "--preset",
        "fast",
        "--steps",
        "5",
        "--seed",
        "1",
        data=crop_png.read_bytes(),
        cwd=tmp_path,
    )
    assert encoded.returncode == 0, encoded.stderr
    assert ccnn.read_info(encoded.stdout).width == 96  # stdout holds the file and nothing else
    assert b"<stdin> -> <stdout>" in encoded.stderr  # the summary went to stderr
    same = pipe(
        "compress", str(crop_png), "-o", "-", "--preset", "fast", "--steps", "5", "--seed", "1", "--quiet"
    )
    assert same.returncode == 0 and same.stdout == encoded.stdout and same.stderr == b""

    decoded = pipe("decompress", "-", data=encoded.stdout)
    assert decoded.returncode == 0 and decoded.stdout.startswith(b"\x89PNG")  # PNG by default
    with Image.open(io.BytesIO(decoded.stdout)) as image:
        assert np.array_equal(np.asarray(image), ccnn.decompress(encoded.stdout))
    bmp = pipe("decompress", "-", "-o", "-", "--format", "bmp", "--quiet", data=encoded.stdout)
    assert bmp.returncode == 0 and bmp.stdout.startswith(b"BM") and bmp.stderr == b""
    jpeg = pipe("decompress", "-", "--format", "jpg", "--quiet", data=encoded.stdout)
    assert jpeg.stdout.startswith(b"\xff\xd8") and b"lossy" in jpeg.stderr

    info = pipe("info", "-", "--json", data=encoded.stdout)
    assert info.returncode == 0 and json.loads(info.stdout)["width"] == 96
    assert (tmp_path / "-").read_bytes().startswith(b"a file named")  # never read nor written


def test_pipes_bad_input_and_usage(tmp_path: Path) -> None:
    for args, data, code in (
        (("info", "-"), b"", 1),
        (("decompress", "-"), b"not a ccnn file", 1),
        (("compress", "-", "--preset", "fast", "--steps", "1"), b"hello", 1),
        (("decompress", "-", "--format", "nope"), b"x", 2),
        (("decompress", "-", "--threads", "0"), b"x", 2),
    ):
        result = pipe(*args, data=data)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == code and result.stdout == b"", (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("ccnn: error:"), (args, lines)
    assert "<stdin>" in pipe("info", "-", data=b"junk").stderr.decode()


def test_pipes_refuse_a_terminal(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    """Binary data is never written to (or read from) a terminal: one line, exit 2."""
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    primary, secondary = pty.openpty()
    try:
        for args, stdin in (
            (("decompress", str(source), "-o", "-"), subprocess.DEVNULL),
            (("compress", "-", "-o", str(tmp_path / "y.ccnn")), secondary),
        ):
            result = subprocess.run(
                [sys.executable, "-m", "ccnn.cli", *args],
                stdin=stdin,
                stdout=secondary if stdin is subprocess.DEVNULL else subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=120,
            )
            lines = result.stderr.decode().strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and "terminal" in lines[0], (args, lines)
    finally:
        os.close(primary)
        os.close(secondary)
    assert not (tmp_path / "y.ccnn").exists()


def test_outputs_that_are_not_regular_files_are_written_in_place(
    tmp_path: Path, encoded: ccnn.EncodeResult, capsys
) -> None:
    """``-o /dev/null`` keeps the device (no rename over it, no --force needed); a FIFO gets the bytes."""
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    before = os.stat(os.devnull)
    for force in ([], ["-f"]):
        assert main(["decompress", str(source), "-o", os.devnull, "--quiet", *force]) == 0
    after = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert main(["decompress", str(source), "-o", str(fifo), "--format", "bmp", "--quiet"]) == 0
    reader.join(timeout=60)
    assert received and received[0].startswith(b"BM") and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    through_stdout = pipe("decompress", str(source), "-o", "/dev/stdout", "--quiet")
    assert through_stdout.returncode == 0 and through_stdout.stdout.startswith(b"\x89PNG")


def test_writes_in_place_only_for_what_a_rename_would_break(tmp_path: Path) -> None:
    regular = tmp_path / "x.ccnn"
    regular.write_bytes(b"old")
    assert not writes_in_place(regular) and not writes_in_place(tmp_path / "new.ccnn")
    assert not writes_in_place(tmp_path)
    assert writes_in_place(os.devnull) and writes_in_place("/dev/stdout") and writes_in_place("/dev/fd/1")
    with pytest.raises(ccnn.OutputExistsError):  # a regular file still needs force
        write_atomic(regular, b"new")
    assert regular.read_bytes() == b"old"
    write_atomic(os.devnull, b"discarded")  # no force needed, nothing destroyed
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_sigterm_stops_compress_like_ctrl_c(tmp_path: Path, crop_png: Path) -> None:
    out = tmp_path / "x.ccnn"
    process = subprocess.Popen(
        [sys.executable, "-m", "ccnn.cli", "compress", str(crop_png), "-o", str(out), "--steps", "100000"],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)  # start-up and the first training steps
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_out_of_memory_is_a_ccnn_error(monkeypatch, crop: np.ndarray) -> None:
    """torch reports a failed allocation as a RuntimeError; callers get ccnn's own error instead."""
    import ccnn.encoder.encode

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 6 GB")

    monkeypatch.setattr(ccnn.encoder.encode, "encode", fail)
    with pytest.raises(ccnn.CCNNError, match="out of memory"):
        ccnn.compress(crop, "fast", steps=1)


def test_python_dash_m_ccnn_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ccnn", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == f"ccnn {ccnn.__version__}"


def test_progress_follows_the_budget_nearer_its_end() -> None:
    from ccnn.options import budget_percent

    def event(step: int, seconds: float) -> ccnn.Progress:
        return ccnn.Progress(step, 1000, seconds, 10.0, 30.0, 0.5, "crops")

    assert budget_percent(event(250, 1.0)) == 25  # steps bind
    assert budget_percent(event(100, 7.5)) == 75  # time binds
    assert budget_percent(event(1000, 12.0)) == 100


def test_decompress_to_a_lossy_format_says_so(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    lossy = run("decompress", str(source), "-o", str(tmp_path / "x.jpg"), "--quiet")
    assert lossy.returncode == 0 and "lossy" in lossy.stderr and len(lossy.stderr.splitlines()) == 1
    lossless = run("decompress", str(source), "-o", str(tmp_path / "x.png"), "--quiet")
    assert lossless.returncode == 0 and lossless.stderr == ""


_INFO_IMPORTS = (
    "import sys; from ccnn.cli import main; code = main(['info', sys.argv[1]]); "
    "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['ccnn', 'bench'], ['ccnn', 'batch'], "
    "['ccnn', 'tune']) and m not in ('ccnn.bench', 'ccnn.bench.codecs', 'ccnn.bench.sheet')))"
)


def test_core_commands_leave_the_extension_commands_unloaded() -> None:
    """``ccnn info`` loads neither the benchmark, the batch runner nor the tuner (start-up time);
    the whole help still lists every command, and an extension command still runs."""
    golden = Path(__file__).resolve().parent / "data" / "v7-fast-rgb.ccnn"
    done = subprocess.run(
        [sys.executable, "-c", _INFO_IMPORTS, str(golden)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    from ccnn.cli import CORE_COMMANDS, EXTENSION_COMMANDS, build_parser

    help_text = build_parser().format_help()
    for command in (*CORE_COMMANDS, *EXTENSION_COMMANDS):
        assert command in help_text
    with pytest.raises(SystemExit) as stopped:
        main(["tune", "--help"])
    assert stopped.value.code == 0
