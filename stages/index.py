"""DVC stage `index`: MiniLM embeddings of the train split, reused by training, evaluation and serving."""
from pathlib import Path

import pandas as pd
from _common import run

from supportagent.models import embedder_id, load_embedder
from supportagent.retrieval import build_index

TRAIN, OUT = Path("data/processed/train.parquet"), Path("models/index")


def main() -> None:
    manifest = build_index(pd.read_parquet(TRAIN), load_embedder(), OUT, embedder_id())
    print(f"indexed {manifest['pairs']} train pairs ({manifest['dim']} dims) -> {OUT}: {manifest['brands']}")


if __name__ == "__main__":
    run(main)
