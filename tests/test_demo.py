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
