"""Raw text -> packed training blocks for continued pretraining, cached by content, mixed by weight, or streamed.

Pipeline for each source folder (``--dataset_dir a:0.8,b:0.2`` names two sources):

1. Read documents (``.txt``: one a line; ``.jsonl``: the ``text`` field) with :func:`langadapt.io.iter_documents`,
   which stops on bad UTF-8 or JSON naming file and line.
2. Normalize with the tokenizer folder's ``langadapt_normalizer.json``, tokenize without special tokens and append
   EOS after every document, so the model learns where a document ends (``datasets.map``, ``num_proc`` workers,
   progress bar).
3. Concatenate and cut into ``block_size`` blocks; only the last partial block of a source is dropped.
4. Save the blocks under ``--data_cache_dir/<key>``, ``key`` = SHA-256 of the tokenizer files, every data file's
   bytes, the block size, the normalizer and this format's version: a changed tokenizer or file can never reuse a
   stale cache (the seed keyed its cache by file name only).
5. Hold out a deterministic ``--validation_split_percentage`` of each source's blocks (fixed-seed shuffle).
6. Mix the training blocks of several sources by sampling each block's source with the given weights.

``--streaming`` does 2-3 and 6 on the fly (:class:`PackedStream`): memory stays flat whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from langadapt.errors import InputError
from langadapt.io import honour_umask, iter_documents, owned_temp_dir, resolve_files, write_json
from langadapt.normalize import NormalizerConfig, normalize

logger = logging.getLogger(__name__)

# Bump when the cached format or the preprocessing changes, so old caches are not reused.
CACHE_VERSION = 1
CACHE_INFO_FILE = "langadapt_cache.json"
# Fixed seed of the validation split: the same corpus gives the same held-out blocks in every run and on every rank.
SPLIT_SEED = 42
# Documents per tokenizer call (datasets.map batch): big enough to amortise the Rust call, small enough for RAM.
TOKENIZE_BATCH = 1000
# Files of a tokenizer folder that decide how text is tokenized (a model folder's weights are not hashed).
_TOKENIZER_FILE_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "spiece",
                            "langadapt_normalizer", "sentencepiece")


@dataclass
class CorpusSource:
    """One ``--dataset_dir`` entry: a folder (or file), its sampling weight and its text files."""

    path: str
    weight: float
    files: list[str] = field(default_factory=list)


def parse_dataset_dirs(spec: str, arg: str = "dataset_dir") -> list[CorpusSource]:
    """``"fa_dir:0.8,en_dir:0.2"`` -> sources with weights normalized to sum 1 (a bare path weighs 1)."""
    sources = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        path, weight = item, 1.0
        head, sep, tail = item.rpartition(":")
        if sep and head:
            try:
                path, weight = head, float(tail)
            except ValueError:
                path, weight = item, 1.0  # a ':' inside the path itself
        if weight <= 0:
            raise InputError(f"--{arg}: weight of {path} must be > 0, got {weight}", arg=arg, value=path)
        sources.append(CorpusSource(path=path, weight=weight, files=resolve_files(path, arg)))
    if not sources:
        raise InputError(f"--{arg}: no folder given; pass a folder of .txt/.jsonl files", arg=arg)
    total = sum(s.weight for s in sources)
    for s in sources:
        s.weight /= total
    return sources


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer_dir: str | None, tokenizer) -> str:
    """Hash of the files that define tokenization in ``tokenizer_dir``; falls back to the vocabulary itself."""
    h = hashlib.sha256()
    hashed = False
    if tokenizer_dir and os.path.isdir(tokenizer_dir):
        for name in sorted(os.listdir(tokenizer_dir)):
            path = os.path.join(tokenizer_dir, name)
            if os.path.isfile(path) and name.startswith(_TOKENIZER_FILE_PREFIXES):
                h.update(name.encode())
                h.update(file_sha256(path).encode())
                hashed = True
    if not hashed:  # hub tokenizer or in-memory object: hash what it does instead
        h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    return h.hexdigest()


def cache_key(tokenizer_hash: str, files: Sequence[str], block_size: int, normalizer: NormalizerConfig,
              eos_id: int, text_field: str) -> tuple[str, dict[str, Any]]:
    """(hex key, the inputs it was made of) for one source's packed blocks."""
    parts = {
        "version": CACHE_VERSION,
        "tokenizer": tokenizer_hash,
        "files": {os.path.abspath(f): file_sha256(f) for f in files},
        "block_size": block_size,
        "normalizer": asdict(normalizer),
        "eos_id": eos_id,
        "text_field": text_field,
    }
    # File paths are informative only: the same bytes elsewhere are the same data.
    keyed = {**parts, "files": sorted(parts["files"].values())}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:32], parts


def resolve_block_size(requested: int | None, model_config, arg: str = "block_size") -> int:
    """``--block_size`` checked against the model's context; default min(1024, context)."""
    context = None
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model_config, attr, None)
        if isinstance(value, int) and value > 0:
            context = value
            break
    if requested is None:
        return min(1024, context) if context else 1024
    if context is not None and requested > context:
        raise InputError(f"--{arg} {requested} is above the model's context of {context} tokens; use <= {context}",
                         arg=arg, value=requested)
    return requested


def _read_docs(files: list[str], text_field: str) -> Iterator[dict[str, str]]:
    for f in files:
        for doc in iter_documents(f, text_field):
            yield {"text": doc}


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens. Calls the Rust backend directly when there is one: same ids as
    ``tokenizer(texts, add_special_tokens=False)`` (tested) at about 3/4 of the time (no offsets, no masks)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _tokenize_batch(batch: dict[str, list], tokenizer, normalizer: NormalizerConfig, eos_id: int) -> dict[str, list]:
    texts = [normalize(t, normalizer) for t in batch["text"]]
    return {"input_ids": [x + [eos_id] for x in encode_texts(tokenizer, texts)]}


def pack_ids(docs: Iterator[list[int]], block_size: int) -> Iterator[list[int]]:
    """Concatenate token lists and cut them into ``block_size`` blocks; the final partial block is dropped."""
    buf: list[int] = []
    for ids in docs:
        buf.extend(ids)
        if len(buf) >= block_size:
            n = len(buf) // block_size * block_size
            for i in range(0, n, block_size):
                yield buf[i:i + block_size]
            buf = buf[n:]


def _pack_gen(tokenized, block_size: int) -> Iterator[dict[str, list[int]]]:
    docs = (ids for batch in tokenized.iter(batch_size=TOKENIZE_BATCH) for ids in batch["input_ids"])
    for block in pack_ids(docs, block_size):
        yield {"input_ids": block}


def _unwrap(e: Exception) -> Exception:
    """datasets wraps errors raised in generators/workers; surface our InputError (bad file/line) as is."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, InputError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return e


def build_source_blocks(source: CorpusSource, tokenizer, normalizer: NormalizerConfig, block_size: int, *,
                        tokenizer_hash: str, text_field: str = "text", num_proc: int | None = None,
                        cache_dir: str | None = None, overwrite_cache: bool = False):
    """Packed blocks of one source as a ``datasets.Dataset`` (column ``input_ids``), from or into the cache.

    Returns ``(dataset, info)`` where ``info`` has ``cache_hit``, ``cache_path``, ``bytes``, ``blocks``.
    """
    import datasets

    key, parts = cache_key(tokenizer_hash, source.files, block_size, normalizer, tokenizer.eos_token_id, text_field)
    nbytes = sum(os.path.getsize(f) for f in source.files)
    target = os.path.join(cache_dir, key) if cache_dir else None
    if target and os.path.isfile(os.path.join(target, CACHE_INFO_FILE)) and not overwrite_cache:
        ds = datasets.load_from_disk(target)
        logger.info("%s: reusing cached blocks %s (%d blocks)", source.path, target, len(ds))
        return ds, {"cache_hit": True, "cache_path": target, "bytes": nbytes, "blocks": len(ds)}
    if not any(True for _ in _read_docs(source.files, text_field)):
        raise InputError(f"--dataset_dir: {source.path} holds no non-blank document",
                         arg="dataset_dir", value=source.path)
    in_memory = cache_dir is None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    work = owned_temp_dir(cache_dir, "work") if cache_dir else None  # a killed run's leftovers are removed
    try:
        try:
            raw = datasets.Dataset.from_generator(
                _read_docs, gen_kwargs={"files": source.files, "text_field": text_field}, cache_dir=work,
                keep_in_memory=in_memory,
            )
            tokenized = raw.map(
                _tokenize_batch, batched=True, batch_size=TOKENIZE_BATCH, num_proc=num_proc,
                remove_columns=["text"], keep_in_memory=in_memory, desc=f"tokenizing {os.path.basename(source.path)}",
                fn_kwargs={"tokenizer": tokenizer, "normalizer": normalizer, "eos_id": tokenizer.eos_token_id},
            )
            blocks = datasets.Dataset.from_generator(
                _pack_gen, gen_kwargs={"tokenized": tokenized, "block_size": block_size}, cache_dir=work,
                keep_in_memory=in_memory,
                features=datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))}),
            )
        except ValueError as e:
            if "corresponds to no data" not in str(e):  # datasets' way of saying the generator yielded nothing
                raise
            raise InputError(
                f"--dataset_dir: {source.path} has fewer than --block_size {block_size} tokens; add text or lower it",
                arg="dataset_dir", value=source.path,
            ) from None
        except Exception as e:  # noqa: BLE001 - re-raised, unwrapped when it is ours
            raise _unwrap(e) from None
        if target:
            tmp_target = owned_temp_dir(cache_dir, f"{key}.tmp")
            blocks.save_to_disk(tmp_target)
            write_json(os.path.join(tmp_target, CACHE_INFO_FILE), {**parts, "source": source.path,
                                                                    "blocks": len(blocks)})
            honour_umask(tmp_target)  # mkdtemp is 0700: the cache is shared by the team's jobs
            if os.path.isdir(target) and overwrite_cache:
                shutil.rmtree(target)
            try:
                os.rename(tmp_target, target)
            except OSError:  # another node built the same key meanwhile (shared file system): same content
                shutil.rmtree(tmp_target, ignore_errors=True)
            blocks = datasets.load_from_disk(target)
        logger.info("%s: %d files, %.1f MB -> %d blocks of %d tokens", source.path, len(source.files), nbytes / 1e6,
                    len(blocks), block_size)
        return blocks, {"cache_hit": False, "cache_path": target, "bytes": nbytes, "blocks": len(blocks)}
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


def split_blocks(blocks, percentage: float):
    """(train, validation) by a fixed-seed shuffle; at least one validation block when ``percentage`` > 0."""
    if percentage <= 0:
        return blocks, None
    n_val = max(1, int(len(blocks) * percentage / 100))
    if n_val >= len(blocks):
        raise InputError(
            f"--validation_split_percentage {percentage}: {len(blocks)} blocks are too few to hold out {n_val}; "
            "add text or lower --block_size", arg="validation_split_percentage", value=percentage,
        )
    perm = random.Random(SPLIT_SEED).sample(range(len(blocks)), len(blocks))
    return blocks.select(sorted(perm[n_val:])), blocks.select(sorted(perm[:n_val]))


def mix_indices(sizes: Sequence[int], weights: Sequence[float], total: int, seed: int) -> list[tuple[int, int]]:
    """``total`` (source, index) draws: each draw picks a source with probability ``weights``; within a source,
    blocks come in a fresh shuffled order, cycled when used up (so a small source with a big weight repeats)."""
    rng = random.Random(seed)
    orders: list[list[int]] = [[] for _ in sizes]
    out = []
    for s in rng.choices(range(len(sizes)), weights=weights, k=total):
        if not orders[s]:
            orders[s] = rng.sample(range(sizes[s]), sizes[s])
        out.append((s, orders[s].pop()))
    return out


def mix_sources(train_parts: Sequence, weights: Sequence[float], seed: int):
    """Weighted mixture of several block datasets, one "epoch" = as many blocks as the parts hold together.

    Returns ``(dataset, blocks drawn from each part)``.
    """
    import datasets

    if len(train_parts) == 1:
        return train_parts[0], [len(train_parts[0])]
    sizes = [len(p) for p in train_parts]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    picks = mix_indices(sizes, weights, sum(sizes), seed)
    counts = [0] * len(sizes)
    for s, _ in picks:
        counts[s] += 1
    mixed = datasets.concatenate_datasets(list(train_parts)).select([offsets[s] + i for s, i in picks])
    return mixed, counts


@dataclass
class DataReport:
    """What the data phase did, for the log and ``run_args.json``."""

    block_size: int
    sources: list[dict[str, Any]]
    train_blocks: int | None
    eval_blocks: int
    streaming: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_pretrain_data(data_args, tokenizer, normalizer: NormalizerConfig, block_size: int, *,
                       tokenizer_dir: str | None, seed: int = 42):
    """Train and eval datasets for the pretraining stage, plus a :class:`DataReport`.

    Map-style (cached, split, mixed) unless ``data_args.streaming``, in which case train is a :class:`PackedStream`.
    """
    sources = parse_dataset_dirs(data_args.dataset_dir)
    val_files = resolve_files(data_args.validation_dataset_dir, "validation_dataset_dir") \
        if data_args.validation_dataset_dir else None
    if data_args.streaming:
        return _streaming_data(data_args, sources, val_files, tokenizer, normalizer, block_size, seed)
    tok_hash = tokenizer_fingerprint(tokenizer_dir, tokenizer)
    common = dict(tokenizer_hash=tok_hash, text_field=data_args.text_field,
                  num_proc=data_args.preprocessing_num_workers, cache_dir=data_args.data_cache_dir,
                  overwrite_cache=data_args.overwrite_cache)
    trains, evals, infos = [], [], []
    for src in sources:
        blocks, info = build_source_blocks(src, tokenizer, normalizer, block_size, **common)
        pct = 0.0 if val_files else data_args.validation_split_percentage
        train, val = split_blocks(blocks, pct)
        trains.append(train)
        if val is not None:
            evals.append(val)
        infos.append({"path": src.path, "weight": src.weight, "files": len(src.files), **info,
                      "train_blocks": len(train), "eval_blocks": len(val) if val is not None else 0})
    if val_files:
        val, _ = build_source_blocks(CorpusSource("validation", 1.0, val_files), tokenizer, normalizer, block_size,
                                     **common)
        evals = [val]
    train, counts = mix_sources(trains, [s.weight for s in sources], seed)
    eval_ds = _concat(evals)
    if eval_ds is not None and data_args.max_eval_blocks:
        eval_ds = eval_ds.select(range(min(len(eval_ds), data_args.max_eval_blocks)))
    report = DataReport(block_size, infos, len(train), len(eval_ds) if eval_ds is not None else 0)
    if len(sources) > 1:
        log_mixture(counts, sources, infos)
    return train.with_format("torch"), (eval_ds.with_format("torch") if eval_ds is not None else None), report


def _concat(parts):
    import datasets

    if not parts:
        return None
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(list(parts))


def log_mixture(counts: Sequence[int], sources: Sequence[CorpusSource], infos: list[dict[str, Any]]) -> None:
    """Log the requested and the drawn share of each source (``infos`` gain ``drawn_share``)."""
    total = max(sum(counts), 1)
    for src, info, c in zip(sources, infos, counts):
        info["drawn_share"] = c / total
        logger.info("mix: %s weight %.3f -> %.3f of %d training blocks (%d unique blocks available)", src.path,
                    src.weight, info["drawn_share"], total, info["train_blocks"])


class PackedStream(torch.utils.data.IterableDataset):
    """Blocks tokenized and packed on the fly from several sources, mixed by weight, cycling forever.

    Memory: one tokenizer batch of documents plus one partial block per source, whatever the corpus size.
    ``skip_blocks`` leading blocks of the first pass are held out for evaluation (see :func:`load_pretrain_data`).
    """

    def __init__(self, sources: Sequence[CorpusSource], tokenizer, normalizer: NormalizerConfig, block_size: int,
                 text_field: str = "text", seed: int = 42, skip_blocks: int = 0):
        self.sources = list(sources)
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.block_size = block_size
        self.text_field = text_field
        self.seed = seed
        self.skip_blocks = skip_blocks

    def _doc_ids(self, files: list[str], cycle: bool) -> Iterator[list[int]]:
        eos = self.tokenizer.eos_token_id
        while True:
            batch: list[str] = []
            for f in files:
                for doc in iter_documents(f, self.text_field):
                    batch.append(doc)
                    if len(batch) == TOKENIZE_BATCH:
                        yield from _tokenize_batch({"text": batch}, self.tokenizer, self.normalizer, eos)["input_ids"]
                        batch = []
            if batch:
                yield from _tokenize_batch({"text": batch}, self.tokenizer, self.normalizer, eos)["input_ids"]
            if not cycle:
                return

    def source_blocks(self, source: CorpusSource, cycle: bool = True) -> Iterator[list[int]]:
        return pack_ids(self._doc_ids(source.files, cycle), self.block_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        streams = [self.source_blocks(s) for s in self.sources]
        # Held-out blocks are the first skip_blocks of the first source (see _streaming_data).
        for _ in range(self.skip_blocks):
            next(streams[0])
        rng = random.Random(self.seed)
        weights = [s.weight for s in self.sources]
        while True:
            s = rng.choices(range(len(streams)), weights=weights)[0] if len(streams) > 1 else 0
            ids = torch.tensor(next(streams[s]), dtype=torch.long)
            yield {"input_ids": ids, "labels": ids.clone()}


def _streaming_data(data_args, sources, val_files, tokenizer, normalizer, block_size, seed):
    import datasets

    n_eval = data_args.max_eval_blocks or 64  # blocks; enough for a stable eval loss on a tiny budget
    probe = PackedStream(sources, tokenizer, normalizer, block_size, data_args.text_field, seed)
    held_src = CorpusSource("validation", 1.0, val_files) if val_files else sources[0]
    held = []
    for ids in probe.source_blocks(held_src, cycle=False):
        held.append(ids)
        if len(held) == n_eval:
            break
    if not held:
        raise InputError(f"--dataset_dir: {held_src.path} has fewer than --block_size {block_size} tokens",
                         arg="dataset_dir", value=held_src.path)
    if not val_files and data_args.validation_split_percentage == 0:
        held = []
    train = PackedStream(sources, tokenizer, normalizer, block_size, data_args.text_field, seed,
                         skip_blocks=len(held) if not val_files else 0)
    eval_ds = datasets.Dataset.from_dict({"input_ids": held}).with_format("torch") if held else None
    infos = [{"path": s.path, "weight": s.weight, "files": len(s.files)} for s in sources]
    logger.info("streaming %d sources; %d held-out blocks from %s", len(sources), len(held), held_src.path)
    return train, eval_ds, DataReport(block_size, infos, None, len(held), streaming=True)


def collate_blocks(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack equal-length blocks; labels = input ids (the model shifts them). Nothing is masked: EOS is a target,
    which a pad-masking collator would drop when pad == EOS."""
    ids = torch.stack([torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features])
    return {"input_ids": ids, "labels": ids.clone()}
