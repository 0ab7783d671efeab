"""Presets from files: ``--config FILE.toml``, ``ccnn presets``, and the training overrides.

A settings file is the one typed description of the encoder (:class:`ccnn.EncoderOptions` with
its :class:`ccnn.TrainingOverrides`) written as TOML: it must round-trip exactly (a tuner will
write them), a preset written out must encode as the preset does, flags must override the file,
and a bad file must be refused in one line naming the file and the setting.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import ccnn
from ccnn.batch import run_batch
from ccnn.cli import build_parser, main
from ccnn.errors import ConfigError, ConfigFileError
from ccnn.format.spec import LayerSpec
from ccnn.options import encoder_options
from ccnn.presetinfo import preset_toml
from ccnn.settings import EncoderOptions, Preset, TrainingOverrides, training_phases

from .conftest import sample_crop

CUSTOM = EncoderOptions(
    "default",
    quality=7,
    steps=123,
    seconds=2.5,
    seed=9,
    slope=1 / 3,
    training=TrainingOverrides(
        network="fine",
        learning_rate=1e-7,
        crop_size=48,
        refine_share=0.1 + 0.2,  # 0.30000000000000004: the shortest exact spelling is kept
        refine_time_share=0.25,
        soft_rounding=(),
        context_levels=3,
        distortion="mse",
    ),
)
LAYERS = EncoderOptions(
    "fast",
    training={
        "encoder_layers": [[16, 3, 2], [8, 3, 2]],
        "decoder_layers": [[8, 4, 2], [3, 4, 2]],
        "latent_activation": True,
        "soft_rounding": [0.5, 0.25],
    },
)


@pytest.mark.parametrize("options", [*(EncoderOptions.spelled_out(p) for p in Preset), CUSTOM, LAYERS])
def test_settings_files_round_trip_exactly(options: EncoderOptions) -> None:
    text = options.to_toml()
    back = EncoderOptions.from_toml(text)
    assert back == options
    assert back.to_toml() == text
    assert back.fingerprint() == options.fingerprint()


def test_written_layers_and_values_are_typed() -> None:
    assert LAYERS.training.encoder_layers == (LayerSpec(16, 3, 2), LayerSpec(8, 3, 2))
    assert "encoder_layers = [[16, 3, 2], [8, 3, 2]]" in LAYERS.to_toml()
    assert "refine_share = 0.30000000000000004" in CUSTOM.to_toml()
    assert "soft_rounding = []" in CUSTOM.to_toml()
    assert CUSTOM.training.distortion is ccnn.settings.Distortion.MSE
    assert "# network =" in EncoderOptions("fast").to_toml()  # unset: a comment, the preset's choice


@pytest.mark.parametrize("preset", list(Preset))
def test_a_preset_written_out_resolves_as_the_preset(preset: Preset) -> None:
    spelled = EncoderOptions.from_toml(preset_toml(preset))
    bare = EncoderOptions(preset)
    for channels in (1, 3):
        for pixels in (None, 32 * 48, 768 * 512, 4000 * 3000):
            for block_psnr in (None, 15.0, 21.0, 30.0):
                assert spelled.resolve(channels, pixels, block_psnr) == bare.resolve(
                    channels, pixels, block_psnr
                )
    assert spelled.fingerprint() == bare.fingerprint()


def test_training_overrides_change_the_encoder() -> None:
    fine = EncoderOptions("default", quality=1, training={"network": "fine"}).resolve(pixels=64 * 64)
    assert fine.total_stride == 4 and EncoderOptions("default", quality=1).resolve().total_stride == 8
    assert fine.decoder[-1].channels == 3
    gray = EncoderOptions("fast", training={"network": "medium"}).resolve(channels=1)
    assert gray.latent_channels == 12 and gray.decoder[-1].channels == 1
    layers = LAYERS.resolve(channels=1)
    assert layers.encoder == LAYERS.training.encoder_layers and layers.decoder[-1] == LayerSpec(1, 4, 2)
    whole = training_phases(CUSTOM.resolve())[1]
    assert whole.quantizer == "noise" and whole.share == pytest.approx(0.3)
    assert CUSTOM.resolve().learning_rate == 1e-7 and CUSTOM.resolve().distortion == "mse"
    # reference_steps is the effort before the size scaling, steps= the exact count
    small = EncoderOptions("fast", training={"reference_steps": 1400}).resolve(pixels=768 * 512)
    assert small.steps == 1400
    assert EncoderOptions("fast", steps=50, training={"reference_steps": 1400}).resolve().steps == 50
    paper = EncoderOptions("paper", training={"crop_size": 40, "reference_steps": 10}).resolve()
    assert (paper.crop_size, paper.steps) == (40, 10)


def test_batch_fingerprint_follows_the_training_overrides() -> None:
    fast = EncoderOptions("fast")
    assert fast.fingerprint() == EncoderOptions.from_toml(preset_toml("fast")).fingerprint()
    different = [
        dataclasses.replace(fast, training=TrainingOverrides(**change))
        for change in (
            {"learning_rate": 0.02},
            {"soft_rounding": (0.4, 0.2)},
            {"crop_size": 16},
            {"network": "small"},  # the preset's network for this resolve, but forced for every image
        )
    ]
    prints = {options.fingerprint() for options in different}
    assert fast.fingerprint() not in prints and len(prints) == len(different)


def test_batch_does_not_mix_settings(tmp_path: Path) -> None:
    from PIL import Image

    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray(sample_crop(height=32, width=32)).save(source / "a.png")
    options = EncoderOptions("fast", steps=3, seed=1)
    out = tmp_path / "out"
    assert run_batch("compress", source, out, options=options, jobs=1).done == 1
    assert run_batch("compress", source, out, options=options, jobs=1).skipped == 1
    changed = dataclasses.replace(options, training=TrainingOverrides(learning_rate=0.02))
    summary = run_batch("compress", source, out, options=changed, jobs=1)
    assert summary.skipped == 0 and summary.failed == 1  # stale: refused without --force


def _parse(*words: str) -> EncoderOptions:
    return encoder_options(build_parser().parse_args(list(words)))


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(CUSTOM.to_toml())
    assert _parse("compress", "x.png", "--config", str(path)) == CUSTOM
    overridden = _parse(
        "compress", "x.png", "--config", str(path), "-q", "2", "--seed", "4", "--preset", "fast"
    )
    assert (overridden.quality, overridden.seed, overridden.preset) == (2, 4, Preset.FAST)
    assert (overridden.steps, overridden.slope, overridden.training) == (123, 1 / 3, CUSTOM.training)
    batch = _parse("batch", "compress", "in", "out", "--config", str(path), "--steps", "7")
    assert batch == dataclasses.replace(CUSTOM, steps=7)
    # the benchmark sweeps the quality itself: a file's quality does not reach it
    bench = _parse("bench", "--config", str(path))
    assert bench.quality is None and bench.training == CUSTOM.training
    assert _parse("compress", "x.png").preset is Preset.DEFAULT


def test_the_api_takes_files_text_and_dicts(tmp_path: Path) -> None:
    path = tmp_path / "fine.toml"
    path.write_text('preset = "fast"\nseed = 1\nsteps = 4\n\n[training]\nnetwork = "fine"\n')
    options = EncoderOptions.from_toml_file(path)
    assert options == EncoderOptions("fast", seed=1, steps=4, training={"network": "fine"})
    assert options == EncoderOptions.from_toml(path.read_text()) == EncoderOptions.from_toml(path)
    crop = sample_crop(height=32, width=32)
    result = ccnn.compress_image(crop, options=options)
    assert ccnn.read_info(result.data).spec.latent_stride == 4
    assert (
        ccnn.compress_image(crop, "fast", seed=1, steps=4, training={"network": "fine"}).data == result.data
    )
    with pytest.raises(ConfigError, match="unknown training setting 'rate'"):
        EncoderOptions("fast", training={"rate": 1})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("qualty = 3\n", "unknown setting 'qualty'"),
        ("[training]\nlearnig_rate = 0.1\n", "unknown setting 'learnig_rate' in \\[training\\]"),
        ("[network]\nname = 'fine'\n", "unknown table \\[network\\]"),
        ("quality = 12\n", "quality must be between 1 and 9"),
        ('preset = "paper"\nquality = 3\n', "quality applies to the fast or default preset only"),
        ('preset = "huge"\n', "unknown preset 'huge'"),
        ("[training]\nlearning_rate = -1.0\n", "learning_rate must be a positive number"),
        ("[training]\nrefine_share = 1.0\n", "refine_share must be below 1"),
        ("[training]\ncrop_size = 2.5\n", "crop_size must be a whole number"),
        ('[training]\nnetwork = "huge"\n', "network must be one of small, medium, fine"),
        ('[training]\ndistortion = "ssim"\n', "distortion must be 'mse' or 'psnr'"),
        ("[training]\nsoft_rounding = [0.3]\n", "soft_rounding must be \\[start, end\\]"),
        ("[training]\nlatent_activation = 1\n", "latent_activation must be true or false"),
        ("[training]\nencoder_layers = [[8, 3, 2]]\n", "set both or neither"),
        (
            "[training]\nencoder_layers = [[8, 3, 2]]\ndecoder_layers = [[3, 4, 4]]\n",
            "strides multiply to 2, decoder_layers' to 4",
        ),
        (
            "[training]\nencoder_layers = [[8, 3, 0]]\ndecoder_layers = [[3, 4, 2]]\n",
            "stride must be between",
        ),
        ('preset = "paper"\nratio = 4\n[training]\nnetwork = "fine"\n', "ratio and kernel"),
        ("quality = \n", "not a valid TOML file"),
    ],
)
def test_bad_files_name_the_file_and_the_setting(tmp_path: Path, text: str, message: str, capsys) -> None:
    with pytest.raises(ConfigFileError, match=f"^<string>: .*{message}"):
        EncoderOptions.from_toml(text)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["compress", str(tmp_path / "x.png"), "--config", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ccnn: error: {path}: ") and err.count("\n") == 1


def test_missing_file_and_bad_flags(tmp_path: Path, crop_png: Path, capsys) -> None:
    assert main(["compress", str(crop_png), "--config", str(tmp_path / "none.toml"), "--quiet"]) == 1
    assert "none.toml: cannot read the settings file" in capsys.readouterr().err
    path = tmp_path / "fast.toml"
    path.write_text(preset_toml("fast"))
    # a flag that conflicts with the file is bad usage, named by the setting
    assert main(["compress", str(crop_png), "--config", str(path), "--preset", "paper", "--quiet"]) == 2
    err = capsys.readouterr().err
    conflict = "quality applies to the fast or default preset only, not to paper"
    assert err == f"ccnn: error: {path}, with the flags given: {conflict}\n"
    assert main(["compress", str(crop_png), "--config", str(path), "-q", "12", "--quiet"]) == 2
    assert capsys.readouterr().err == "ccnn: error: quality must be between 1 and 9, not 12\n"


def test_presets_lists_every_preset(capsys) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for preset in Preset:
        assert f"\n{preset.value}: " in "\n" + out
    assert "700 for a 768x512 image: 510 on crops + 190 on the whole image" in out
    assert "small at every quality" in out and "q6-9: fine" in out and "soft 0.3->0.1" in out
    assert out.count("| phase ") == len(Preset)
    assert out.startswith("| preset ") and "| 700 (510 + 190) " in out and "| by quality and image |" in out
    assert main(["presets", "--toml", "default"]) == 0
    assert capsys.readouterr().out == preset_toml("default")
    assert main(["presets", "--toml", "huge"]) == 2


def test_preset_toml_encodes_as_the_preset(tmp_path: Path, crop_png: Path, capsys) -> None:
    assert main(["presets", "--toml", "fast"]) == 0
    path = tmp_path / "fast.toml"
    path.write_text(capsys.readouterr().out)
    flags = ["--steps", "12", "--seed", "3", "--quiet"]
    by_file, by_preset = tmp_path / "file.ccnn", tmp_path / "preset.ccnn"
    assert main(["compress", str(crop_png), "-o", str(by_file), "--config", str(path), *flags]) == 0
    assert main(["compress", str(crop_png), "-o", str(by_preset), "--preset", "fast", *flags]) == 0
    assert by_file.read_bytes() == by_preset.read_bytes()
    decoded = ccnn.decompress(by_file.read_bytes())
    assert decoded.shape == (64, 96, 3) and decoded.dtype == np.uint8
