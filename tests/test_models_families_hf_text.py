"""Tower family "hf_text" against open_clip 3.3.0 (its HFTextEncoder) and transformers, offline: small
models of every model type open_clip knows, with random weights, give open_clip's text features
through the family's key rules in both directions (fp32, eval, 1e-5 relative); an open_clip hub
directory of xlm-roberta-base-ViT-B-32 with a small XLM-R config loads with open_clip's features and
tokenizer ids and exports back; CoCa (coca_roberta) and nllb-clip-base-siglip equal open_clip's;
locking freezes what open_clip's lock freezes; the HF config and weights are found, or named, as the
family says; without transformers the tower is one line naming the extra."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

import cliplab
from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.data.tokenizer_files import load_tokenizer
from cliplab.distributed.launch import run_on_workers
from cliplab.distributed.shard_init import ShardedInit, shard_rows
from cliplab.errors import MissingModelFilesError, UnsupportedArchitectureError, UserError
from cliplab.losses import ClipLoss
from cliplab.models import build_model, create_model, list_models
from cliplab.models.families import family_of
from cliplab.models.families.hf_text import HfTextConfig
from cliplab.models.meta_build import initialisers_on_meta
from cliplab.models.open_clip_config import builtin_open_clip_config, config_from_open_clip, config_to_open_clip
from cliplab.pretrained.key_maps import from_cliplab, to_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules
from cliplab.train import TrainHooks, train
from data_fixtures import make_manifest
from finetune_fixtures import assert_fine_tune_resumes_exactly, finetune_config
from hf_text_fixtures import (SMALL_CONFIGS, hf_config, random_corpus, use_cache, write_cache, write_hf_config,
                              write_t5_sentencepiece_dir, write_tokenizers)
from reference_libraries import (assert_relative_close, open_clip, open_clip_model, parameter_count, randomize_,
                                 reference_mode, transformers, write_open_clip_hub)
from tokenizer_fixtures import ADVERSARIAL_TEXTS
from train_helpers import assert_same_final_checkpoint, logged_losses, sigkill_after_a_checkpoint

torch.set_num_threads(2)
SMALL_VISION = {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16}
TEXTS = (["a photo of a dog", "", "  Ein Foto   von einem Hund ", "犬の写真 café", "x " * 100]
         + random_corpus(3, seed=9))


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """model type -> a directory holding the small config.json (and, for the four types of the ten
    configs, a small tokenizer of that model's class)."""
    root = tmp_path_factory.mktemp("hf_models")
    tokenizers = write_tokenizers(root / "tokenizers")
    directories = {}
    for model_type in ("roberta", "xlm-roberta", "bert", "mt5", "m2m_100"):
        directory = write_hf_config(root / model_type, model_type)
        for path in tokenizers.get(model_type, root / "none").glob("*"):
            shutil.copy(path, directory / path.name)
        directories[model_type] = directory
    return directories


def small_model_cfg(directory, *, embed_dim=16, **text_cfg) -> dict:
    return {"embed_dim": embed_dim, "vision_cfg": dict(SMALL_VISION),
            "text_cfg": {"hf_model_name": str(directory), "hf_tokenizer_name": str(directory),
                         "hf_model_pretrained": False, **text_cfg}}


def tokens_for(model_type: str, count: int = 4, length: int = 12) -> torch.Tensor:
    """Right-padded ids of the small model's vocabulary (pad ids of the real models)."""
    generator = torch.Generator().manual_seed(7)
    pad = hf_config(model_type).pad_token_id
    rows = torch.randint(3, 300, (count, length), generator=generator)
    for row, real in enumerate((length, 5, 1, 8)[:count]):
        rows[row, real:] = pad
    return rows


def assert_same_features(ours, theirs, model_type, images, normalize=False):
    """normalize: open_clip's CoCa encoders normalise by default (its CLIP's do not)."""
    tokens = tokens_for(model_type)
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.encode_text(tokens, normalize=normalize), theirs.encode_text(tokens))
        assert_relative_close(ours.encode_image(images, normalize=normalize), theirs.encode_image(images))
        assert torch.equal(ours.logit_scale, theirs.logit_scale)


IMAGES = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
VARIANTS = [("roberta", "mean_pooler", "mlp"), ("xlm-roberta", "mean_pooler", "mlp"), ("bert", "cls_pooler", "linear"),
            ("mt5", "mean_pooler", "mlp"), ("m2m_100", "cls_pooler", "linear"),
            ("xlm-roberta", "cls_last_hidden_state_pooler", None), ("roberta", "cls_pooler", "linear")]


@pytest.mark.parametrize("model_type, pooler, proj", VARIANTS)
def test_small_models_equal_open_clip_through_the_key_rules_both_ways(hf_dirs, model_type, pooler, proj):
    """open_clip's CustomTextCLIP with the small model (random weights, every tensor): cliplab's
    model given its state dict through the rules has its features; the rules give the state back."""
    embed_dim = 32 if proj is None else 16  # no projection: the model's width is the embedding
    model_cfg = small_model_cfg(hf_dirs[model_type], embed_dim=embed_dim, hf_pooler_type=pooler, hf_proj_type=proj)
    torch.manual_seed(0)
    reference = randomize_(open_clip_model(model_cfg), seed=3)
    config = config_from_open_clip(model_cfg)
    assert (config.text.pooler, config.text.projection) == (pooler, proj or "none")
    ours = build_model(config).eval()
    rules = open_clip_rules(config, "text.")
    theirs_state = reference.state_dict()
    ours.load_state_dict(to_cliplab(theirs_state, ours.state_dict(), rules, "open_clip"))
    back = from_cliplab(ours.state_dict(), rules)
    assert sorted(back) == sorted(theirs_state) and all(torch.equal(back[name], theirs_state[name]) for name in back)
    assert parameter_count(ours) == parameter_count(reference)
    assert_same_features(ours, reference, model_type, IMAGES)
    with torch.no_grad():  # open_clip's text tokens: the model's last hidden state, every position
        hidden = ours.text_tower.forward_tokens(tokens_for(model_type))
        reference.text.output_tokens = True
        reference_tokens = reference.text(tokens_for(model_type))[1]
        if pooler != "cls_pooler":
            assert_relative_close(hidden, reference_tokens)


def test_an_open_clip_hub_directory_of_xlm_roberta_loads_equal_and_exports_back(hf_dirs, tmp_path):
    """xlm-roberta-base-ViT-B-32 (its own config, the text model a small local XLM-R, the image tower
    shrunk) as an open_clip hub directory with the model's tokenizer files: cliplab.load gives
    open_clip's features and tokenizer ids; its open_clip export, read by open_clip, the same."""
    directory = hf_dirs["xlm-roberta"]
    model_cfg = builtin_open_clip_config("xlm-roberta-base-ViT-B-32")
    model_cfg["vision_cfg"].update(SMALL_VISION)
    model_cfg["text_cfg"].update(hf_model_name=str(directory), hf_tokenizer_name=str(directory),
                                 hf_model_pretrained=False)
    hub = tmp_path / "hub"
    reference = write_open_clip_hub(hub, model_cfg, seed=0)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(directory / name, hub / name)
    model, _, tokenizer = cliplab.load(hub)
    theirs_tokenizer = open_clip().get_tokenizer(f"local-dir:{hub}")
    tokens = tokenizer(TEXTS)
    assert torch.equal(tokens, theirs_tokenizer(TEXTS))
    assert model.config.text.hf_model_pretrained is False  # the weights came from the checkpoint
    with torch.no_grad(), reference_mode():
        text_features, image_features = reference.encode_text(tokens), reference.encode_image(IMAGES)
        assert_relative_close(model.encode_text(tokens), text_features)
        assert_relative_close(model.encode_image(IMAGES), image_features)
        assert torch.equal(model.logit_scale, reference.logit_scale)
        exported = cliplab.export(model, tokenizer, tmp_path / "export", format="open_clip")
        assert json.loads((exported / "config.json").read_text()) == model.config.text.hf_config
        # The tokenizer keeps the tower's own name (what open_clip's hf-hub: reads), not the export's path.
        text_cfg = json.loads((exported / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
        assert text_cfg["hf_tokenizer_name"] == str(directory)
        again = open_clip().create_model(f"local-dir:{exported}",
                                         pretrained=f"{exported}/open_clip_model.safetensors").eval()
        assert_relative_close(again.encode_text(tokens), text_features)
        assert_relative_close(again.encode_image(IMAGES), image_features)
        captions = TEXTS + ADVERSARIAL_TEXTS
        assert torch.equal(open_clip().get_tokenizer(f"local-dir:{exported}")(captions), tokenizer(captions))
        reloaded, _, reloaded_tokenizer = cliplab.load(exported)
        assert reloaded.config == model.config and torch.equal(reloaded_tokenizer(captions), tokenizer(captions))


def test_coca_with_a_roberta_text_tower_equals_open_clip(hf_dirs):
    """coca_roberta-ViT-B-32 (small RoBERTa, small image tower and decoder): contrastive features and
    the decoder's caption logits equal open_clip's; its decoder predicts text_cfg.vocab_size ids."""
    directory = hf_dirs["roberta"]
    model_cfg = builtin_open_clip_config("coca_roberta-ViT-B-32")
    model_cfg.update(embed_dim=16, multimodal_cfg={"context_length": 76, "width": 32, "heads": 2, "layers": 2})
    model_cfg["vision_cfg"].update(SMALL_VISION)
    model_cfg["text_cfg"].update(hf_model_name=str(directory), hf_tokenizer_name=str(directory),
                                 hf_model_pretrained=False, width=32)
    torch.manual_seed(0)
    reference = randomize_(open_clip_model(model_cfg), seed=5)
    config = config_from_open_clip(model_cfg)
    assert config.kind == "coca" and config.decoder_vocab_size == 49408 and config.text.vocab_size == 300
    assert config_from_open_clip(config_to_open_clip(config)) == config
    ours = build_model(config).eval()
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), open_clip_rules(config, "text."),
                                    "open_clip"))
    assert_same_features(ours, reference, "roberta", IMAGES, normalize=True)
    tokens = tokens_for("roberta", count=3)
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours(IMAGES, tokens)["logits"], reference(IMAGES, tokens)["logits"])


def test_nllb_clip_base_siglip_equals_open_clip(hf_dirs):
    """nllb-clip-base-siglip: timm's SigLIP ViT (shrunk: 2 blocks of width 64 on 32-pixel images, as
    the timm_vit tests shrink it) and a small M2M100 encoder (first-token pooling, linear
    projection): features, logit scale and bias equal open_clip's."""
    model_cfg = builtin_open_clip_config("nllb-clip-base-siglip")
    model_cfg["embed_dim"] = 64  # the SigLIP tower has no projection: its width is the embedding
    model_cfg["text_cfg"].update(hf_model_name=str(hf_dirs["m2m_100"]), hf_tokenizer_name=str(hf_dirs["m2m_100"]),
                                 hf_model_pretrained=False)
    torch.manual_seed(0)
    reference = randomize_(open_clip_model(model_cfg, timm_kwargs={"depth": 2, "embed_dim": 64, "num_heads": 4,
                                                                    "img_size": 32, "patch_size": 8}), seed=6)
    full = config_from_open_clip({**model_cfg, "embed_dim": 768})  # open_clip's own sizes, then shrunk alike
    vision = dataclasses.replace(full.vision, image_size=32, width=64, layers=2, heads=4, patch_size=8)
    config = dataclasses.replace(full, embed_dim=64, vision=vision, preprocess=PreprocessConfig(image_size=32))
    assert config.kind == "siglip" and (config.text.pooler, config.text.projection) == ("cls_pooler", "linear")
    ours = build_model(config).eval()
    ours.load_state_dict(to_cliplab(reference.state_dict(), ours.state_dict(), open_clip_rules(config, "text."),
                                    "open_clip"))
    assert_same_features(ours, reference, "m2m_100", IMAGES)
    assert torch.equal(ours.logit_bias, reference.logit_bias)


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "mt5", "m2m_100"])
def test_the_tokenizer_is_open_clips_hf_tokenizer(hf_dirs, model_type):
    ours = cliplab.get_tokenizer("xlm-roberta-base-ViT-B-32", directory=hf_dirs[model_type])
    theirs = open_clip().tokenizer.HFTokenizer(str(hf_dirs[model_type]), context_length=77)
    texts = TEXTS + random_corpus(100, seed=11)
    assert torch.equal(ours(texts), theirs(texts)) and ours.pad_id == hf_config(model_type).pad_token_id


def test_mt5s_sentencepiece_files_give_open_clips_ids(tmp_path):
    """mT5's repositories hold spiece.model without tokenizer.json: transformers converts it (as
    open_clip's HFTokenizer, AutoTokenizer, does); saved, the tokenizer reads back without it."""
    directory = write_t5_sentencepiece_dir(tmp_path / "mt5")
    ours = cliplab.get_tokenizer("mt5-base-ViT-B-32", directory=directory)
    theirs = open_clip().tokenizer.HFTokenizer(str(directory), context_length=77)
    texts = TEXTS + random_corpus(100, seed=12)
    assert torch.equal(ours(texts), theirs(texts)) and (ours.pad_id, ours.eot_id) == (0, 1)
    ours.save_pretrained(tmp_path / "saved")
    assert torch.equal(load_tokenizer(tmp_path / "saved")(texts), ours(texts))


def test_names_find_the_config_and_tokenizer_in_the_hugging_face_cache(hf_dirs, tmp_path, monkeypatch):
    """create_model / get_tokenizer by open_clip's name read the model's files from the Hugging
    Face cache, as open_clip does offline; without them, one line naming the files."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert "xlm-roberta-base-ViT-B-32" in list_models()
    with pytest.raises(MissingModelFilesError) as missing:
        create_model("xlm-roberta-base-ViT-B-32", device="meta")
    message = str(missing.value)
    assert "\n" not in message and message.startswith(
        "open_clip model 'xlm-roberta-base-ViT-B-32': text_cfg.hf_model_name='xlm-roberta-base': the text model's "
        "config.json was not found; looked in a local directory xlm-roberta-base, the Hugging Face cache ")
    cache = write_cache(tmp_path / "cache", {"xlm-roberta-base": SMALL_CONFIGS["xlm-roberta"]})
    snapshot = next((cache / "models--xlm-roberta-base" / "snapshots").iterdir())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(hf_dirs["xlm-roberta"] / name, snapshot / name)
    use_cache(monkeypatch, cache)
    model = create_model("xlm-roberta-base-ViT-B-32", device="meta", **{"text.hf_model_pretrained": False})
    assert model.config.text.hf_config["vocab_size"] == 300
    ours, theirs = cliplab.get_tokenizer("xlm-roberta-base-ViT-B-32"), open_clip().get_tokenizer(
        "xlm-roberta-base-ViT-B-32")
    assert torch.equal(ours(TEXTS), theirs(TEXTS))


def test_pretrained_hugging_face_weights_are_read_or_their_absence_named(hf_dirs, tmp_path):
    """hf_model_pretrained: a fresh model on a real device starts from the weights beside the
    config (as open_clip's AutoModel.from_pretrained); none there: one line naming them and the way
    to a random tower; on meta nothing is read; a sharded (FSDP2) build refuses."""
    directory = tmp_path / "xlmr_weights"
    torch.manual_seed(1)
    pretrained = transformers().AutoModel.from_config(hf_config("xlm-roberta"), add_pooling_layer=False)
    pretrained.save_pretrained(str(directory))
    model_cfg = small_model_cfg(directory, hf_model_pretrained=True)
    model = build_model(config_from_open_clip(model_cfg))
    state = pretrained.state_dict()
    assert all(torch.equal(tensor, state[name]) for name, tensor in model.text_tower.transformer.state_dict().items())
    without_weights = config_from_open_clip(small_model_cfg(hf_dirs["xlm-roberta"], hf_model_pretrained=True))
    assert without_weights.text.hf_model_pretrained
    with pytest.raises(MissingModelFilesError, match=r"the pretrained weights of '.*' \(model.safetensors or .*\) were "
                                                     r"not found .* randomly initialised with "
                                                     r"text.hf_model_pretrained=false"):
        build_model(without_weights)
    with torch.device("meta"):
        build_model(without_weights)
    with pytest.raises(UserError, match=r"a sharded \(FSDP2\) build of a fresh model cannot load the Hugging Face "
                                        r"weights"), initialisers_on_meta(), ShardedInit(1, 2).building():
        build_model(config_from_open_clip(model_cfg))


def test_without_transformers_the_tower_is_one_line_naming_the_extra(hf_dirs, monkeypatch):
    config = config_from_open_clip(small_model_cfg(hf_dirs["xlm-roberta"]))  # reading needs no transformers
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    with pytest.raises(UserError) as refused:
        build_model(config)
    assert str(refused.value) == (f"the text tower {str(hf_dirs['xlm-roberta'])!r} (text.kind='hf_text') needs the "
                                  "transformers library, which is not installed: pip install 'cliplab[hf]'")


def _open_clip_lock(reference, unlocked_layers, freeze_layer_norm):
    reference.lock_text_tower(unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)
    return {name for name, parameter in reference.text.named_parameters() if not parameter.requires_grad}


# The layer names open_clip's arch table lacks for two of its model types (its lock then fails).
MISSING_LAYER_NAMES = {"m2m_100": {"layer_attr": "layers", "token_embeddings_attr": "embed_tokens"},
                       "bert": {"layer_attr": "layer", "token_embeddings_attr": "embeddings"}}


@pytest.mark.parametrize("model_type", ["xlm-roberta", "roberta", "mt5", "m2m_100", "bert"])
@pytest.mark.parametrize("unlocked_layers, freeze_norms", [(0, True), (0, False), (1, False), (2, True), (3, False)])
def test_locking_freezes_what_open_clips_lock_freezes(hf_dirs, model_type, unlocked_layers, freeze_norms, monkeypatch):
    """lock_text_tower counts open_clip's groups (embeddings, each encoder layer; the projection
    never frozen) and leaves only modules called LayerNorm trainable under freeze_layer_norm=False.
    open_clip's own lock fails for M2M100 and BERT with unlocked layers (no layer names in its
    table); given those names, it freezes what cliplab freezes."""
    model_cfg = small_model_cfg(hf_dirs[model_type], hf_pooler_type="cls_pooler" if model_type == "bert" else None)
    ours = build_model(config_from_open_clip(model_cfg))
    ours.lock_text_tower(unlocked_layers, freeze_layer_norm=freeze_norms)
    frozen = {name.removeprefix("text_tower.") for name, parameter in ours.named_parameters()
              if not parameter.requires_grad}
    reference = open_clip_model(model_cfg)
    if model_type in MISSING_LAYER_NAMES and unlocked_layers:
        with pytest.raises(KeyError, match="layer_attr"):
            _open_clip_lock(reference, unlocked_layers, freeze_norms)
        names = open_clip().hf_model.arch_dict[model_type]["config_names"]
        for key, value in MISSING_LAYER_NAMES[model_type].items():
            monkeypatch.setitem(names, key, value)
    assert frozen == _open_clip_lock(reference, unlocked_layers, freeze_norms)


def test_fsdp_units_are_the_encoder_layers_and_every_parameter_gets_a_gradient(hf_dirs):
    """Every parameter gets a gradient, the same with the encoder layers checkpointed (dropout on,
    the same seed)."""
    config = config_from_open_clip(small_model_cfg(hf_dirs["m2m_100"]))
    torch.manual_seed(0)
    model = build_model(config, output_dict=True).train()
    assert family_of(config.text).fsdp_units(model.text_tower) == list(model.text_tower.transformer.layers)
    gradients = []
    for checkpointed in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(checkpointed)
        torch.manual_seed(1)
        output = model(IMAGES, tokens_for("m2m_100", count=3))
        ClipLoss()(output["image_features"], output["text_features"], output["logit_scale"]).backward()
        gradients.append({name: parameter.grad.clone() for name, parameter in model.named_parameters()
                          if parameter.grad is not None})
    assert sorted(gradients[0]) == sorted(name for name, _ in model.named_parameters())
    assert all(torch.allclose(gradients[1][name], gradient, rtol=1e-5, atol=1e-7)
               for name, gradient in gradients[0].items())
    # the padding row of the token embedding gets none by construction
    assert not model.text_tower.transformer.embed_tokens.weight.grad[1].any()


@pytest.mark.parametrize("model_type", ["xlm-roberta", "mt5", "m2m_100"])
def test_a_sharded_build_keeps_the_initial_values_of_the_full_build(hf_dirs, model_type):
    """What FSDP2's meta build records for rank 1 of 2 is that rank's rows of the full build with the
    same seed (the HF tower built on the CPU inside it, its values handed over by copies)."""
    config = config_from_open_clip(small_model_cfg(hf_dirs[model_type]))
    recorder = ShardedInit(1, 2)
    torch.manual_seed(0)
    with initialisers_on_meta(), recorder.building():
        sharded = build_model(config)
    assert all(parameter.is_meta for parameter in sharded.parameters())
    kept = recorder.values(sharded)
    torch.manual_seed(0)
    for name, tensor in build_model(config).state_dict().items():
        rows = shard_rows(tensor.shape[0], 1, 2) if tensor.dim() >= 2 else None
        assert torch.equal(kept.rows(name, rows), tensor if rows is None else tensor[rows]), name


def test_a_meta_build_filled_from_a_checkpoint_or_allocated_empty_computes_its_buffers(hf_dirs):
    """RoBERTa's position ids and M2M100's sinusoidal positions live outside the state dict: after
    a meta build filled by load_state_dict(assign=True), or to_empty, the tower computes them."""
    for model_type in ("roberta", "m2m_100"):
        config = config_from_open_clip(small_model_cfg(hf_dirs[model_type]))
        torch.manual_seed(0)
        built = build_model(config).eval()
        with torch.device("meta"):
            filled = build_model(config)
        filled.load_state_dict(built.state_dict(), assign=True)
        with torch.device("meta"):
            emptied = build_model(config)
        emptied.to_empty(device="cpu")
        emptied.load_state_dict(built.state_dict())
        tokens = tokens_for(model_type)
        with torch.no_grad():
            expected = built.eval().encode_text(tokens)
            assert torch.equal(filled.eval().encode_text(tokens), expected)
            assert torch.equal(emptied.eval().encode_text(tokens), expected)


@pytest.mark.parametrize("change, message", [
    ({"hf_pooler_type": "max_pooler"}, r"text_cfg.hf_pooler_type='max_pooler': the family 'hf_text' builds"),
    ({"hf_proj_type": "conv"}, r"text_cfg.hf_proj_type='conv': open_clip builds 'mlp', 'linear'"),
    ({"hf_proj_type": None}, r"hf_proj_type=None with the model's width 32 and embed_dim 16"),
    ({"context_length": 100}, r"text.context_length \(100\) exceeds the 78 positions of the model"),
])
def test_options_open_clip_does_not_build_are_refused_by_name(hf_dirs, change, message):
    with pytest.raises(UserError, match=message):
        config_from_open_clip(small_model_cfg(hf_dirs["xlm-roberta"], **change))


def test_model_types_open_clip_does_not_know_are_refused(tmp_path):
    transformers().T5Config(vocab_size=100, d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=32).save_pretrained(
        str(tmp_path))
    with pytest.raises(UnsupportedArchitectureError, match=r"is a 't5' model; the Hugging Face text tower family "
                                                           r"'hf_text' builds open_clip's model types"):
        config_from_open_clip(small_model_cfg(tmp_path))


def test_the_config_is_plain_json_and_reads_back(hf_dirs):
    config = config_from_open_clip(small_model_cfg(hf_dirs["mt5"]))
    values = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(values) == config and isinstance(config.text, HfTextConfig)
    assert (config.text.width, config.text.pad_id, config.text.vocab_size, config.text.causal) == (32, 0, 300, False)
    changed = copy.deepcopy(values)
    changed["text"]["hf_config"]["model_type"] = "gpt2"
    with pytest.raises(ValueError, match=r"text.hf_config.model_type must be one of"):
        type(config).from_dict(changed)


@pytest.fixture(scope="module")
def hf_hub(hf_dirs, tmp_path_factory):
    """An open_clip hub directory of a small XLM-R CLIP (random weights) as cliplab exports it:
    open_clip_config.json, the weights, the text model's config.json and its tokenizer files."""
    directory = hf_dirs["xlm-roberta"]
    torch.manual_seed(0)
    model = build_model(config_from_open_clip(small_model_cfg(directory)))
    tokenizer = cliplab.get_tokenizer("xlm-roberta-base-ViT-B-32", directory=directory)
    return cliplab.export(model, tokenizer, tmp_path_factory.mktemp("hf_hub") / "hub", format="open_clip")


def test_fine_tuning_with_the_text_tower_locked_keeps_open_clips_locked_layers(hf_hub, tmp_path):
    """--pretrained an HF-text hub directory on a CSV, --lock-text --lock-text-unlocked-layers 1: the
    embeddings and the first encoder layer keep their weights over two steps (LayerNorms too, with
    --lock-text-freeze-layer-norm), the last layer and the projection move."""
    manifest = make_manifest(tmp_path / "data", 4)
    config = finetune_config(tmp_path / "logs", manifest, hf_hub, steps=2, batch_size=4, lock_text=True,
                             lock_text_unlocked_layers=1, lock_text_freeze_layer_norm=True)
    states, frozen = [], set()

    def after_step(step, model):
        states.append({key: value.detach().clone() for key, value in model.state_dict().items()})
        frozen.update(key for key, parameter in model.named_parameters() if not parameter.requires_grad)

    train(config, hooks=TrainHooks(after_step=after_step))
    first, second = states
    text = {key for key in first if key.startswith("text_tower.")}
    assert frozen == {key for key in text if ".layer.1." not in key}
    assert all(torch.equal(first[key], second[key]) for key in frozen)
    moving = [key for key in first if ".layer.1." in key or key.startswith("text_projection.")]
    assert moving and not any(torch.equal(first[key], second[key]) for key in moving if key.endswith("weight"))


def _cli_command(logs, name, hub, manifest, resume=False):
    command = [sys.executable, "-m", "cliplab", "train", "--logs", str(logs), "--name", name, "--pretrained", str(hub),
               "--dataset-type", "csv", "--train-data", str(manifest), "--max-steps", str(RESUME_STEPS),
               "--batch-size", "4", "--epochs", "10", "--workers", "0", "--save-every-steps", "2",
               "--keep-checkpoints", "2", "--log-every-n-steps", "1", "--no-progress-bar", "--no-tensorboard",
               "--threads", "1", "--deterministic", "--warmup", "1", "--set", "eval.eval_at_end=false"]
    return command + (["--resume", "latest"] if resume else [])


RESUME_STEPS = 6


def test_a_resumed_fine_tune_continues_bit_for_bit(hf_hub, tmp_path):
    """2 steps, checkpoint, resume to 4 (the HF tower's dropout on): the 4-step run's weights and
    optimiser state exactly."""
    assert_fine_tune_resumes_exactly(tmp_path, make_manifest(tmp_path / "data", 4), hf_hub, batch_size=4)


def test_a_fresh_process_loads_the_hub_directory(hf_hub):
    """transformers imported for the first time inside the meta build that loading is: its
    initialisation functions must still be torch's (the buffers a checkpoint does not hold are
    computed with them)."""
    tokens = tokens_for("xlm-roberta").tolist()
    with torch.no_grad():
        expected = cliplab.load(hf_hub)[0].encode_text(torch.tensor(tokens))
    script = ("import sys, torch, cliplab; model = cliplab.load(sys.argv[1])[0]; "
              f"torch.save(model.encode_text(torch.tensor({tokens})).detach(), sys.argv[2])")
    output = hf_hub.parent / "features.pt"
    completed = subprocess.run([sys.executable, "-c", script, str(hf_hub), str(output)], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert torch.equal(torch.load(output), expected)


@pytest.mark.slow
def test_a_killed_fine_tune_resumes_to_the_uninterrupted_run_bit_for_bit(hf_hub, tmp_path):
    """SIGKILL a real `cliplab train --pretrained HUB` once a step after a checkpoint is logged, resume
    with --resume latest: weights, optimiser and losses equal the uninterrupted run's (the HF tower's
    dropout is on: the resumed steps replay its masks)."""
    manifest = make_manifest(tmp_path / "data", 8)
    completed = subprocess.run(_cli_command(tmp_path, "reference", hf_hub, manifest), capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(_cli_command(tmp_path, "killed", hf_hub, manifest), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, killed_at = sigkill_after_a_checkpoint(process, run_dir, timeout_s=300)
    assert killed_at < RESUME_STEPS, "the run finished before the kill"
    completed = subprocess.run(_cli_command(tmp_path, "killed", hf_hub, manifest, resume=True), capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert_same_final_checkpoint(run_dir, tmp_path / "reference", steps=RESUME_STEPS)
    assert logged_losses(run_dir) == logged_losses(tmp_path / "reference")


def _ddp_then_fsdp(rank, world_size, logs, manifest, hub):
    for run, fsdp in (("ddp", False), ("fsdp", True)):
        config = finetune_config(logs, manifest, hub, name=run, steps=3, batch_size=8 // world_size)
        config.loss.gather_with_grad = True  # every rank logs the loss of the whole global batch
        config.distributed.fsdp = fsdp
        train(config)


@pytest.mark.slow
def test_fsdp_shards_the_encoder_layers_and_follows_ddp(hf_hub, tmp_path):
    """2 gloo ranks fine-tuning the HF-text hub directory 3 steps: FSDP2 (each encoder layer a unit,
    the model built on meta and its buffers computed after allocation) within 1e-4 of DDP."""
    manifest = make_manifest(tmp_path / "data", 8)
    run_on_workers(_ddp_then_fsdp, 2, tmp_path / "logs", manifest, hf_hub, timeout_s=600)
    losses = {run: list(logged_losses(tmp_path / "logs" / run).values()) for run in ("ddp", "fsdp")}
    assert len(losses["ddp"]) == len(losses["fsdp"]) == 3 and losses["ddp"][0] == losses["fsdp"][0]
    assert all(math.isclose(ours, theirs, rel_tol=1e-4) for ours, theirs in zip(losses["fsdp"], losses["ddp"])), losses
