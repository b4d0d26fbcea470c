"""Foreign checkpoints: open_clip, OpenAI and Hugging Face formats read into cliplab models and
written back.

Modules, one idea each: `key_maps` (the rule machinery for state-dict names), `open_clip_keys` and
`hf_keys` (the rules per format), `hf_config` (HF config.json <-> ModelConfig; the open_clip
config converter lives with the model configs, `cliplab.models.open_clip_config`), `formats`
(what a path holds), `loaders` (one reader per format), `export`, `wise_ft`.
"""
