"""DVC stage `base`: resolve model.base to safetensors and record its identity (params: model)."""
from _common import params, run

from supportagent.models import prepare_base

OUT = "models/base"


def main() -> None:
    p = params()
    manifest = prepare_base(p.model.base, p.model.revision, OUT)
    print(f"base {manifest['base']} ({manifest['source']}) -> {OUT}")


if __name__ == "__main__":
    run(main)
