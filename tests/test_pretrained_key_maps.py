"""State-dict conversion both ways for every format: foreign -> cliplab -> foreign and cliplab ->
foreign -> cliplab are identities on real state dicts (open_clip's, transformers'), the q/k/v and
projection layouts are the documented ones, and mismatches are listed, never loaded partially.
(Names and shapes against open_clip for all 58 built-ins: test_models_open_clip_config.py.)"""

import pytest
import torch

from cliplab.models import build_model
from cliplab.models.open_clip_config import config_from_open_clip
from cliplab.pretrained.hf_config import config_from_hf
from cliplab.pretrained.hf_keys import hf_clip_rules, hf_siglip_rules
from cliplab.pretrained.key_maps import (StateDictMismatchError, check_state_dict, from_cliplab, groups_for, rule,
                                         to_cliplab)
from cliplab.pretrained.open_clip_keys import open_clip_rules, open_clip_text_prefix
from reference_libraries import open_clip_model, randomize_
from test_pretrained_hf_config import hf_clip, hf_siglip
from test_pretrained_loaders import CASES


def assert_same_tensors(first, second):
    assert list(first) == list(second)
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("name", ["vit", "resnet", "coca", "layer_scale_eos_bias"])
def test_open_clip_both_ways(name):
    config = config_from_open_clip(CASES[name])
    rules = open_clip_rules(config, open_clip_text_prefix(config))
    theirs = randomize_(open_clip_model(CASES[name]), seed=1).state_dict()
    ours = to_cliplab(theirs, build_model(config).state_dict(), rules, name)
    back = from_cliplab(ours, rules)
    assert sorted(back) == sorted(theirs)
    for key, tensor in theirs.items():
        assert torch.equal(back[key], tensor), key
    assert_same_tensors(to_cliplab(from_cliplab(ours, rules), ours, rules, name), ours)


@pytest.mark.parametrize("reference, rules_for", [(hf_clip, hf_clip_rules), (hf_siglip, hf_siglip_rules)])
def test_hugging_face_both_ways(reference, rules_for):
    model = reference()
    config = config_from_hf(model.config.to_dict())
    rules = rules_for(config)
    theirs = model.state_dict()
    ours = to_cliplab(theirs, build_model(config).state_dict(), rules, "hf")
    back = from_cliplab(ours, rules)
    assert sorted(back) == sorted(theirs)
    for key, tensor in theirs.items():
        assert torch.equal(back[key], tensor), key


def test_layouts_qkv_concatenation_in_proj_split_and_transposed_projections():
    model = hf_clip()
    config = config_from_hf(model.config.to_dict())
    theirs = model.state_dict()
    ours = to_cliplab(theirs, build_model(config).state_dict(), hf_clip_rules(config), "hf")
    attention = "text_model.encoder.layers.1.self_attn."
    assert torch.equal(ours["text_tower.transformer.blocks.1.attn.qkv.weight"],
                       torch.cat([theirs[attention + f"{part}_proj.weight"] for part in "qkv"]))
    coca = config_from_open_clip(CASES["coca"])
    theirs = randomize_(open_clip_model(CASES["coca"]), seed=2).state_dict()
    ours = to_cliplab(theirs, build_model(coca).state_dict(), open_clip_rules(coca, "text."), "coca")
    in_proj = theirs["text_decoder.cross_attn.0.attn.in_proj_weight"]  # [3W, W]
    cross = "decoder.transformer.blocks.0.cross_block.cross_attn."
    assert torch.equal(ours[cross + "query.weight"], in_proj[:32])
    assert torch.equal(ours[cross + "key_value.weight"], in_proj[32:])
    assert torch.equal(ours["image_projection.weight"], theirs["visual.proj"].T)
    assert torch.equal(ours["decoder.lm_head.weight"], theirs["text_decoder.text_projection"].T)


def test_groups_and_unmatched_names():
    rules = [rule(r"a\.(\d)", "x.{0}"), rule(r"q|k", "packed")]
    groups = groups_for(["a.1", "q", "k"], rules)
    assert [(group.ours, group.theirs) for group in groups] == [(("a.1",), ("x.1",)), (("q", "k"), ("packed",))]
    with pytest.raises(ValueError, match="no foreign name for cliplab tensor 'z'"):
        groups_for(["z"], rules)


def test_mismatch_lists_every_kind_with_counts_and_tolerates_one_element_shapes():
    expected = {f"w{index}": torch.zeros(2) for index in range(10)} | {"scale": torch.zeros(())}
    loaded = {"scale": torch.zeros(1), "w0": torch.zeros(3), "extra": torch.zeros(1)}
    with pytest.raises(StateDictMismatchError) as caught:
        check_state_dict(expected, loaded, "file.bin")
    message = str(caught.value)
    assert message.startswith("file.bin does not match the architecture: 9 missing: w1 [2], ")
    assert "w8 [2] and 1 more; 1 unexpected: extra [1]; 1 mis-shaped: w0 is [3], expected [2]" in message
    assert "scale" not in message
