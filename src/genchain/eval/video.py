"""Video metrics: frame-level FID and temporal consistency, and ``evaluate_run`` for a video run.

* Frame FID: the FID of :mod:`genchain.eval.image` (Heusel et al. 2017) between generated frames and the test
  split's real frames, on the features of a small CNN (:class:`genchain.eval.features.FeatureNet`) trained here
  to name the garments in a frame: a multi-label classifier (sigmoid per class, both garments of a clip are its
  targets), since a Moving Fashion-MNIST frame holds two garments. No Inception-v3 weights exist offline, so these
  FIDs compare runs measured with this network only; the report gives its accuracy and a real-vs-real floor.
* Temporal consistency, per pair of consecutive frames (intensities in [0, 1]):
  ``ssim`` -- mean SSIM (Wang et al. 2004; 7x7 uniform window, C1 = 0.01^2, C2 = 0.03^2, as scikit-image's
  default), 1 for identical frames; ``l1`` -- mean absolute difference, 0 for identical frames;
  ``flicker`` -- mean absolute second temporal difference |x_{t+1} - 2 x_t + x_{t-1}|, which is 0 for a still
  clip and for any steady fade, and large when frames jump back and forth.
  The same numbers for the real clips and for the real clips with their frames shuffled give the scale: a
  model's clips should sit near the real ones and far from the shuffled ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from genchain.errors import InputError
from genchain.eval.features import (
    FeatureNet,
    FeatureNetConfig,
    FeatureNetwork,
    extract_features,
    load_feature_network,
    save_feature_network,
)
from genchain.eval.image import fid_from_features
from genchain.fileio import SCHEMA_VERSION, atomic_write_json
from genchain.train.image_data import to_uint8, to_unit_range
from genchain.train.video_data import VideoData, load_video_data

EVAL_DIR = "eval"
REPORT = "video_report.json"
FEATURES_DIR = "video_features"
SSIM_WINDOW = 7
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


# ------------------------------------------------------------------------------------------------ temporal metrics
def _unit(videos: torch.Tensor) -> torch.Tensor:
    """uint8 (N, T, C, H, W) -> float64 in [0, 1]."""
    if videos.dim() != 5:
        raise InputError(f"expected clips shaped (N, T, C, H, W), got {tuple(videos.shape)}")
    if videos.shape[1] < 2:
        raise InputError("temporal metrics need clips of at least two frames")
    return videos.double() / 255.0 if videos.dtype == torch.uint8 else videos.double()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image pair (N,) of images (N, C, H, W) in [0, 1], 7x7 uniform window, valid positions."""
    def mean(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, SSIM_WINDOW, stride=1)

    n = SSIM_WINDOW**2
    mu_a, mu_b = mean(a), mean(b)
    # sample (co)variances, as scikit-image computes them
    var_a = (mean(a * a) - mu_a**2) * n / (n - 1)
    var_b = (mean(b * b) - mu_b**2) * n / (n - 1)
    cov = (mean(a * b) - mu_a * mu_b) * n / (n - 1)
    numerator = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    return (numerator / ((mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))).flatten(1).mean(1)


def temporal_metrics(videos: torch.Tensor) -> dict[str, float]:
    """SSIM, L1 and flicker of consecutive frames, averaged over all clips and frame pairs."""
    x = _unit(videos)
    prev, nxt = x[:, :-1].flatten(0, 1), x[:, 1:].flatten(0, 1)
    out = {"ssim": float(ssim(prev, nxt).mean()), "l1": float((nxt - prev).abs().mean())}
    out["flicker"] = float((x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]).abs().mean()) if x.shape[1] >= 3 else 0.0
    return out


def shuffle_frames(videos: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each clip with its frames in a random order (the baseline that has the real frames but no motion)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(videos.shape[1], generator=generator) for _ in range(len(videos))])
    return videos[torch.arange(len(videos))[:, None], order]


def independent_frames(videos: torch.Tensor) -> torch.Tensor:
    """Clip i's frame t taken from clip (i + t) mod N: every frame real and well made, but no two from one clip."""
    n, t = videos.shape[:2]
    return videos[(torch.arange(n)[:, None] + torch.arange(t)[None]) % n, torch.arange(t)[None]]


# ------------------------------------------------------------------------------------------------ frame features
def multi_hot(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, K) class indices -> (N, num_classes) 0/1 targets."""
    return torch.zeros(len(classes), num_classes).scatter_(1, classes, 1.0)


def train_frame_features(data: VideoData, *, steps: int = 400, batch_size: int = 64, seed: int = 0,
                         feature_dim: int = 128, width: int = 16) -> FeatureNetwork:
    """The frame-feature network: FeatureNet trained to name the garments in a frame (multi-label BCE).

    Accuracy is measured on test frames: the share whose two highest-scoring classes are exactly the clip's
    garments (clips of two garments of one class count when that class ranks first).
    """
    started = time.time()
    torch.manual_seed(seed)
    num_classes = len(data.class_names)
    config = FeatureNetConfig(channels=1, image_size=data.size, num_classes=num_classes, width=width,
                              feature_dim=feature_dim)
    net = FeatureNet(config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    frames = data.train.flatten(0, 1)  # (N * T, 1, S, S)
    targets = multi_hot(data.train_classes, num_classes).repeat_interleave(data.frames, dim=0)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in tqdm(range(steps), desc="frame features", unit="step", leave=False, disable=None):
        index = torch.randint(0, len(frames), (batch_size,), generator=generator)
        logits = net(to_unit_range(frames[index])).logits
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    net.eval().requires_grad_(False)
    accuracy = _set_accuracy(net, data)
    info = {"kind": "classifier",
            "description": f"penultimate layer ({feature_dim} dims) of a CNN trained to name both garments in a "
                           "Moving Fashion-MNIST frame (multi-label)",
            "note": "frame FIDs on these features compare video runs evaluated with this same network; they are not "
                    "comparable with image FIDs or with published Inception-v3 FIDs",
            "test_top2_accuracy": round(accuracy, 4), "steps": steps, "seconds": round(time.time() - started, 1),
            "dataset_sha256": data.sha256, "config": {k: getattr(config, k) for k in config.__dataclass_fields__}}
    return FeatureNetwork(net, "classifier", feature_dim, info)


@torch.no_grad()
def _set_accuracy(net: FeatureNet, data: VideoData, clips: int = 200) -> float:
    frames = data.test[:clips, 0]  # (M, 1, S, S): the first frame of each test clip
    logits = net(to_unit_range(frames)).logits
    top2 = logits.topk(2, dim=1).indices
    hits = 0
    for predicted, truth in zip(top2.tolist(), data.test_classes[:clips].tolist(), strict=True):
        hits += set(truth) == set(predicted) if truth[0] != truth[1] else predicted[0] == truth[0]
    return hits / len(frames)


def frame_features_for(run: Path, data: VideoData, steps: int = 400) -> FeatureNetwork:
    """The run's cached frame-feature network when it was made from the same data and frame size, else a new one."""
    place = run / EVAL_DIR / FEATURES_DIR
    if (place / "feature_net.json").is_file():
        cached = load_feature_network(place)
        if cached.info.get("dataset_sha256") == data.sha256 and cached.info["config"]["image_size"] == data.size:
            cached.info["cached"] = True
            return cached
    network = train_frame_features(data, steps=steps)
    save_feature_network(network, place)
    network.info["cached"] = False
    return network


def frame_fid(network: FeatureNetwork, real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between the frames of two uint8 clip sets (N, T, C, H, W)."""
    return fid_from_features(extract_features(network, real.flatten(0, 1), desc="real frames"),
                             extract_features(network, fake.flatten(0, 1), desc="generated frames"))


# ------------------------------------------------------------------------------------------------ run
def generate_clips(model: Any, num: int, frames: int, seed: int, batch_size: int = 50) -> tuple[torch.Tensor, float]:
    """uint8 clips (num, frames, C, H, W) from a video model, and the frames generated per second."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    started = time.perf_counter()
    for start in range(0, num, batch_size):
        out.append(to_uint8(model.generate(min(batch_size, num - start), frames, generator)))
    seconds = time.perf_counter() - started
    return torch.cat(out), num * frames / max(seconds, 1e-9)


def evaluate_run(run: str | Path, *, num: int = 200, data: str | Path | None = None, seed: int = 0,
                 frames: int | None = None, feature_steps: int = 400) -> dict[str, Any]:
    """Frame FID and temporal consistency of a video run's clips against held-out real clips; written to
    ``RUN/eval/video_report.json`` and returned.

    Args:
        num: clips to generate (and real test clips to compare with, at most the test split's size).
        data: the real clips (default: what the run was trained on).
        frames: frames per clip (default: the data's clip length).
        feature_steps: training steps of the frame-feature network when none is cached.
    """
    from genchain.train.video import load_video_model

    run = Path(run)
    if num < 2:
        raise InputError(f"--num must be at least 2 clips (FID fits a covariance), got {num}")
    model, card = load_video_model(run)
    source = data if data is not None else card.get("data", {}).get("source")
    if source is None:
        raise InputError(f"{run}'s card does not say what data it was trained on; pass --data")
    clips = load_video_data(source, model.config.image_size)
    frames = frames or clips.frames
    if frames > clips.frames:
        raise InputError(f"--frames {frames} is longer than the real clips ({clips.frames} frames)")
    real = clips.test[:num, :frames]
    network = frame_features_for(run, clips, feature_steps)
    fake, fps = generate_clips(model, num, frames, seed)
    shuffled = shuffle_frames(real, seed)
    floor_real = clips.train[: len(real), :frames]
    report = {
        "schema_version": SCHEMA_VERSION, "run": str(run.resolve()), "model": card.get("model"),
        "iters": card.get("iters"), "clips": num, "real_clips": len(real), "frames": frames,
        "image_size": model.config.image_size, "seed": seed,
        "frame_fid": {"generated": frame_fid(network, real, fake),
                      "real_train_vs_test": frame_fid(network, real, floor_real)},
        "temporal": {"generated": temporal_metrics(fake), "real": temporal_metrics(real),
                     "shuffled_real": temporal_metrics(shuffled),
                     "independent_generated": temporal_metrics(independent_frames(fake))},
        "generation_frames_per_s": fps,
        "features": {k: v for k, v in network.info.items()},
        "data": clips.origin,
    }
    atomic_write_json(run / EVAL_DIR / REPORT, report)
    return report


def report_summary(report: dict[str, Any]) -> str:
    """A few lines for people."""
    t = report["temporal"]
    lines = [f"frame FID {report['frame_fid']['generated']:.2f} (real train vs test: "
             f"{report['frame_fid']['real_train_vs_test']:.2f}; features: {report['features']['description']}, "
             f"top-2 accuracy {report['features']['test_top2_accuracy']:.3f})"]
    for name in ("generated", "real", "shuffled_real", "independent_generated"):
        m = t[name]
        lines.append(f"  {name:<22} ssim {m['ssim']:.3f}  l1 {m['l1']:.4f}  flicker {m['flicker']:.4f}")
    lines.append(f"generation: {report['generation_frames_per_s']:.0f} frames/s")
    return "\n".join(lines)


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)
