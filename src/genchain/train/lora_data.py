"""Fine-tuning examples for LoRA: read them, render them in the base's chat format, tokenize with loss masks.

Three record shapes, one per line of a ``.jsonl`` file (a ``.txt`` file or a text dataset dir gives the first):

* ``{"text": ...}`` -- plain text; the loss is on every token.
* ``{"prompt": ..., "completion": ...}`` (optional ``"system"``) -- a chat turn; the loss is on the completion.
* a copy brief, ``{"product", "features", "audience", "tone", "kind", "lang", "copy"}`` -- rendered with
  :func:`genchain.apps.copywriting.build_prompt`, so training sees byte for byte the prompt ``genchain copy``
  sends at inference; the loss is on the copy.

A prompt is tokenized on its own and the completion after it, exactly as the backend tokenizes a prompt and then
samples the continuation, so no token straddles the boundary differently in training and at inference.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genchain.errors import InputError

IGNORE = -100  # the label torch's cross-entropy skips: prompt and padding positions


@dataclass(frozen=True)
class Example:
    """One training example as text: ``prompt`` is conditioning only (no loss), ``completion`` is learned."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    labels: list[int]  # IGNORE on the prompt, the token id on the completion


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(train records, held-out records or None) from a ``.jsonl``/``.txt`` file or a text dataset dir."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"training data {path} does not exist; give a .jsonl or .txt file or a text dataset dir")
    if path.is_dir():
        from genchain.data.dataset import open_dataset

        data = open_dataset(path)
        if data.modality != "text":
            raise InputError(f"{path} is a {data.modality} dataset; LoRA fine-tuning needs text")
        held = [s for s in data.splits if s in ("validation", "test")]
        train = [{"text": row["text"]} for _, row in data.rows("train" if "train" in data.splits else None)]
        val = [{"text": row["text"]} for split in held for _, row in data.rows(split)] if held else None
        return train, val or None
    if path.suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [{"text": line.strip()} for line in lines if line.strip()], None
    if path.suffix != ".jsonl":
        raise InputError(f"{path}: LoRA training reads .jsonl (one JSON object a line), .txt (one example a line) "
                         "or a text dataset dir")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{n} is not JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise InputError(f"{path}:{n} must be a JSON object")
        records.append(record)
    return records, None


def split_records(records: list[dict[str, Any]], held: list[dict[str, Any]] | None, val_fraction: float,
                  seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and held-out records: the dataset's own held-out split, else a seeded ``val_fraction`` share."""
    if not records:
        raise InputError("the training data holds no examples; add records with text, prompt+completion, or a "
                         "copy brief")
    if held:
        return records, held
    if len(records) < 2:
        raise InputError("the training data holds one example; at least two are needed (one is held out)")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = min(len(records) - 1, max(1, round(len(records) * val_fraction)))
    return [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]


def to_example(record: dict[str, Any], tokenizer, where: str) -> Example:
    """Render one record as prompt + completion text in the base's chat format."""
    if "copy" in record:
        from genchain.apps.copywriting import Brief, build_prompt

        fields = {k: record.get(k, "") for k in ("product", "audience", "tone", "kind", "lang")}
        features = record.get("features", "")
        features = "; ".join(features) if isinstance(features, list) else features
        brief = Brief.from_args(fields["product"], features, fields["audience"], fields["tone"] or "friendly",
                                fields["kind"] or "slogan", fields["lang"] or "en")
        system, user = build_prompt(brief)
        return chat_example(tokenizer, system, user, _text(record, "copy", where))
    if "completion" in record:
        return chat_example(tokenizer, record.get("system", ""), _text(record, "prompt", where),
                            _text(record, "completion", where))
    if "text" in record:
        return Example("", _text(record, "text", where) + (tokenizer.eos_token or ""))
    raise InputError(f"{where} has none of the keys text, prompt+completion or copy (+ the brief); "
                     f"it has {', '.join(sorted(record)) or 'no keys'}")


def _text(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {key!r} must be a non-empty string")
    return value


def chat_example(tokenizer, system: str, user: str, completion: str) -> Example:
    """The prompt exactly as :meth:`HFBackend.render` builds it, and the assistant turn that follows it up to
    and including the end-of-turn token (so the model learns to stop)."""
    if not getattr(tokenizer, "chat_template", None):
        return Example(f"{system}\n\n{user}\n", completion + (tokenizer.eos_token or ""))
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}], tokenize=False)
    if not full.startswith(prompt):  # a template that renders past turns differently: fall back to text + EOS
        return Example(prompt, completion + (tokenizer.eos_token or ""))
    rest = full[len(prompt):]
    eos = tokenizer.eos_token
    if eos and eos in rest:
        rest = rest[: rest.rindex(eos) + len(eos)]  # what follows the end-of-turn token is never sampled
    return Example(prompt, rest)


def encode(example: Example, tokenizer, max_len: int, where: str) -> Encoded:
    """Token ids and labels; a prompt that leaves no room for the completion in ``max_len`` is an error,
    a completion that runs past it is cut."""
    prompt = tokenizer(example.prompt, add_special_tokens=False).input_ids if example.prompt else []
    completion = tokenizer(example.completion, add_special_tokens=False).input_ids
    if len(prompt) >= max_len:
        raise InputError(f"{where}: the prompt is {len(prompt)} tokens but max_len is {max_len}, leaving no room "
                         "for the completion; shorten the prompt or raise max_len (up to the model's context)")
    ids = (prompt + completion)[:max_len]
    labels = ([IGNORE] * len(prompt) + completion)[:max_len]
    return Encoded(ids, labels)


def encode_all(records: list[dict[str, Any]], tokenizer, max_len: int, name: str) -> list[Encoded]:
    """Every record of one split, rendered and encoded; errors name the record."""
    out = []
    for i, record in enumerate(records, 1):
        where = f"{name} record {i}"
        encoded = encode(to_example(record, tokenizer, where), tokenizer, max_len, where)
        if any(label != IGNORE for label in encoded.labels[1:]):  # the first label is never predicted
            out.append(encoded)
    if not out:
        raise InputError(f"the {name} split has no example with completion tokens to learn")
    return out
