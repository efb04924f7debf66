"""Do the project's prompts reach Mistral-7B-Instruct-v0.3 as Mistral's own library encodes them?

Every test-split message is turned into a training example by the project's code (rules, tags, retrieved examples,
previous turn, `prompts.encode`) with the stand-in's tokenizer and chat template, and compared token for token
with `mistral_common`'s `encode_chat_completion` of the same system, user and assistant messages; the labels must
cover exactly the reply and its end token.

    python benchmarks/standin_format.py      # after `dvc repro index`; a record in benchmarks/results/standin_format/
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from supportagent.reporting import records

ROOT = Path(__file__).resolve().parents[1]

NO_LIMIT = 100_000  # token limits high enough that nothing is cut: the whole example is compared


@functools.lru_cache(maxsize=1)
def _reference():
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from supportagent.model.standin import tokenizer_file

    return MistralTokenizer.from_file(str(tokenizer_file()), mode=ValidationMode.finetuning)


def mistral_common_ids(messages: list[dict]) -> list[int]:
    """Token ids of system/user(/assistant) messages as Mistral's reference library encodes them for training."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    return _reference().encode_chat_completion(ChatCompletionRequest(
        messages=[kinds[m["role"]](content=m["content"]) for m in messages])).tokens


def compare(tokenizer, messages: list[dict]) -> dict:
    """The project's encoding of one training example against the reference: ids equal, labels on the reply."""
    from supportagent.data.prompts import encode

    ours = encode(tokenizer, messages, NO_LIMIT, NO_LIMIT)
    ref = mistral_common_ids(messages)
    inst_end = len(ref) - 1 - ref[::-1].index(tokenizer.convert_tokens_to_ids("[/INST]"))
    learned = [t for t in ours.labels if t != -100]
    return {"ids_equal": ours.input_ids == ref, "labels_are_the_reply": learned == ref[inst_end + 1:],
            "ends_with_eos": learned[-1:] == [tokenizer.eos_token_id], "tokens": len(ref)}


def project_messages(params, pairs, examples) -> list[list[dict]]:
    """The training examples' chat messages as the train stage builds them (rules, tags, examples, previous turn)."""
    from supportagent.data.prompts import build_messages
    from supportagent.data.rules import apply_rules

    return [
        build_messages(
            params.model.system_prompt,
            r.brand,
            r.customer,
            apply_rules(r.customer, params.rules, r.context),
            r.context,
            r.reply,
            ex,
        )
        for r, ex in zip(pairs.itertuples(index=False), examples)
    ]


def main() -> None:
    import pandas as pd

    from supportagent.config import load_params
    from supportagent.model.models import load_embedder, embedder_id
    from supportagent.paths import pipeline_paths
    from supportagent.data.retrieval import ExampleIndex
    from supportagent.model.standin import load_v3_tokenizer

    params, paths = load_params(ROOT / "params.yaml"), pipeline_paths(ROOT / "dvc.yaml")
    test = pd.read_parquet(ROOT / paths["splits"] / "test.parquet")
    index = ExampleIndex(
        ROOT / paths["index"], pd.read_parquet(ROOT / paths["splits"] / "train.parquet"), embedder_id()
    )
    examples = index.examples(load_embedder(), test["customer"].tolist(), test["brand"].tolist(), params.retrieval)
    tok = load_v3_tokenizer()
    rows = [compare(tok, m) for m in project_messages(params, test, examples)]
    with_context = int((test["context"] != "").sum())
    record = {
        "notes": "project prompts (tags, retrieved examples, previous turn) through the stand-in's tokenizer and chat "
                "template, against mistral_common's encode_chat_completion of the same messages",
        "examples": len(rows), "with_previous_turn": with_context,
        "ids_equal": sum(r["ids_equal"] for r in rows),
        "labels_are_the_reply": sum(r["labels_are_the_reply"] for r in rows),
        "ends_with_eos": sum(r["ends_with_eos"] for r in rows),
        "tokens_per_example_mean": round(sum(r["tokens"] for r in rows) / len(rows), 1),
        "retrieval": params.retrieval.model_dump(),
        "mistral_common": __import__("importlib.metadata").metadata.version("mistral-common"),
        "machine": records.cpu_facts(),
        "targets": [records.target("prompts whose ids equal mistral_common's", sum(r["ids_equal"] for r in rows),
                                   str(len(rows)))],
    }
    records.save("standin_format", record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
