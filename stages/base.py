"""DVC stage `base`: resolve model.base to safetensors and record its identity (params: model)."""
from _common import arguments, params, run

from supportagent.model.bases import prepare_base


def main() -> None:
    a = arguments(__doc__, "out")
    p = params()
    manifest = prepare_base(p.model.base, p.model.revision, a.out)
    print(f"base {manifest['base']} ({manifest['source']}) -> {a.out}")


if __name__ == "__main__":
    run(main)
