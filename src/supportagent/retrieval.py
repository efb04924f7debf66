"""Retrieval baseline (no LLM): answer with the reply to the most similar training message of the brand."""
from __future__ import annotations

import numpy as np
import pandas as pd


class RetrievalBaseline:
    def __init__(self, train: pd.DataFrame, embedder):
        if train.empty:
            raise ValueError("the retrieval baseline needs a non-empty train split")
        self.embedder = embedder
        self.brands = train["brand"].to_numpy()
        self.replies = train["reply"].to_numpy()
        self.vectors = embedder.encode(train["customer"].tolist(), normalize_embeddings=True, batch_size=64,
                                       convert_to_numpy=True)

    def reply(self, brands: list[str], customers: list[str]) -> list[str]:
        queries = self.embedder.encode(customers, normalize_embeddings=True, batch_size=64, convert_to_numpy=True)
        sims = queries @ self.vectors.T
        same = self.brands[None, :] == np.asarray(brands)[:, None]
        sims = np.where(same.any(axis=1, keepdims=True) & ~same, -np.inf, sims)  # prefer the same brand
        return [str(self.replies[i]) for i in sims.argmax(axis=1)]
