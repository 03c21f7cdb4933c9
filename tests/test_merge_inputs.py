"""Bad inputs fail with a clear error and no output; an interrupted merge publishes nothing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from m2rl.jobs.merge import merge
from m2rl.jobs.merge.stio import InputError
from m2rl.jobs.merge.synthetic import build_base, derive_task_model


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    base = build_base(root / "base", "qwen3", vocab_size=256, hidden=64, seed=0)
    return root, base, {d: derive_task_model(base, root / d, seed=i + 1) for i, d in enumerate(["math", "code"])}


def _variant(good, tmp_path, edit_tensors=None, edit_dir=None):
    """A copy of the `code` model with its tensors (dict -> dict) or its dir edited."""
    _, _, tasks = good
    d = tmp_path / "bad"
    shutil.copytree(tasks["code"], d)
    if edit_tensors:
        sd = edit_tensors(load_file(d / "model.safetensors"))
        save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    if edit_dir:
        edit_dir(d)
    return d


def _assert_fails_cleanly(good, tmp_path, bad, match, **kw):
    _, base, tasks = good
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match) as err:
        merge(base, {"math": tasks["math"], "code": bad}, out, kw.pop("method", "ties"), **kw)
    assert err.value.field == "merge.models.code"  # the config field that names the culprit
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*")), "a temp dir was left behind"


def test_another_architecture(good, tmp_path):
    bad = build_base(tmp_path / "llama", "llama", vocab_size=256, hidden=64)
    _assert_fails_cleanly(good, tmp_path, bad, r"another architecture.*model_type: base 'qwen3', model 'llama'")


def test_a_resized_vocabulary(good, tmp_path):
    def grow(d):
        cfg = json.loads((d / "config.json").read_text())
        cfg["vocab_size"] = 300
        (d / "config.json").write_text(json.dumps(cfg))
    bad = _variant(good, tmp_path, lambda sd: {**sd, "model.embed_tokens.weight": torch.zeros(300, 64)}, grow)
    _assert_fails_cleanly(good, tmp_path, bad, r"vocab_size: base 256, model 300")


def test_a_tensor_of_another_shape(good, tmp_path):
    bad = _variant(good, tmp_path, lambda sd: {**sd, "model.layers.1.mlp.up_proj.weight": torch.zeros(64, 64)})
    _assert_fails_cleanly(good, tmp_path, bad, r"model.layers.1.mlp.up_proj.weight has shape \[64, 64\], the base has \[128, 64\]")


def test_another_vocabulary_of_the_same_size(good, tmp_path):
    def swap(d):
        tok = json.loads((d / "tokenizer.json").read_text())
        vocab = tok["model"]["vocab"]
        vocab["w10"], vocab["w11"] = vocab["w11"], vocab["w10"]
        (d / "tokenizer.json").write_text(json.dumps(tok))
    _assert_fails_cleanly(good, tmp_path, _variant(good, tmp_path, edit_dir=swap), r"different vocabulary")


def test_a_missing_tensor(good, tmp_path):
    bad = _variant(good, tmp_path, lambda sd: {k: v for k, v in sd.items() if k != "model.norm.weight"})
    _assert_fails_cleanly(good, tmp_path, bad, r"lacks 1 tensor\(s\) of the base, e.g. model.norm.weight")


def test_an_untied_head_in_a_tied_model(good, tmp_path):
    bad = _variant(good, tmp_path, lambda sd: {**sd, "lm_head.weight": sd["model.embed_tokens.weight"].clone()})
    _assert_fails_cleanly(good, tmp_path, bad, r"tensor\(s\) the base lacks, e.g. lm_head.weight \(tied vs untied")


def test_a_truncated_file(good, tmp_path):
    def cut(d):
        f = d / "model.safetensors"
        os.truncate(f, f.stat().st_size - 100)
    _assert_fails_cleanly(good, tmp_path, _variant(good, tmp_path, edit_dir=cut), r"is truncated")


def test_no_safetensors_weights(good, tmp_path):
    def to_bin(d):
        torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
        (d / "model.safetensors").unlink()
    _assert_fails_cleanly(good, tmp_path, _variant(good, tmp_path, edit_dir=to_bin),
                          r"no safetensors weights \(found pytorch_model.bin")


@pytest.mark.parametrize("method", ["task_arithmetic", "ties"])
def test_a_non_finite_value_fails_before_anything_is_published(good, tmp_path, method):
    # the NaN sits in the last tensor merged, so earlier tensors were already streamed out
    def poison(sd):
        sd["model.norm.weight"][7] = float("nan")
        return sd
    bad = _variant(good, tmp_path, poison)
    _assert_fails_cleanly(good, tmp_path, bad, r"model code .*model.norm.weight has 1 non-finite value\(s\), "
                          r"the first at flat index 7", method=method)


def test_a_failed_merge_leaves_an_earlier_output_untouched(good, tmp_path):
    _, base, tasks = good
    out = tmp_path / "out"
    merge(base, tasks, out, "task_arithmetic")
    before = (out / "model.safetensors").read_bytes()
    bad = _variant(good, tmp_path, lambda sd: {**sd, "model.norm.weight": torch.full((64,), float("inf"))})
    with pytest.raises(InputError):
        merge(base, {"math": tasks["math"], "code": bad}, out, "ties")
    assert (out / "model.safetensors").read_bytes() == before


def test_a_stop_request_publishes_nothing(good, tmp_path):
    from m2rl.jobs.merge.engine import Stopped

    _, base, tasks = good
    calls = []
    with pytest.raises(Stopped):
        merge(base, tasks, tmp_path / "out", "ties", should_stop=lambda: calls.append(1) or len(calls) > 5)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


KILLED = textwrap.dedent("""
    import os, signal, sys
    from m2rl.jobs.merge import merge
    calls = []
    def stop():  # SIGKILL this process between two tensors of the final pass
        calls.append(1)
        if len(calls) == 10:
            os.kill(os.getpid(), signal.SIGKILL)
        return False
    merge(sys.argv[1], {"math": sys.argv[2], "code": sys.argv[3]}, sys.argv[4], "task_arithmetic",
          shard_mb=0.05, should_stop=stop)
""")


def test_a_killed_merge_leaves_no_complete_looking_output_and_a_rerun_cleans_up(good, tmp_path):
    _, base, tasks = good
    out = tmp_path / "out"
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    proc = subprocess.run([sys.executable, str(script), str(base), str(tasks["math"]), str(tasks["code"]), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not out.exists()
    (left,) = tmp_path.glob(".out.tmp-*")
    assert list(left.glob("*.safetensors")), "the kill should have come mid-write"
    assert not (left / "config.json").exists() and not (left / "model.safetensors.index.json").exists()
    merge(base, tasks, out, "task_arithmetic", shard_mb=0.05)
    assert (out / "model.safetensors.index.json").is_file() and not list(tmp_path.glob(".out.tmp-*"))
