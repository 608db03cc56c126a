"""Exact and near deduplication on real text and real photographs (scikit-learn's sample images)."""

from __future__ import annotations

import io
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from genchain.data.dedup import (
    ExactDeduplicator,
    MinHasher,
    NearDedupConfig,
    estimated_jaccard,
    find_image_near_duplicates,
    find_near_duplicates,
    image_phash,
    normalize_for_hash,
    shingles,
    text_key,
)
from genchain.errors import InputError

BASE = ("the harbour master walked along the quay at dawn counting the fishing boats that had come back "
        "overnight and writing their names in a small blue notebook before the market opened")
OTHER = ("a committee of engineers met on tuesday to review the bridge design and agreed that the steel "
         "girders needed another inspection after the winter storms had passed through the valley")
THIRD = ("our grandmother kept bees behind the orchard and every august she sold jars of dark honey from a "
         "wooden table by the road to travellers heading north toward the lakes")


def words_jaccard(a: str, b: str) -> float:
    sa, sb = set(normalize_for_hash(a).split()), set(normalize_for_hash(b).split())
    return len(sa & sb) / len(sa | sb)


def edit_words(text: str, fraction: float, seed: int) -> str:
    """Substitute ``fraction`` of the words with new ones, at random positions."""
    rng = random.Random(seed)
    words = text.split()
    for position in rng.sample(range(len(words)), round(fraction * len(words))):
        words[position] = f"edit{rng.randrange(10**6)}"
    return " ".join(words)


def test_text_key_invariances():
    key = text_key("Hello,   World!")
    assert len(key) == 16
    assert text_key("hello world") == key
    assert text_key("HELLO\tworld\n") == key
    assert text_key("Ｈｅｌｌｏ　Ｗｏｒｌｄ") == key  # full-width forms fold under NFKC
    assert text_key("hello there world") != key
    assert normalize_for_hash("Straße — don't  stop") == "strasse don t stop"


def test_exact_deduplicator_keeps_first_only():
    dedup = ExactDeduplicator()
    keys = [text_key(t) for t in ["a b", "A, B!", "c", "a  b", "c."]]
    assert [dedup.is_new(k) for k in keys] == [True, False, True, False, False]


def test_edited_copy_found_and_unrelated_kept():
    edited = edit_words(BASE, 0.05, seed=1)
    flags = find_near_duplicates([BASE, OTHER, edited, THIRD], progress=False)
    assert flags.tolist() == [False, False, True, False]


def test_keep_first_of_each_cluster():
    copy = BASE.upper() + "!!"
    flags = find_near_duplicates([OTHER, copy, BASE, edit_words(OTHER, 0.03, 2)], progress=False)
    assert flags.tolist() == [False, False, True, True]


def test_cluster_chains_drop_the_whole_chain():
    """A~B and B~C put C in A's cluster even though C is below the threshold to A: documented behaviour."""
    rng = random.Random(3)
    a = [f"w{i}" for i in range(60)]
    b = a[:54] + [f"x{i}" for i in range(6)]  # J(a, b) = 54 / 66 = 0.82
    c = b[6:] + [f"y{i}" for i in range(6)]  # J(b, c) = 54 / 66, J(a, c) = 48 / 72 = 0.67
    texts = [" ".join(rng.sample(t, len(t))) for t in (a, b, c)]
    assert words_jaccard(texts[0], texts[2]) < 0.7
    config = NearDedupConfig(threshold=0.75)
    assert find_near_duplicates(texts, config, progress=False).tolist() == [False, True, True]
    assert find_near_duplicates([texts[0], texts[2]], config, progress=False).tolist() == [False, False]


def test_empty_and_punctuation_only_texts_are_never_near_duplicates():
    flags = find_near_duplicates(["", "...", BASE, "", "!!", BASE], progress=False)
    assert flags.tolist() == [False, False, False, False, False, True]
    assert find_near_duplicates([], progress=False).shape == (0,)


def test_cjk_is_shingled_by_character():
    poem = "床前明月光疑是地上霜举头望明月低头思故乡春眠不觉晓处处闻啼鸟夜来风雨声花落知多少"
    edited = poem[:20] + "雪" + poem[21:]
    other = "白日依山尽黄河入海流欲穷千里目更上一层楼红豆生南国春来发几枝愿君多采撷此物最相思"
    flags = find_near_duplicates([poem, other, edited], progress=False)
    assert flags.tolist() == [False, False, True]


def test_deterministic_across_processes():
    """Signatures must not depend on Python's per-process hash salt: a later distributed run reproduces them."""
    code = ("from genchain.data.dedup import MinHasher, NearDedupConfig; import hashlib; "
            f"print(hashlib.sha256(MinHasher(NearDedupConfig()).signatures([{BASE!r}, '春眠不觉晓']).tobytes())"
            ".hexdigest())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(runs) == 1
    here = MinHasher(NearDedupConfig()).signatures([BASE, "春眠不觉晓"])
    import hashlib

    assert runs == {hashlib.sha256(here.tobytes()).hexdigest() + "\n"}


def test_token_hash_reads_every_byte_of_long_words():
    """Tokens are hashed 8 bytes at a time: words that differ only past byte 8 or 16 must still differ."""
    words = ["internationalization", "internationalisation", "internationalizatio", "abcdefgh", "abcdefghi",
             "abcdefgh", "ünïcödé"]
    hashes, counts = MinHasher(NearDedupConfig()).shingles([" ".join(words), ""])
    assert counts.tolist() == [7, 0]
    assert len(set(hashes.tolist())) == 6 and hashes[3] == hashes[5]


def test_word_order_matters_only_with_longer_shingles():
    shuffled = " ".join(random.Random(6).sample(BASE.split(), len(BASE.split())))
    edited = edit_words(BASE, 0.03, seed=7)
    assert find_near_duplicates([BASE, shuffled], progress=False).tolist() == [False, True]
    trigrams = NearDedupConfig(ngram=3, threshold=0.7)
    assert find_near_duplicates([BASE, shuffled, edited], trigrams, progress=False).tolist() == [False, False, True]
    assert shingles("One two, THREE", ngram=2) == {"one two", "two three"}
    assert shingles("one", ngram=3) == {"one"}


def test_jaccard_estimate_is_close_to_true_jaccard():
    hasher = MinHasher(NearDedupConfig(num_perm=256))
    rng = random.Random(4)
    errors = []
    for shared in (10, 30, 50, 70, 90):
        a = [f"s{i}" for i in range(shared)] + [f"a{rng.random()}" for _ in range(100 - shared)]
        b = [f"s{i}" for i in range(shared)] + [f"b{rng.random()}" for _ in range(100 - shared)]
        sig = hasher.signatures([" ".join(a), " ".join(b)])
        errors.append(abs(estimated_jaccard(sig[0], sig[1]) - shared / (200 - shared)))
    assert max(errors) < 0.1  # 3.3 standard errors at J = 0.5 with 256 permutations
    assert np.mean(errors) < 0.04


def test_workdir_batches_and_workers_give_the_same_answer(tmp_path, monkeypatch):
    """The memory-bounded path: several batches written to files in the work directory, then cleaned up."""
    import genchain.data.dedup as dedup

    monkeypatch.setattr(dedup, "BATCH_DOCS", 7)
    rng = random.Random(5)
    originals = [[f"t{i}w{k}" for k in range(60)] for i in range(40)]
    texts = [" ".join(words) for words in originals]
    copies = set()
    for i in range(0, 40, 2):  # a copy of every other text with 2 of its 60 words replaced (Jaccard 0.94)
        copy = list(originals[i])
        copy[rng.randrange(60)], copy[rng.randrange(60)] = "new", "words"
        copies.add(" ".join(copy))
        texts.insert(rng.randrange(texts.index(" ".join(originals[i])) + 1, len(texts) + 1), " ".join(copy))
    flags_one = find_near_duplicates(texts, workdir=tmp_path / "work", progress=False)
    flags_two = find_near_duplicates(iter(texts), workdir=tmp_path / "work", progress=False, workers=2)
    assert flags_one.tolist() == [text in copies for text in texts]
    assert np.array_equal(flags_one, flags_two)
    assert list((tmp_path / "work").iterdir()) == []


def test_bad_config_is_refused():
    with pytest.raises(InputError, match="threshold"):
        NearDedupConfig(threshold=1.5)


def photo(index: int) -> Image.Image:
    return Image.fromarray(load_sample_images().images[index])


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_image_phash_survives_reencoding_and_resizing_but_not_crops():
    china, flower = photo(0), photo(1)
    original = image_phash(encoded(china))
    jpeg = image_phash(encoded(china, "JPEG", quality=60))
    resized = image_phash(encoded(china.resize((320, 213))))
    noisy = np.clip(np.asarray(china, np.int16) + np.random.default_rng(0).integers(-8, 9, (427, 640, 3)), 0, 255)
    noise = image_phash(encoded(Image.fromarray(noisy.astype(np.uint8))))
    cropped = image_phash(encoded(china.crop((100, 80, 540, 400))))  # pHash is not crop-invariant
    other = image_phash(encoded(flower))
    hashes = [original, other, jpeg, resized, noise, cropped]
    assert 0 <= original < 2**64
    assert find_image_near_duplicates(hashes, max_distance=4).tolist() == [False, False, True, True, True, False]
    assert find_image_near_duplicates([original, original]).tolist() == [False, True]


def test_image_phash_rejects_undecodable_bytes():
    with pytest.raises(InputError):
        image_phash(b"\x89PNG\r\n\x1a\n not really a png")


@pytest.mark.parametrize("max_distance", [0, 3, 8])
def test_multi_index_search_equals_brute_force(max_distance):
    rng = np.random.default_rng(max_distance)
    base = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    flips = rng.integers(0, 64, (300, 6))
    near = base.copy()
    for k in range(6):  # hashes at up to 6 bits from a base one, duplicates included
        chosen = rng.random(300) < 0.6
        near[chosen] ^= np.left_shift(np.uint64(1), flips[chosen, k].astype(np.uint64))
    hashes = np.concatenate([base, near[:200], base[:20]])[rng.permutation(520)]
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    brute = np.array([(distance[j, :j] <= max_distance).any() for j in range(hashes.size)])
    assert np.array_equal(find_image_near_duplicates([int(h) for h in hashes], max_distance), brute)
    assert brute.sum() > 20
