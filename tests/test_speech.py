"""Speech: the log-mel frontend and its inverse, the word VAE recipe, `generate speech`, and the judge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from genchain.cli import main
from genchain.data.audio_features import (
    FeatureConfig,
    clip_features,
    features_to_wave,
    griffin_lim,
    hz_to_mel,
    mel_centres,
    mel_filterbank,
    mel_to_hz,
    mel_to_linear,
    spectral_convergence,
    stft,
    unit_to_power,
)
from genchain.data.sources import ASTERISK_SOUNDS_DIR
from genchain.errors import InputError
from genchain.eval.speech import accuracy, predict, train_classifier
from genchain.generate.speech import parse_words
from genchain.models.registry import create_model, list_models

CFG = FeatureConfig()
FAST = ["model=speech-vae-tiny", "max_iters=6", "eval_interval=3", "log_interval=3", "batch_size=8",
        "tensorboard=false", "kl_warmup_iters=0"]
TONES = {"low": 300.0, "mid": 900.0, "high": 2500.0}


def tone(freq: float, seconds: float = 0.5, rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(wave: np.ndarray, rate: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(wave)))) * rate / len(wave)


@pytest.fixture(scope="module")
def tone_words(tmp_path_factory) -> Path:
    """RAW_DIR/<word>/*.wav: three "words" that are tones, 8 clips each of varied length, level and pitch."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for word, freq in TONES.items():
        (root / word).mkdir()
        for i in range(8):
            clip = tone(freq * rng.uniform(0.97, 1.03), rng.uniform(0.3, 0.7), 22050, rng.uniform(0.2, 0.9))
            sf.write(root / word / f"{i}.wav", np.concatenate([np.zeros(2000, np.float32), clip]), 22050)
    return root


# ---------------------------------------------------------------------------------------------- frontend
def test_slaney_mel_scale_known_points():
    assert float(hz_to_mel(torch.tensor(1000.0))) == pytest.approx(15.0)  # end of the linear part
    assert float(hz_to_mel(torch.tensor(6400.0))) == pytest.approx(42.0)  # 27 log steps of 6.4x above 1 kHz
    assert float(hz_to_mel(torch.tensor(200.0))) == pytest.approx(3.0)
    hz = torch.tensor([0.0, 440.0, 1000.0, 3000.0, 8000.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(hz)), hz)


def test_filters_have_unit_area_and_a_tone_lands_in_the_nearest_filter():
    fb = mel_filterbank(CFG)
    assert fb.shape == (64, 513)
    hz_per_bin = CFG.sample_rate / CFG.n_fft
    areas = fb.sum(1) * hz_per_bin
    assert torch.allclose(areas[8:], torch.ones(56), atol=0.02)  # wide filters integrate to 1 (slaney norm)
    centres = mel_centres(CFG)
    for freq in (440.0, 1000.0, 3000.0):
        features = clip_features(tone(freq), 16000, CFG)
        assert features.shape == (64, 64)
        assert float(features.max()) == pytest.approx(1.0) and float(features.min()) >= -1.0
        assert int(features[:, 10:30].mean(1).argmax()) == int((centres - freq).abs().argmin())


def test_clip_is_trimmed_and_starts_after_the_lead():
    quiet = np.concatenate([np.zeros(8000, np.float32), tone(1000.0, 0.3)])
    features = clip_features(quiet, 16000, CFG)
    loud_frames = (features.max(0).values > 0).nonzero().flatten()
    assert int(loud_frames[0]) in (CFG.lead_frames - 1, CFG.lead_frames, CFG.lead_frames + 1)
    with pytest.raises(InputError, match="silent"):
        clip_features(np.zeros(1000, np.float32), 16000, CFG)


def _voice_like() -> tuple[np.ndarray, int]:
    """A real recording when asterisk-core-sounds is installed, else a gliding harmonic 'vowel'."""
    path = ASTERISK_SOUNDS_DIR / "digits" / "7.wav"
    if path.is_file():
        samples, rate = sf.read(path, dtype="float32")
        return samples, rate
    t = np.arange(12000) / 16000
    f0 = 140 + 40 * t
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    return sum(np.sin(k * phase) / k for k in range(1, 20)).astype(np.float32) * np.hanning(len(t)), 16000


def test_fast_griffin_lim_recovers_a_consistent_phase():
    from genchain.data.audio_features import fit_clip

    samples, rate = _voice_like()
    magnitude = stft(torch.from_numpy(fit_clip(samples, rate, CFG)), CFG).abs()
    sc = [spectral_convergence(magnitude, stft(griffin_lim(magnitude, CFG, iters=n), CFG).abs()) for n in (1, 64)]
    assert sc[1] < 0.1 < sc[0]


def test_mel_inverse_is_non_negative_and_matches_the_mel_power():
    power = stft(torch.from_numpy(tone(700.0, 1.0)[: CFG.samples]), CFG).abs().pow(2)
    mel = mel_filterbank(CFG) @ power
    linear = mel_to_linear(mel, CFG)
    assert float(linear.min()) >= 0.0
    assert spectral_convergence(mel, mel_filterbank(CFG) @ linear) < 0.05
    assert torch.allclose(unit_to_power(torch.ones(2, 2), CFG), torch.ones(2, 2))


def test_round_trip_of_a_sine_keeps_its_pitch():
    centres = mel_centres(CFG)
    spacing = float(centres[10] - centres[9])  # filter spacing in the linear (< 1 kHz) part, ~46 Hz
    for freq in (440.0, 660.0):
        wave = features_to_wave(clip_features(tone(freq), 16000, CFG), CFG, iters=32).numpy()
        assert abs(dominant_hz(wave, 16000) - freq) < spacing
        assert float(np.abs(wave).max()) == pytest.approx(0.9, abs=1e-4)


# ------------------------------------------------------------------------------------------------- words
def test_words_map_to_labels_as_numerals_or_words():
    digits = [str(d) for d in range(10)]
    assert parse_words("3 seven, 1", digits) == [3, 7, 1]
    assert parse_words("371", digits) == [3, 7, 1]
    assert parse_words("One TWO oh", ["one", "three", "two", "zero"]) == [0, 2, 3]
    assert parse_words("2", ["one", "three", "two"]) == [2]
    with pytest.raises(InputError, match="not in this run's vocabulary.*0, 1, 2"):
        parse_words("3 eleven", digits)
    with pytest.raises(InputError, match="empty"):
        parse_words(" , ", digits)


# --------------------------------------------------------------------------------------------- the judge
def test_accuracy_known_answer():
    report = accuracy(torch.tensor([0, 1, 1, 2, 0]), torch.tensor([0, 1, 2, 2, 1]), ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["per_label"] == {"a": 1.0, "b": 0.5, "c": 0.5}


@pytest.mark.slow
def test_classifier_separates_tones():
    rng = np.random.default_rng(1)

    small = FeatureConfig(n_fft=512, hop=256, n_mels=32, frames=32)  # the judge takes any size; this is quick

    def clips(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        feats, labels = [], []
        for label, freq in enumerate(TONES.values()):
            for _ in range(n):
                wave = tone(freq * rng.uniform(0.95, 1.05), rng.uniform(0.2, 0.5))
                wave += rng.normal(0, 0.05, len(wave)).astype(np.float32)
                feats.append(clip_features(wave, 16000, small)[None])
                labels.append(label)
        return torch.stack(feats), torch.tensor(labels)

    (x, y), (x_test, y_test) = clips(10), clips(6)
    model = train_classifier(x, y, 3, epochs=20, batch_size=8, progress=False)
    assert accuracy(predict(model, x_test), y_test, list(TONES))["accuracy"] >= 0.9


# ----------------------------------------------------------------------------------------- commands
@pytest.mark.slow
def test_train_generate_evaluate_on_tone_words(tone_words, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "speech", "--data", str(tone_words), "--out", str(run), *FAST]) == 0
    card = json.loads((run / "card.json").read_text())
    assert card["family"] == "speech" and card["label_names"] == ["high", "low", "mid"]
    assert card["data"]["train_clips"] + card["data"]["eval_clips"] == 24
    assert (run / "model.safetensors").is_file() and list((run / "samples").glob("samples_*.png"))

    out = tmp_path / "said.wav"
    assert main(["generate", "speech", "--run", str(run), "--say", "low high mid", "--gap-ms", "100",
                 "--griffin-lim-iters", "8", "-o", str(out)]) == 0
    samples, rate = sf.read(out)
    assert rate == 16000
    # three words of at most ~1 s each, and four 100 ms gaps
    assert 0.4 <= len(samples) / rate <= 3 * CFG.samples / rate + 0.4 + 1e-3
    assert np.abs(samples[:1500]).max() == 0.0  # the leading gap is silence
    sidecar = json.loads(out.with_name("said.wav.json").read_text())
    assert sidecar["words"] == ["low", "high", "mid"] and sidecar["seed"] == 0 and sidecar["run"] == str(run)
    assert out.with_name("said.wav.manifest.json").is_file()  # signed, and entered in the ledger

    assert main(["generate", "speech", "--run", str(run), "--say", "low banana", "-o", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err
    assert "'banana' is not in this run's vocabulary" in err and "high, low, mid" in err
    assert not (tmp_path / "x.wav").exists()

    assert main(["eval", "speech", "--run", str(run), "--per-label", "2", "--griffin-lim-iters", "4",
                 "-o", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("held_out", "held_out_griffin_lim", "generated", "baseline_class_mean", "baseline_noise"):
        assert 0.0 <= report[key]["accuracy"] <= 1.0
    assert report["generated"]["clips"] == 6 and report["chance"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["held_out"]["accuracy"] >= 2 / 3  # tones are easy: the judge hears them
    assert (run / "eval" / "classifier.safetensors").is_file()

    assert main(["train", "speech", "--data", str(tone_words), "--out", str(run), "--resume", "max_iters=8"]) == 0
    assert main(["train", "speech", "--data", str(tone_words), "--out", str(run), *FAST]) == 2  # holds a run


def test_bad_inputs_exit_2(tone_words, tmp_path, capsys):
    assert main(["train", "speech", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "neither a built-in source" in capsys.readouterr().err
    one = tmp_path / "one"
    shutil.copytree(tone_words / "low", one / "low")
    assert main(["train", "speech", "--data", str(one), "--out", str(tmp_path / "r"), *FAST]) == 2
    assert "single label" in capsys.readouterr().err
    assert main(["generate", "speech", "--run", str(tmp_path / "nope"), "--say", "1", "-o",
                 str(tmp_path / "o.wav")]) == 2
    assert main(["train", "speech", "--data", str(tone_words), "--out", str(tmp_path / "r"),
                 "model=vae-tiny"]) == 2
    assert "speech" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")
def test_speech_digits_and_real_recordings_train_together(tmp_path):
    real = ASTERISK_SOUNDS_DIR.is_dir()
    data = "speech-digits,speech-real" if real else "speech-digits"
    run = tmp_path / "run"
    assert main(["train", "speech", "--data", data, "--out", str(run), *FAST, "clips_per_digit=4",
                 "real_copies=2"]) == 0
    card = json.loads((run / "card.json").read_text())
    assert card["label_names"] == [str(d) for d in range(10)]
    assert card["data"]["train_clips"] + card["data"]["eval_clips"] == 40 + (20 if real else 0)
    assert any("espeak-ng" in origin for origin in card["data"]["origins"])
    out = tmp_path / "123.wav"
    assert main(["generate", "speech", "--run", str(run), "--say", "1 two 3", "--no-sign", "-o", str(out)]) == 0
    assert sf.info(out).samplerate == 16000 and not out.with_name("123.wav.manifest.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (ASTERISK_SOUNDS_DIR / "digits").is_dir(), reason="needs Debian asterisk-core-sounds-en-wav")
def test_real_digits_alone_hold_out_copies_with_a_warning():
    from genchain.train.speech_data import build_features

    with pytest.warns(UserWarning, match="fewer than 5 recordings"):
        data = build_features("speech-real", CFG, holdout=0.2, clips_per_digit=1, real_copies=5)
    assert data.label_names == [str(d) for d in range(10)]
    assert len(data.eval_ids) == 10 and len(data.train_ids) == 40
    assert sorted(data.eval_labels.tolist()) == list(range(10))


@pytest.mark.parametrize("name", [e.name for e in list_models("speech") if e.name.endswith("-tiny")])
def test_every_tiny_speech_variant_trains_saves_and_loads(name, tmp_path):
    from safetensors.torch import load_file, save_file

    model = create_model(name, num_classes=3)
    x = torch.rand(4, 1, 64, 64) * 2 - 1
    y = torch.tensor([0, 1, 2, 0])
    out = model(x, y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                            if p.grad is not None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    again = create_model(name, num_classes=3)
    again.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    z = torch.randn(4, model.config.latent_dim)
    assert torch.equal(model.eval().decode(z, y), again.eval().decode(z, y))
