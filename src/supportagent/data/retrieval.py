"""The embedding index of the train split: nearest past pairs for prompts, and the retrieval baseline.

Built once by the `index` stage (MiniLM vectors of the train split's customer texts) and read by
training (examples for each train pair, never from its own conversation), evaluation and serving
(examples from the train split only). The baseline answers with the reply of the nearest pair."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RetrievalParams
from ..errors import RetrievalIndexError

VECTORS, PAIRS, MANIFEST = "vectors.npy", "pairs.parquet", "manifest.json"
COLUMNS = ["pair_id", "conversation_id", "brand", "customer", "reply"]


def frame_hash(df: pd.DataFrame) -> str:
    """Content hash of the indexed columns (the same pairs give the same hash, whatever the file)."""
    return hashlib.sha256(pd.util.hash_pandas_object(df[COLUMNS], index=False).to_numpy().tobytes()).hexdigest()[:16]


def embed(embedder, texts: list[str]) -> np.ndarray:
    return embedder.encode(texts, normalize_embeddings=True, batch_size=64, convert_to_numpy=True).astype(np.float32)


def build_index(train: pd.DataFrame, embedder, out_dir: str | Path, embedder_id: str) -> dict:
    """Embed the train split's customer texts and write vectors, pairs and a manifest to `out_dir`."""
    if train.empty:
        raise RetrievalIndexError(
            "the train split is empty: nothing to index (check metrics/split.json, then `dvc repro split`)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = train[COLUMNS].reset_index(drop=True)
    vectors = embed(embedder, pairs["customer"].tolist())
    np.save(out / VECTORS, vectors)
    pairs.to_parquet(out / PAIRS, index=False)
    manifest = {
        "pairs": len(pairs),
        "dim": int(vectors.shape[1]),
        "train_hash": frame_hash(pairs),
        "embedder": embedder_id,
        "brands": {b: int(n) for b, n in pairs["brand"].value_counts().sort_index().items()},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass(frozen=True)
class Examples:
    """Past pairs shown in a prompt, nearest first. `source`: `same_brand`, or `other_brands` when the
    brand has no usable pair (an unseen brand, or only pairs of the message's own conversation)."""
    pairs: tuple[tuple[str, str], ...]  # (customer, reply)
    source: str = "same_brand"
    pair_ids: tuple[int, ...] = ()


NO_EXAMPLES = Examples(())


class ExampleIndex:
    def __init__(self, folder: str | Path, train: pd.DataFrame | None = None, embedder_id: str | None = None):
        """Load the index; with `train` (and `embedder_id`), refuse an index built from other data or another
        embedder."""
        folder = Path(folder)
        if not (folder / MANIFEST).exists() or not (folder / VECTORS).exists():
            raise RetrievalIndexError(f"{folder} holds no embedding index: run `dvc repro index`")
        self.manifest = json.loads((folder / MANIFEST).read_text())
        self.pairs = pd.read_parquet(folder / PAIRS)
        self.vectors = np.load(folder / VECTORS)
        if self.pairs.empty or len(self.vectors) != len(self.pairs):
            raise RetrievalIndexError(
                f"{folder} is empty or damaged ({len(self.pairs)} pairs, {len(self.vectors)} vectors): "
                "run `dvc repro -f index`"
            )
        if train is not None and frame_hash(train) != self.manifest["train_hash"]:
            raise RetrievalIndexError(
                f"{folder} was built from another train split (hash {self.manifest['train_hash']}, "
                f"this split {frame_hash(train)}): run `dvc repro index`"
            )
        if embedder_id is not None and self.manifest["embedder"] != embedder_id:
            raise RetrievalIndexError(
                f"{folder} was built with embedder {self.manifest['embedder']}, not {embedder_id}: "
                "run `dvc repro -f index`"
            )
        self.brands = self.pairs["brand"].to_numpy()
        self.conversations = self.pairs["conversation_id"].to_numpy()
        self.row_of_pair = {int(p): i for i, p in enumerate(self.pairs["pair_id"])}

    def nearest(self, queries: np.ndarray, brands: list[str], k: int,
                exclude_conversations: list | None = None) -> list[tuple[np.ndarray, str]]:
        """Row indices of the `k` nearest pairs of each query's brand (fewer if the brand has fewer), and
        their source. Pairs of an excluded conversation are never returned; a brand with no pair left
        takes the nearest pairs of any brand."""
        sims = queries @ self.vectors.T
        out = []
        for i, brand in enumerate(brands):
            allowed = np.ones(len(self.pairs), dtype=bool)
            if exclude_conversations is not None:
                allowed &= self.conversations != exclude_conversations[i]
            same = allowed & (self.brands == brand)
            pool, source = (same, "same_brand") if same.any() else (allowed, "other_brands")
            row = np.where(pool, sims[i], -np.inf)
            top = np.argsort(-row, kind="stable")[: min(k, int(pool.sum()))]
            out.append((top, source))
        return out

    def _examples(self, queries: np.ndarray, brands: list[str], params: RetrievalParams,
                  exclude_conversations: list | None = None) -> list[Examples]:
        if params.k == 0:
            return [NO_EXAMPLES] * len(brands)
        n = params.max_example_chars
        cut = lambda t: t if len(t) <= n else t[:n].rstrip() + "…"
        out = []
        for rows, source in self.nearest(queries, brands, params.k, exclude_conversations):
            pairs = tuple(
                (cut(self.pairs.at[r, "customer"]) if params.fields == "pair" else "", cut(self.pairs.at[r, "reply"]))
                for r in rows
            )
            out.append(Examples(pairs, source, tuple(int(self.pairs.at[r, "pair_id"]) for r in rows)))
        return out

    def examples(self, embedder, texts: list[str], brands: list[str], params: RetrievalParams,
                 exclude_conversations: list | None = None) -> list[Examples]:
        """The past pairs to show with each message (`params`: params.retrieval); nothing is embedded for k=0."""
        if params.k == 0:
            return [NO_EXAMPLES] * len(brands)
        return self._examples(embed(embedder, texts), brands, params, exclude_conversations)

    def examples_and_references(self, embedder, texts: list[str], brands: list[str], params: RetrievalParams,
                                references: int) -> tuple[list[Examples], list[list[str]]]:
        """The examples of each message's prompt (`examples`) and the full replies of its `references` nearest past
        pairs (the prompt's examples first), which reranked candidates are compared with (reranking.py). One search
        for both; without examples (k = 0) there is no retrieval, and no references either."""
        if params.k == 0:
            return [NO_EXAMPLES] * len(brands), [[] for _ in brands]
        found = self._examples(
            embed(embedder, texts), brands, params.model_copy(update={"k": max(params.k, references)})
        )
        examples = [Examples(e.pairs[: params.k], e.source, e.pair_ids[: params.k]) for e in found]
        replies = [[str(self.pairs.at[self.row_of_pair[p], "reply"]) for p in e.pair_ids[:references]] for e in found]
        return examples, replies

    def examples_for_train(self, pairs: pd.DataFrame, params: RetrievalParams) -> list[Examples]:
        """Examples for pairs of the indexed split itself (training): their stored vectors are the
        queries, and a pair never sees itself or any pair of its own conversation."""
        missing = [p for p in pairs["pair_id"] if int(p) not in self.row_of_pair]
        if missing:
            raise RetrievalIndexError(
                f"{len(missing)} train pairs (e.g. pair {missing[0]}) are not in the index: run `dvc repro index`"
            )
        queries = self.vectors[[self.row_of_pair[int(p)] for p in pairs["pair_id"]]]
        return self._examples(queries, pairs["brand"].tolist(), params, pairs["conversation_id"].tolist())


class RetrievalBaseline:
    """No LLM: the reply of the most similar train message of the same brand (any brand if it has none)."""

    def __init__(self, index: ExampleIndex, embedder):
        self.index, self.embedder = index, embedder

    def reply(self, brands: list[str], customers: list[str]) -> list[str]:
        found = self.index.nearest(embed(self.embedder, customers), brands, 1)
        return [str(self.index.pairs.at[int(rows[0]), "reply"]) for rows, _ in found]
