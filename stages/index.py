"""DVC stage `index`: MiniLM embeddings of the train split, reused by training, evaluation and serving."""
import pandas as pd
from _common import arguments, run

from supportagent.data.retrieval import build_index
from supportagent.model.models import embedder_id, load_embedder


def main() -> None:
    a = arguments(__doc__, "train", "out")
    manifest = build_index(pd.read_parquet(a.train), load_embedder(), a.out, embedder_id())
    print(f"indexed {manifest['pairs']} train pairs ({manifest['dim']} dims) -> {a.out}: {manifest['brands']}")


if __name__ == "__main__":
    run(main)
