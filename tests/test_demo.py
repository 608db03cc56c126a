"""The image half of `genchain demo` (the text half runs in CI through `make demo`'s library calls in other tests)."""

from __future__ import annotations

from PIL import Image

from genchain import demo
from genchain.data.sources import SourceStatus
from genchain.provenance.verify import verify_artefact


def test_image_demo_writes_a_grid_from_digits(tmp_path, monkeypatch):
    def only_digits() -> list[SourceStatus]:
        return [SourceStatus(name="digits", modality="image", description="", licence="", present=True,
                             missing=None, install=None)]

    monkeypatch.setattr(demo, "list_sources", only_digits)
    demo.run_image_demo(tmp_path, seconds=2)
    path = next((tmp_path / "images").glob("*.png"))
    grid = Image.open(path)
    assert grid.size[0] >= 8 * 16 and (tmp_path / "gan" / "model.safetensors").is_file()
    report = verify_artefact(path)  # signed, logged and C2PA-embedded like `genchain generate image` output
    assert report.ok, report.render()
    assert path.with_name(path.name + ".manifest.json").is_file()
    walk = tmp_path / "walk.gif"  # the latent walk through the same GAN, signed as a video
    assert Image.open(walk).n_frames == 48 and walk.with_name("walk.gif.json").is_file()
    assert verify_artefact(walk).ok


def test_music_demo_writes_a_signed_phrase(tmp_path):
    demo.run_music_demo(tmp_path, seconds=2, max_pieces=4)
    wav = tmp_path / "music.wav"
    written = [wav, tmp_path / "music.mid"] if wav.is_file() else [tmp_path / "music.mid"]  # WAV needs fluidsynth
    for path in written:
        assert path.stat().st_size > 0 and verify_artefact(path).ok
