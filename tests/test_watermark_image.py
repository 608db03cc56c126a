"""The tiled spread-spectrum image watermark: round trips, the attacks it must survive, what it must not detect."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from genchain.errors import InputError
from genchain.provenance import watermark_image as wm
from genchain.provenance.keys import derive_secret, ensure_identity

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def natural_image(seed: int, size: int = 256, colour: bool = True) -> np.ndarray:
    """A smooth gradient, a few filled shapes, fine texture and sensor noise: a stand-in for a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 60 + 120 * (0.6 * x + 0.4 * y)
    canvas = np.dstack([base, base * 0.9 + 20, 200 - base * 0.5])
    for _ in range(6):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        colour_ = tuple(float(v) for v in rng.integers(0, 256, 3))
        cv2.circle(canvas, centre, int(rng.integers(2, max(3, size // 4))), colour_, -1)
    texture = cv2.GaussianBlur(rng.normal(0, 25, (size, size)), (0, 0), 1.5)[..., None]
    canvas = np.clip(canvas + texture + rng.normal(0, 2, canvas.shape), 0, 255).astype(np.uint8)
    return canvas if colour else cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)


def photo(name: str = "china.jpg", size: int = 256, top: int = 120, left: int = 200) -> np.ndarray:
    return np.ascontiguousarray(load_sample_image(name)[top : top + size, left : left + size])


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def crop_area(image: np.ndarray, keep: float, top: int, left: int) -> np.ndarray:
    """Keep ``keep`` of the area (same aspect ratio) from (top, left): a 10 % crop is keep=0.9."""
    height, width = image.shape[:2]
    side = keep**0.5
    return image[top : top + round(height * side), left : left + round(width * side)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)))


@pytest.fixture(scope="module")
def marked() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    images = {"photo": photo(), "flower": photo("flower.jpg", top=80, left=300), "synthetic": natural_image(0),
              "grey": natural_image(1, size=240, colour=False)}
    return {name: (image, wm.embed_image_watermark(image, KEY)[0]) for name, image in images.items()}


@pytest.mark.parametrize("name", ["photo", "flower", "synthetic", "grey"])
def test_round_trip_reads_the_whole_payload(marked, name):
    original, image = marked[name]
    assert image.shape == original.shape and image.dtype == np.uint8
    assert psnr(original, image) > 36  # textured crops; the benchmark reports the means
    found = wm.detect_image_watermark(image, KEY)
    assert found.detected and found.bit_accuracy == 1.0
    assert found.p_value < 1e-12
    assert found.details["scale"] == 1.0 and found.details["candidates"] == 1


def test_detection_is_json_for_the_cli(marked):
    import json

    found = wm.detect_image_watermark(jpeg(marked["photo"][1], 75), KEY)
    record = json.loads(json.dumps(found.as_dict()))
    assert record["detected"] is True and record["details"]["scheme"] == wm.SCHEME


def test_the_record_names_scheme_and_parameters():
    image, record = wm.embed_image_watermark(natural_image(2), KEY)
    assert record["scheme"] == wm.SCHEME and record["applied"] is True
    assert record["params"]["payload_bits"] == 48 and record["params"]["min_size"] == 128
    assert "reason" not in record


@pytest.mark.parametrize("name", ["photo", "flower", "synthetic"])
@pytest.mark.parametrize("attack", ["jpeg50", "crop10", "crop10+jpeg50", "noise8"])
def test_survives_jpeg_50_and_a_10_percent_crop(marked, name, attack):
    image = marked[name][1]
    attacked = {"jpeg50": lambda: jpeg(image, 50), "crop10": lambda: crop_area(image, 0.9, 7, 11),
                "crop10+jpeg50": lambda: jpeg(crop_area(image, 0.9, 13, 2), 50),
                "noise8": lambda: np.clip(image + np.random.default_rng(0).normal(0, 8, image.shape), 0, 255)
                .astype(np.uint8)}[attack]()
    found = wm.detect_image_watermark(attacked, KEY)
    assert found.detected, found
    assert found.bit_accuracy >= 0.95


def test_survives_a_downscale_decoded_as_is(marked):
    image = marked["photo"][1]
    found = wm.detect_image_watermark(resize(image, 128, 128), KEY)
    assert found.detected and found.bit_accuracy >= 0.95
    assert found.details["scale"] == pytest.approx(0.5, abs=0.005)


def test_survives_a_crop_resized_back_to_the_original_size(marked):
    image = marked["synthetic"][1]
    attacked = resize(crop_area(image, 0.9, 5, 9), 256, 256)
    found = wm.detect_image_watermark(attacked, KEY)
    assert found.detected and found.bit_accuracy >= 0.95
    assert found.details["scale"] == pytest.approx(256 / round(256 * 0.9**0.5), abs=0.015)


def test_grey_and_rgb_images_carry_the_same_mark(marked):
    grey_original, grey = marked["grey"]
    assert grey.ndim == 2
    rgb = np.dstack([grey_original] * 3)
    rgb_marked, _ = wm.embed_image_watermark(rgb, KEY)
    assert np.array_equal(rgb_marked[..., 0], grey)  # the same change on every channel: chroma stays put


def test_alpha_is_left_alone():
    rgba = np.dstack([natural_image(3), np.full((256, 256), 77, np.uint8)])
    marked, _ = wm.embed_image_watermark(rgba, KEY)
    assert np.array_equal(marked[..., 3], rgba[..., 3])
    assert wm.detect_image_watermark(marked, KEY).detected


def test_unmarked_images_and_other_keys_are_not_detected(marked):
    for image in (marked["photo"][0], marked["synthetic"][0], marked["grey"][0]):
        found = wm.detect_image_watermark(image, KEY)
        assert not found.detected and found.p_value > 1e-3
    for name in ("photo", "grey"):
        found = wm.detect_image_watermark(marked[name][1], OTHER_KEY)
        assert not found.detected and found.bit_accuracy < 0.8


def test_too_small_images_come_back_unchanged_with_the_reason():
    small = natural_image(4, size=100)
    image, record = wm.embed_image_watermark(small, KEY)
    assert image is small
    assert record["applied"] is False and record["scheme"] == wm.SCHEME
    assert record["reason"].startswith("image 100x100 is below the 128x128 minimum")
    with pytest.raises(InputError, match="too small"):
        wm.detect_image_watermark(small[:40, :40], KEY)


@pytest.mark.parametrize("bad", [np.zeros((200, 200), np.float32), np.zeros((200, 200, 2), np.uint8), [[0, 1]]])
def test_bad_images_are_refused(bad):
    with pytest.raises(InputError):
        wm.embed_image_watermark(bad, KEY)


def test_short_keys_are_refused():
    with pytest.raises(InputError, match="16 bytes"):
        wm.embed_image_watermark(natural_image(5), b"short")


def test_the_key_fixes_payload_and_pattern_for_good():
    """Stored numbers: if these change, every mark made so far becomes unreadable."""
    assert "".join(map(str, wm.payload_bits(KEY))) == "100100010100010010011011001001111011011000010101"
    tile = wm._tile(wm._carriers(KEY))
    assert np.round(tile[0, :4], 4).tolist() == [-0.5918, -0.4074, 0.4611, 1.2497]
    assert not np.array_equal(wm.payload_bits(KEY), wm.payload_bits(OTHER_KEY))


def test_the_key_comes_from_the_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCHAIN_HOME", str(tmp_path))
    alice, _ = ensure_identity("alice")
    bob, _ = ensure_identity("bob")
    key = wm.image_watermark_key(alice)
    assert key == derive_secret(alice, "watermark/image/v1") and len(key) == 32
    assert key != wm.image_watermark_key(bob)


# ------------------------------------------------------------------------------------------------ files
def test_png_file_is_marked_in_place_keeping_its_text(tmp_path):
    from PIL import PngImagePlugin

    path = tmp_path / "sample.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("genchain", "seed 7")
    Image.fromarray(natural_image(6, colour=False)).save(path, pnginfo=info)
    record = wm.watermark_png_file(path, KEY)
    assert record["applied"] is True and record["scheme"] == wm.SCHEME
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "L" and image.text == {"genchain": "seed 7"}
        assert wm.detect_image_watermark(np.asarray(image), KEY).bit_accuracy == 1.0
    assert not list(tmp_path.glob(".*tmp"))


def test_jpeg_file_keeps_its_tables_and_its_mark(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo()).save(path, quality=80)
    with Image.open(path) as image:
        tables = image.quantization
    wm.watermark_png_file(path, KEY)
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.quantization == tables
        assert wm.detect_image_watermark(np.asarray(image), KEY).detected


def test_webp_and_rgba_png_files(tmp_path):
    webp = tmp_path / "a.webp"
    Image.fromarray(natural_image(7)).save(webp, lossless=True)
    assert wm.watermark_png_file(webp, KEY)["applied"]
    with Image.open(webp) as image:
        assert image.format == "WEBP" and wm.detect_image_watermark(np.asarray(image), KEY).bit_accuracy == 1.0
    rgba = tmp_path / "a.png"
    pixels = np.dstack([natural_image(8), np.full((256, 256), 200, np.uint8)])
    Image.fromarray(pixels).save(rgba)
    wm.watermark_png_file(rgba, KEY)
    with Image.open(rgba) as image:
        assert image.mode == "RGBA" and np.array_equal(np.asarray(image)[..., 3], pixels[..., 3])


def test_files_that_cannot_carry_a_mark_are_left_untouched(tmp_path):
    small = tmp_path / "mnist.png"
    Image.fromarray(natural_image(9, size=28, colour=False)).save(small)
    gif = tmp_path / "walk.gif"
    frames = [Image.fromarray(natural_image(i, size=128)) for i in range(2)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    for path, reason in ((small, "below the 128x128 minimum"), (gif, "GIF")):
        before = path.read_bytes()
        record = wm.watermark_png_file(path, KEY)
        assert record["applied"] is False and reason in record["reason"]
        assert path.read_bytes() == before


def test_missing_and_unreadable_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        wm.watermark_png_file(tmp_path / "nope.png", KEY)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable image"):
        wm.watermark_png_file(junk, KEY)
