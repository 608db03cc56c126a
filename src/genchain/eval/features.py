"""Feature networks for FID/KID/precision-recall: a small classifier trained on the dataset's own labels.

FID compares images in the feature space of a network; the standard one is Inception-v3 trained on ImageNet,
whose weights cannot be downloaded here (see :mod:`genchain.eval.inception` for loading them from a local file).
The default here follows the practice for MNIST-like data (e.g. the LeNet features of Heusel et al. 2017's MNIST
experiments): a small CNN trained to classify the reference dataset, whose penultimate layer (128 dims) is
the feature vector. Its features carry exactly the distinctions that separate the dataset's classes, so a
generator that draws the wrong shapes or too few classes is penalised, and its test accuracy says how far the
features can be trusted; every report quotes it. Numbers are comparable only between runs evaluated with the
same feature network (same dataset content, same image size), which is why the network is saved beside the
run with the dataset's content hash and reused only when the hash matches.

A dataset without labels has nothing to train a classifier on; then the features come from the same network,
randomly initialised with a fixed seed. Random convolutional features still separate noise from data and
compare runs of one dataset, but they do not measure semantic quality, and the report says so.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from genchain.data.dataset import Dataset
from genchain.errors import InputError
from genchain.fileio import SCHEMA_VERSION, atomic_write_json
from genchain.runtime import cpu_has_native_bf16
from genchain.train.checkpoint import load_weights, model_tensors, save_weights
from genchain.train.image_data import ImageTensors, load_images, to_unit_range

FEATURE_NET_WEIGHTS = "feature_net.safetensors"
FEATURE_NET_INFO = "feature_net.json"
MAX_INPUT_SIZE = 64  # larger images are resized to this before the classifier: it judges content, not texture
HELD_OUT_FRACTION = 0.1  # of train, for the accuracy when the dataset has no test/validation split


@dataclass(frozen=True)
class FeatureNetConfig:
    """The classifier's shape; ``image_size`` is what it sees (inputs of another size are resized to it)."""

    channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 8 <= self.image_size <= MAX_INPUT_SIZE:
            raise ValueError(f"image_size must be in 8..{MAX_INPUT_SIZE}, got {self.image_size}")


@dataclass(frozen=True)
class ClassifierOutput:
    logits: torch.Tensor  # (N, num_classes)
    features: torch.Tensor  # (N, feature_dim)
    loss: torch.Tensor | None


class FeatureNet(nn.Module):
    """Three conv stages (width w, 2w, 4w; 2x2 max pool after each while the map is larger than 8x8), global
    average pool, one hidden layer whose ReLU output is the feature vector, and a linear classifier on it.

    A linear head on the features makes them linearly class-separable: distances between feature vectors then
    mean something about class content, which is what FID's Gaussian fit needs.
    """

    def __init__(self, config: FeatureNetConfig):
        super().__init__()
        self.config = config
        widths = [config.width, 2 * config.width, 4 * config.width]
        layers: list[nn.Module] = []
        c_in, size = config.channels, config.image_size
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if size > 8:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        self.trunk = nn.Sequential(*layers)
        self.hidden = nn.Linear(widths[-1], config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, C, H, W) of any size -> (N, feature_dim)."""
        size = self.config.image_size
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = self.trunk(images)  # (N, 4w, size / 4 or / 8, ...)
        return F.relu(self.hidden(x.mean(dim=(2, 3))))  # (N, feature_dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> ClassifierOutput:
        features = self.features(images)
        logits = self.head(features)  # (N, num_classes)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return ClassifierOutput(logits, features, loss)


@dataclass
class FeatureNetwork:
    """A feature network and what the report must say about it."""

    net: nn.Module  # maps [-1, 1] images (N, C, H, W) to (N, dim) features
    kind: str  # "classifier", "random" or "inception"
    dim: int
    info: dict[str, Any]  # accuracy, dataset hash, note, ...

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        features = self.net.features(images) if isinstance(self.net, FeatureNet) else self.net(images)
        return features.float()


@torch.inference_mode()
def extract_features(network: FeatureNetwork, images: torch.Tensor, *, batch_size: int = 256,
                     desc: str = "features") -> np.ndarray:
    """uint8 images (N, C, H, W) -> float64 features (N, dim), computed in fp32 in batches."""
    device = next(network.net.parameters()).device
    out = []
    steps = range(0, len(images), batch_size)
    for start in tqdm(steps, desc=desc, unit="batch", leave=False, disable=None if len(steps) > 4 else True):
        batch = to_unit_range(images[start : start + batch_size].to(device))
        out.append(network(batch).cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros((0, network.dim))


def dataset_content_hash(dataset_dir: str | Path) -> str:
    """The dataset's ``content_sha256`` (over its Arrow shards): what the cached feature network is tied to."""
    return str(Dataset(dataset_dir).manifest.get("content_sha256", ""))


def _accuracy_split(dataset: Dataset) -> str | None:
    for split in ("test", "validation", "val"):
        if split in dataset.splits and dataset.num_rows(split) > 0:
            return split
    return None


def _autocast(device: torch.device):
    """bf16 autocast where the hardware multiplies bf16 natively (the convolutions run several times faster)."""
    enabled = (device.type == "cpu" and cpu_has_native_bf16()) or (
        device.type == "cuda" and torch.cuda.is_bf16_supported())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.inference_mode()
def classifier_accuracy(net: FeatureNet, data: ImageTensors, batch_size: int = 512) -> float:
    net.eval()
    device = next(net.parameters()).device
    correct = 0
    for start in range(0, len(data), batch_size):
        images = to_unit_range(data.images[start : start + batch_size].to(device))
        logits = net(images).logits
        correct += int((logits.argmax(1).cpu() == data.labels[start : start + batch_size]).sum())
    return correct / max(1, len(data))


def train_feature_classifier(
    dataset_dir: str | Path,
    *,
    image_size: int | None = None,
    epochs: float = 2.0,
    min_steps: int = 300,
    batch_size: int = 128,
    learning_rate: float = 3e-3,
    width: int = 32,
    feature_dim: int = 128,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> FeatureNetwork:
    """Train the feature classifier on ``dataset_dir``'s train split and measure its accuracy.

    Accuracy is measured on the test split (or validation); a dataset with neither holds out the last 10% of a
    fixed shuffle of train for it. Training runs ``max(epochs * rows / batch_size, min_steps)`` AdamW steps with
    a one-cycle schedule, in bf16 autocast where the hardware supports it: about a minute for Fashion-MNIST on
    two CPU cores, a few seconds for the digits.

    Args:
        dataset_dir: an image dataset with labels.
        image_size: the size the classifier sees; default the dataset's (capped at 64).
    """
    started = time.time()
    dataset = Dataset(dataset_dir)
    if not dataset.label_names:
        raise InputError(f"{dataset_dir} has no labels, so no feature classifier can be trained on it; label it "
                         "(`genchain data ingest --label-from dirname`) or evaluate with --inception FILE")
    if len(dataset.label_names) < 2:
        raise InputError(f"{dataset_dir} has a single class; a classifier needs at least two")
    train = load_images(dataset_dir, "train", size=_input_size(image_size))
    if train.size > MAX_INPUT_SIZE:
        train = load_images(dataset_dir, "train", size=MAX_INPUT_SIZE)
    held_split = _accuracy_split(dataset)
    if held_split is not None:
        held = load_images(dataset_dir, held_split, size=train.size)
    else:
        train, held = _hold_out(train, seed)
        held_split = f"train (last {HELD_OUT_FRACTION:.0%} held out)"
    config = FeatureNetConfig(channels=train.channels, image_size=train.size, num_classes=len(dataset.label_names),
                              width=width, feature_dim=feature_dim)
    device = torch.device(device)
    torch.manual_seed(seed)
    net = FeatureNet(config).to(device).to(memory_format=torch.channels_last)
    steps = max(min_steps, math.ceil(epochs * len(train) / batch_size))
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps,
                                                   pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)
    position = 0
    net.train()
    bar = tqdm(range(steps), desc="feature classifier", unit="step", leave=False, disable=None)
    for _ in bar:
        if position + batch_size > len(order):  # a new epoch: reshuffle
            order, position = torch.randperm(len(train), generator=generator), 0
        index = order[position : position + batch_size]
        position += batch_size
        images = to_unit_range(train.images[index].to(device)).contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            loss = net(images, train.labels[index].to(device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    accuracy = classifier_accuracy(net, held)
    net.eval().requires_grad_(False)
    info = {
        "kind": "classifier",
        "description": f"penultimate layer ({feature_dim} dims) of a CNN trained on the dataset's labels",
        "note": "FIDs on these features compare runs evaluated with this same network (same dataset content and "
                "image size); they are not comparable with published Inception-v3 FIDs",
        "test_accuracy": round(accuracy, 4),
        "accuracy_split": held_split,
        "accuracy_rows": len(held),
        "train_rows": len(train),
        "steps": steps,
        "seconds": round(time.time() - started, 1),
        "dataset": str(Path(dataset_dir).resolve()),
        "dataset_sha256": dataset_content_hash(dataset_dir),
        "label_names": dataset.label_names,
        "config": asdict(config),
    }
    return FeatureNetwork(net.to(memory_format=torch.contiguous_format), "classifier", feature_dim, info)


def random_feature_network(dataset_dir: str | Path, channels: int, image_size: int, *, seed: int = 0,
                           feature_dim: int = 128) -> FeatureNetwork:
    """The classifier's architecture with fixed-seed random weights: the fallback for datasets without labels."""
    config = FeatureNetConfig(channels=channels, image_size=_input_size(image_size), num_classes=2,
                              feature_dim=feature_dim)
    torch.manual_seed(seed)
    net = FeatureNet(config).eval().requires_grad_(False)
    info = {
        "kind": "random",
        "description": f"randomly initialised CNN (seed {seed}), {feature_dim} dims",
        "note": "the dataset has no labels, so no classifier could be trained: these features separate noise "
                "from data and compare runs on this dataset, but do not measure semantic quality",
        "test_accuracy": None,
        "dataset": str(Path(dataset_dir).resolve()),
        "dataset_sha256": dataset_content_hash(dataset_dir),
        "seed": seed,
        "config": asdict(config),
    }
    return FeatureNetwork(net, "random", feature_dim, info)


def save_feature_network(network: FeatureNetwork, directory: str | Path) -> None:
    """``feature_net.safetensors`` + ``feature_net.json`` (accuracy, dataset hash, config) in ``directory``."""
    directory = Path(directory)
    save_weights(directory / FEATURE_NET_WEIGHTS, model_tensors(network.net), {"kind": network.kind})
    info = {k: v for k, v in network.info.items() if k != "cached"}
    atomic_write_json(directory / FEATURE_NET_INFO, {"schema_version": SCHEMA_VERSION, **info})


def load_feature_network(directory: str | Path) -> FeatureNetwork:
    directory = Path(directory)
    info = json.loads((directory / FEATURE_NET_INFO).read_text(encoding="utf-8"))
    config = FeatureNetConfig(**info["config"])
    net = FeatureNet(config)
    load_weights(net, directory / FEATURE_NET_WEIGHTS)
    net.eval().requires_grad_(False)
    info.pop("schema_version", None)
    return FeatureNetwork(net, info["kind"], config.feature_dim, info)


def shared_cache_dir(dataset_sha256: str, channels: int, image_size: int) -> Path:
    """Where feature networks are kept across runs: ``$GENCHAIN_CACHE/feature_nets/HASH-Cc-Spx``."""
    from genchain.data.sources import cache_dir

    return cache_dir() / "feature_nets" / f"{dataset_sha256[:16]}-{channels}c-{image_size}px"


def feature_network_for(dataset_dir: str | Path, run_cache: str | Path | None, *, channels: int, image_size: int,
                        device: str | torch.device = "cpu", shared: bool = True) -> FeatureNetwork:
    """The dataset's feature network at ``image_size``: reused when one was made from the same dataset content
    (the run's copy in ``run_cache`` first, then the shared one in ``$GENCHAIN_CACHE``), else trained (or, for a
    dataset without labels, randomly initialised) with a fixed seed; saved to both places.

    Sharing matters beyond speed: two runs on one dataset are only comparable when they are measured with the
    same network, and the shared copy makes sure they are.
    """
    wanted_hash = dataset_content_hash(dataset_dir)
    size = _input_size(image_size)
    kind = "classifier" if Dataset(dataset_dir).label_names else "random"
    places = [Path(d) for d in (run_cache, shared_cache_dir(wanted_hash, channels, size) if shared else None) if d]
    for place in places:
        if not (place / FEATURE_NET_INFO).is_file():
            continue
        cached = load_feature_network(place)
        config = cached.info["config"]
        if (cached.info.get("dataset_sha256") == wanted_hash and config["image_size"] == size
                and config["channels"] == channels and cached.kind == kind):
            cached.info["cached"] = True
            for other in places[: places.index(place)]:
                save_feature_network(cached, other)
            cached.net.to(device)
            return cached
    if kind == "classifier":
        network = train_feature_classifier(dataset_dir, image_size=size, device=device)
        if network.info["config"]["channels"] != channels:
            raise InputError(f"{dataset_dir} has {network.info['config']['channels']}-channel images but the "
                             f"generator makes {channels}-channel ones; evaluate against the dataset it was "
                             "trained on")
    else:
        network = random_feature_network(dataset_dir, channels, size)
    network.info["cached"] = False
    for place in places:
        save_feature_network(network, place)
    network.net.to(device)
    return network


def _input_size(image_size: int | None) -> int | None:
    return None if image_size is None else min(int(image_size), MAX_INPUT_SIZE)


def _hold_out(data: ImageTensors, seed: int) -> tuple[ImageTensors, ImageTensors]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = len(data) - max(1, int(len(data) * HELD_OUT_FRACTION))
    parts = []
    for index in (order[:cut], order[cut:]):
        parts.append(ImageTensors(data.images[index], data.labels[index], data.label_names,
                                  [data.ids[i] for i in index.tolist()]))
    return parts[0], parts[1]
