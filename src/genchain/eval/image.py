"""Image-generator metrics: FID, KID and precision/recall on features of a network, and ``evaluate_run``.

* FID -- Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium": the Frechet distance between Gaussians fitted to the two feature sets,
  ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, computed as pytorch-fid does.
* KID -- Binkowski et al. 2018, "Demystifying MMD GANs": the unbiased estimate of the squared MMD with the
  kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (mean and standard deviation). Unlike FID
  it is unbiased, so small sample sizes do not inflate it.
* Precision/recall -- Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative
  Models": a sample is inside a set's manifold when it lies within the distance from some member of the set to
  that member's k-th nearest neighbour (k = 3). Precision: fraction of generated samples inside the real
  manifold (fidelity); recall: fraction of real samples inside the generated manifold (coverage).

Features come from :mod:`genchain.eval.features` (a classifier trained on the dataset's labels) or, given a
weight file, from the FID Inception-v3 of :mod:`genchain.eval.inception`. FID depends on the feature network and
on the number of samples, so a report states both and adds a floor: the FID between two real splits.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg
from tqdm.auto import tqdm

from genchain import rundir
from genchain.errors import InputError, RunDirError
from genchain.eval.features import (
    FeatureNetwork,
    dataset_content_hash,
    extract_features,
    feature_network_for,
)
from genchain.eval.inception import FID_FEATURE_DIM, load_fid_inception
from genchain.fileio import SCHEMA_VERSION, atomic_write_json, sha256_file
from genchain.runtime import select_device
from genchain.train.image_data import load_images, open_image_dataset, to_uint8

EVAL_DIR = "eval"
REPORT = "report.json"
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3


# ------------------------------------------------------------------------------------------------------- FID
def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of (N, d) features, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise InputError("FID needs at least two images per set")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), with pytorch-fid's numerical safeguards.

    ``sqrtm(S1 S2)`` of near-singular covariances (fewer samples than dimensions, dead ReLU features) can come
    back non-finite; then ``eps`` is added to both diagonals. Rounding gives the square root a tiny imaginary
    part, which is dropped; a large one means the result is meaningless, and raises.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on singular input; handled below as pytorch-fid does
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two (N, d) feature sets."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


# ------------------------------------------------------------------------------------------------------- KID
def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    k = x @ y.T / x.shape[1] + 1.0
    return k * k * k  # (len(x), len(y)); a product is much faster than numpy's float power


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel: diagonal terms k(x_i, x_i) are left out of the
    within-set means, which is what makes the estimate unbiased (and able to go slightly negative)."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD^2 over ``num_subsets`` random subsets of each set
    (drawn without replacement within a subset), of ``min(subset_size, len(real), len(fake))`` samples each."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise InputError("KID needs at least two images per set")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                            fake[rng.choice(len(fake), size, replace=False)]) for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))


# ------------------------------------------------------------------------------------------ precision/recall
def _pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (len(a), len(b)) via |a|^2 + |b|^2 - 2 a.b, clamped at 0 against rounding."""
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return sq.clamp_min_(0).sqrt_()


def knn_radii(features: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each sample to its k-th nearest other sample (self, at distance 0, excluded)."""
    radii = []
    for start in range(0, len(features), batch_size):
        d = _pairwise_distances(features[start : start + batch_size], features)  # (B, N)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # k + 1: the smallest is the sample itself
    return torch.cat(radii)


def manifold_coverage(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, batch_size: int) -> float:
    """Fraction of ``queries`` within ``radii[i]`` of some ``manifold[i]``."""
    inside = 0
    for start in range(0, len(queries), batch_size):
        d = _pairwise_distances(queries[start : start + batch_size], manifold)  # (B, M)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / len(queries)


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = PR_NEIGHBOURS,
                     batch_size: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), distances computed in float64 batches."""
    real_t, fake_t = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    if min(len(real_t), len(fake_t)) <= k:
        raise InputError(f"precision/recall with k={k} needs more than {k} images per set")
    real_radii = knn_radii(real_t, k, batch_size)
    fake_radii = knn_radii(fake_t, k, batch_size)
    precision = manifold_coverage(real_t, real_radii, fake_t, batch_size)
    recall = manifold_coverage(fake_t, fake_radii, real_t, batch_size)
    return precision, recall


def compare_features(real: np.ndarray, fake: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """FID, KID (mean, std) and precision/recall of ``fake`` against ``real``."""
    kid_mean, kid_std = kernel_inception_distance(real, fake, seed=seed)
    precision, recall = precision_recall(real, fake)
    return {"fid": round(fid_from_features(real, fake), 4), "kid": round(kid_mean, 6), "kid_std": round(kid_std, 6),
            "precision": round(precision, 4), "recall": round(recall, 4)}


# ------------------------------------------------------------------------------------------------ evaluation
def inception_network(path: str | Path, device: torch.device) -> FeatureNetwork:
    model = load_fid_inception(path).to(device)
    info = {"kind": "inception", "description": "FID Inception-v3 (pt_inception-2015-12-05) 2048-d pool features",
            "weights": str(Path(path).resolve()), "weights_sha256": sha256_file(path), "test_accuracy": None}
    return FeatureNetwork(model, "inception", FID_FEATURE_DIM, info)


@torch.inference_mode()
def generate_uint8(generator: Any, num: int, seed: int, batch_size: int = 250) -> torch.Tensor:
    """``num`` images from an image generator as uint8 (N, C, H, W); class-balanced labels when conditional.

    Generated images go through uint8 like the real ones do, so both sets are quantised the same way.
    """
    rng = torch.Generator().manual_seed(seed)
    labels = None
    if generator.num_classes:
        labels = (torch.arange(num) % generator.num_classes)[torch.randperm(num, generator=rng)]
    out = []
    for start in tqdm(range(0, num, batch_size), desc="generate", unit="batch", leave=False,
                      disable=None if num > 4 * batch_size else True):
        n = min(batch_size, num - start)
        z = generator.sample_latents(n, rng)
        batch_labels = None if labels is None else labels[start : start + n]
        out.append(to_uint8(generator.decode(z, batch_labels)).cpu())
    return torch.cat(out)


def _reference_dir(card: dict[str, Any], reference: str | Path | None, run: Path) -> Path:
    if reference is not None:
        return Path(reference)
    data = card.get("data") or {}
    path = data.get("dir") if isinstance(data, dict) else None
    if not path:
        raise InputError(f"{run}/card.json does not record its dataset; pass --reference DATASET_DIR")
    if not Path(path).exists():
        raise InputError(f"the run's dataset {path} is gone; pass --reference DATASET_DIR")
    return Path(path)


def _floor_split(dataset_splits: list[str], split: str) -> str | None:
    """The real split compared with ``split`` for the floor: train, or (when evaluating on train) test/val."""
    for other in ("train", "test", "validation", "val"):
        if other != split and other in dataset_splits:
            return other
    return None


def _iw_nll(run: Path, generator: Any, reference: Path, split: str, k: int, seed: int) -> dict[str, Any]:
    """The VAE's importance-weighted NLL bound on ``split`` of ``reference`` (Burda et al. 2016)."""
    from genchain.train.vae import importance_weighted_nll

    model = getattr(generator, "model", None)
    if model is None:
        raise RunDirError(f"the VAE generator of {run} does not expose its model; cannot compute the NLL bound")
    data = load_images(reference, split, size=generator.image_size)
    torch.manual_seed(seed)
    result = importance_weighted_nll(model, data.images, data.labels if generator.num_classes else None, k=k)
    out = result if isinstance(result, dict) else {"nll_nats": float(result)}
    return {"split": split, "k": k, "rows": len(data), **{key: _plain(v) for key, v in out.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return float(value) if isinstance(value, np.floating) else value


def evaluate_run(run: str | Path, *, num: int = 10000, reference: str | Path | None = None, split: str | None = None,
                 inception: str | Path | None = None, iw_samples: int = 100, seed: int = 0) -> dict[str, Any]:
    """Measure a GAN or VAE run against real images; the report is returned and written to RUN_DIR/eval/.

    Steps: load the run's generator; generate ``num`` images (seeded; balanced classes when conditional); load
    the reference ``split`` (default: test, else validation, else train — a folder of the user's often has
    no held-out split, and the report then says the comparison is with training images) at the generator's
    image size; features from the FID Inception-v3 (``inception``)
    or else from the dataset's feature classifier (trained once and kept in RUN_DIR/eval/); FID, KID and
    precision/recall; the floor (FID between the reference split and as many images of another real split);
    and for a VAE the importance-weighted NLL bound with ``iw_samples`` samples per image.
    """
    from genchain.generate.image import load_image_generator

    started = time.time()
    run = Path(run)
    card = rundir.read_card(run)
    if card.get("family") not in ("gan", "vae"):
        raise RunDirError(f"{run} holds a {card.get('family', '?')!r} model; `eval image` measures GAN and VAE runs")
    if num < 2:
        raise InputError(f"--num must be at least 2 (got {num}); FID needs a sample of images")
    reference_dir = _reference_dir(card, reference, run)
    dataset = open_image_dataset(reference_dir)
    if split is None:
        split = next(s for s in ("test", "validation", "train", *dataset.splits) if s in dataset.splits)
    if split not in dataset.splits:
        raise InputError(f"{reference_dir} has no split {split!r}; it has {', '.join(dataset.splits)}")
    generator = load_image_generator(run)
    device = select_device("auto")

    # 1. real images at the generator's size, and the feature network
    real = load_images(reference_dir, split, size=generator.image_size)
    if real.channels != generator.channels:
        raise InputError(f"{reference_dir} has {real.channels}-channel images, the generator makes "
                         f"{generator.channels}-channel ones; pass the dataset the run was trained on")
    if inception is not None:
        network = inception_network(inception, device)
    else:
        network = feature_network_for(reference_dir, run / EVAL_DIR, channels=generator.channels,
                                      image_size=generator.image_size, device=device)

    # 2. generated images and the metrics
    fake = generate_uint8(generator, num, seed)
    real_features = extract_features(network, real.images, desc=f"features {split}")
    fake_features = extract_features(network, fake, desc="features generated")
    metrics = compare_features(real_features, fake_features, seed=seed)

    # 3. the floor: two real samples of the same size, so the generator's number has context
    floor: dict[str, Any] | None = None
    other = _floor_split(dataset.splits, split)
    if other is not None:
        # a seeded random subset: rows are stored in ingestion order, often grouped by class
        other_images = load_images(reference_dir, other, size=generator.image_size).images
        pick = torch.randperm(len(other_images), generator=torch.Generator().manual_seed(seed))[: len(real)]
        other_features = extract_features(network, other_images[pick], desc=f"features {other}")
        floor = {"fid": round(fid_from_features(real_features, other_features), 4),
                 "splits": [split, other], "num": [len(real), len(pick)]}

    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": str(run.resolve()),
        "family": card.get("family"),
        "model": card.get("model"),
        "features": {k: v for k, v in network.info.items() if k not in ("label_names", "config")},
        "feature_dim": network.dim,
        "num_generated": num,
        "seed": seed,
        "reference": {"dir": str(reference_dir.resolve()), "split": split, "num": len(real),
                      "content_sha256": dataset_content_hash(reference_dir)},
        **metrics,
        "floor": floor,
    }
    if split == "train":
        report["note"] = ("the reference has no held-out split: generated images are compared with the training "
                          "images, which cannot reveal memorisation; ingest a test/ folder for an honest figure")
    if card.get("family") == "vae" and iw_samples > 0:
        report["iw_nll"] = _iw_nll(run, generator, reference_dir, split, iw_samples, seed)
    report["seconds"] = round(time.time() - started, 1)
    atomic_write_json(run / EVAL_DIR / REPORT, report)
    return report
