"""ccnn batch --ray against a real Ray instance started by the test (skipped without Ray).

Ray is an optional extra (pip install 'ccnn-codec[ray]'); these tests start a local two-CPU
instance once for the module and check that the batch gives the bytes of a local run.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from ccnn.batch import read_manifest, run_batch
from ccnn.cli import main

from .test_batch import FAST, FLAGS, assert_consistent, make_folder, outputs

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance on loopback with two CPUs, as ``ray start --head`` would give."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


def test_ray_gives_the_bytes_of_a_local_run(ray_instance, tmp_path: Path, capsys) -> None:
    folder = make_folder(tmp_path / "photos")
    local = tmp_path / "local"
    summary = run_batch("compress", folder, local, options=FAST, jobs=1, threads=1)
    assert (summary.done, summary.failed) == (4, 1)

    out = tmp_path / "ray"
    assert main(["batch", "compress", str(folder), str(out), *FLAGS, "--ray"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "ccnn: error: bad.png: not an image file ccnn can read"
    ]
    assert outputs(out) == outputs(local)
    rows = read_manifest(out / "manifest.csv")
    assert rows["bad.png"]["status"] == "failed"
    assert all(
        rows[name]["status"] == "ok" and rows[name]["threads"] == "1" for name in rows if name != "bad.png"
    )
    assert_consistent(out)
    assert ray.is_initialized()  # a Ray instance the caller started is left running

    # a rerun on Ray skips everything; a run made locally is verified the same way
    summary = run_batch("compress", folder, out, options=FAST, ray=True)
    assert (summary.done, summary.skipped, summary.failed) == (0, 4, 1)
    both = tmp_path / "mixed"
    shutil.copytree(local, both)
    summary = run_batch("compress", folder, both, options=FAST, ray=True)
    assert (summary.done, summary.skipped) == (0, 4)


def test_ray_decompress(ray_instance, tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "photos")
    compressed = tmp_path / "ccnn"
    run_batch("compress", folder, compressed, options=dataclasses.replace(FAST, steps=5), jobs=1)
    out = tmp_path / "png"
    summary = run_batch("decompress", compressed, out, ray=True)
    assert (summary.done, summary.failed) == (4, 0)
    assert sorted(outputs(out)) == ["a.png", "gray.png", "sub/b.png", "sub/deeper/c.png"]
