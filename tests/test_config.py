import pytest
import yaml

from supportagent.config import METHODS, ParamsError, load_params, read_raw

from conftest import ROOT


def test_params_yaml_loads_and_is_complete():
    p = load_params(ROOT / "params.yaml")
    assert p.method in METHODS
    assert abs(p.split.train + p.split.val + p.split.test - 1) < 1e-9
    assert set(p.rules.intents) and p.rules.default_intent not in p.rules.intents


def _write(tmp_path, mutate):
    raw = read_raw(ROOT / "params.yaml")
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, lambda r: r["train"]["qlora"].update(lora_rank=8))
    with pytest.raises(ParamsError, match=r"train\.qlora\.lora_rank: unknown key"):
        load_params(path)


def test_mistyped_value_is_named(tmp_path):
    path = _write(tmp_path, lambda r: r["evaluate"].update(test_size="many"))
    with pytest.raises(ParamsError, match=r"evaluate\.test_size"):
        load_params(path)


def test_split_must_sum_to_one(tmp_path):
    path = _write(tmp_path, lambda r: r["split"].update(train=0.9))
    with pytest.raises(ParamsError, match="must be 1"):
        load_params(path)


def test_unknown_method_is_rejected(tmp_path):
    path = _write(tmp_path, lambda r: r.update(method="full_finetune"))
    with pytest.raises(ParamsError, match="method"):
        load_params(path)


def test_missing_file_says_where(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_full_config_merges_onto_params_and_validates():
    default = load_params(ROOT / "params.yaml")
    full = load_params(ROOT / "params.yaml", overrides=ROOT / "configs/full.yaml")
    assert full.subset.max_pairs_per_brand == 0 and full.train.qlora.epochs > default.train.qlora.epochs
    assert full.rules == default.rules  # untouched groups come from params.yaml
    # nested groups merge key by key: the file's keys change, the group's other keys stay params.yaml's
    assert full.train.qlora.lora_r != default.train.qlora.lora_r
    assert full.train.qlora.target_modules == default.train.qlora.target_modules
    assert full.train.qlora.lora_dropout == default.train.qlora.lora_dropout


def test_override_with_unknown_key_names_the_overrides_file(tmp_path):
    bad = tmp_path / "full.yaml"
    bad.write_text("train:\n  qlora:\n    epoch: 3\n")
    with pytest.raises(ParamsError, match=r"(?s)full\.yaml.*train\.qlora\.epoch: unknown key"):
        load_params(ROOT / "params.yaml", overrides=bad)


@pytest.mark.parametrize(
    "mutate, named",
    [
        (lambda r: r["retrieval"].update(k=-1), r"retrieval\.k"),
        (lambda r: r["retrieval"].update(fields="customer"), r"retrieval\.fields"),
        (
            lambda r: r["brands"]["AppleSupport"].update(support_link="https://x"),
            r"brands\.AppleSupport\.support_link: unknown key",
        ),
        # a malformed link, contact or fallback reply is refused when params load, not when a reply is sent
        (
            lambda r: r["brands"]["AppleSupport"].update(support_url="support.apple.com"),
            r"AppleSupport.*http\(s\) link",
        ),
        (lambda r: r["brands"]["AppleSupport"].update(help_url="ftp://support.apple.com"), r"AppleSupport.*help_url"),
        (lambda r: r["brands"].update(NewBrand={"help_url": "https://help.example.com"}),
         r"NewBrand.*without support_url"),
        (lambda r: r["brands"]["AmazonHelp"].update(contacts=["call us"]), r"AmazonHelp.*'call us' is no phone number"),
        (lambda r: r["brands"]["Uber_Support"].update(fallback="Hi {name}, see {url}"), r"Uber_Support.*placeholder"),
        (lambda r: r["brands"]["Uber_Support"].update(fallback="x" * 281), r"Uber_Support.*280 characters"),
        (lambda r: r["brands"].update(NewBrand={"fallback": "Go to {url}"}), r"NewBrand.*only where support_url"),
    ],
)
def test_retrieval_and_brand_keys_are_checked_by_name(tmp_path, mutate, named):
    with pytest.raises(ParamsError, match=named):
        load_params(_write(tmp_path, mutate))


def test_every_selected_brand_has_a_link_for_served_replies():
    """The default brands' `<url>` masks are filled, not dropped (placeholders.py's fallback is for other brands)."""
    import json

    p = load_params(ROOT / "params.yaml")
    brands = json.loads((ROOT / "metrics/data.json").read_text())["pairs_per_brand"]
    assert all(p.brands[b].support_url.startswith("https://") for b in brands)


@pytest.mark.parametrize("name, override", [("params.yaml", "method=prompt_tuning"), ("params.yaml", "retrieval.k=3"),
                                            ("policy.yaml", "rules.caps_boost=11"),
                                            ("policy.yaml", "brands.AppleSupport.support_url=https://apple.com")])
def test_dvc_exp_run_set_keeps_every_comment(tmp_path, name, override):
    """`dvc exp run -S key=value` rewrites the file through DVC's own override code, which drops a comment that
    follows a list or ends a list item's line: none is placed where it would go, so only the set line changes."""
    import shutil

    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / name
    shutil.copy(ROOT / name, copy)
    apply_overrides(copy, [override])
    before, after = (ROOT / name).read_text().splitlines(), copy.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1, changed
    assert changed[0][1].strip().startswith(override.split("=")[0].split(".")[-1] + ":")


def test_params_yaml_shows_the_experiments_knobs_on_one_screen():
    """The knobs in params.yaml (at most 120 lines); the policy's keyword lists in policy.yaml, merged on load, each
    key in one file."""
    import yaml as pyyaml

    assert len((ROOT / "params.yaml").read_text().splitlines()) <= 120
    params, policy = (pyyaml.safe_load((ROOT / n).read_text()) for n in ("params.yaml", "policy.yaml"))
    assert set(policy) == {"rules", "brands"} and not set(params) & set(policy)
    assert set(read_raw(ROOT / "params.yaml")) == set(params) | set(policy)


def test_a_key_in_both_files_is_refused(tmp_path):
    import shutil

    shutil.copy(ROOT / "policy.yaml", tmp_path / "policy.yaml")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text() + "brands: {}\n")
    with pytest.raises(ParamsError, match="brands set in both"):
        read_raw(tmp_path / "params.yaml")


def test_params_yaml_is_in_the_format_dvc_writes(tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml with DVC's YAML dumper: in that format already, the
    file changes only in the line of the key that was set."""
    import shutil

    from dvc.utils.serialize import modify_yaml

    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    with modify_yaml(copy) as d:
        other = next(m for m in METHODS if m != d["method"])
        d["method"] = other
        d["retrieval"]["k"] += 1
    before, after = (ROOT / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()
    changed = [b for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and changed == [f"method: {other}", f"  k: {d['retrieval']['k']}"], changed


def _drift(model_cls, data: dict, path: str = "") -> list:
    """(key, schema default, params.yaml value) wherever params.yaml sets a value other than the default."""
    from pydantic import BaseModel

    out = []
    for name, field in model_cls.model_fields.items():
        sub = (
            field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        )
        if name not in data:
            assert not field.is_required(), f"params.yaml lacks the required key {path}{name}"
            continue
        if sub is not None:
            out += _drift(sub, data[name], f"{path}{name}.")
        elif not field.is_required():
            default = field.get_default(call_default_factory=True)
            if default != data[name]:
                out.append((path + name, default, data[name]))
    return out


def test_schema_defaults_are_the_values_of_params_yaml():
    from supportagent.config import Params

    assert _drift(Params, read_raw(ROOT / "params.yaml")) == []


def test_each_method_accepts_only_its_own_keys():
    raw = read_raw(ROOT / "params.yaml")
    raw["train"]["prompt_tuning"]["lora_r"] = 4
    with pytest.raises(ParamsError, match=r"train\.prompt_tuning\.lora_r"):
        load_params_from(raw)
    raw = read_raw(ROOT / "params.yaml")
    raw["train"]["qlora"]["num_virtual_tokens"] = 8
    with pytest.raises(ParamsError, match=r"train\.qlora\.num_virtual_tokens"):
        load_params_from(raw)


def load_params_from(raw: dict):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "params.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_params(path)


@pytest.mark.parametrize("config, least", [("full.yaml", 10), ("mistral_7b.yaml", 4)])
def test_exp_args_reproduce_an_overrides_file_through_dvc(tmp_path, capsys, config, least):
    """`dvc exp run $(python -m supportagent exp-args configs/<file>)` sets exactly the merged params that
    `load_params(params.yaml, configs/<file>)` builds: the -S list applied by DVC's own override code."""
    import shlex
    import shutil

    from dvc.utils.hydra import apply_overrides

    from supportagent.__main__ import main

    main(["exp-args", str(ROOT / "configs" / config)])
    args = shlex.split(capsys.readouterr().out)
    overrides = [a for a in args if a != "-S"]
    assert len(overrides) == args.count("-S") >= least
    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    shutil.copy(ROOT / "policy.yaml", tmp_path / "policy.yaml")
    for name in ("params.yaml", "policy.yaml"):  # DVC's `-S policy.yaml:key=value` names the file
        apply_overrides(tmp_path / name, [o.split(":", 1)[1] if o.startswith(name + ":") else o for o in overrides
                                          if o.startswith("policy.yaml:") == (name == "policy.yaml")])
    assert load_params(copy) == load_params(ROOT / "params.yaml", ROOT / "configs" / config)
