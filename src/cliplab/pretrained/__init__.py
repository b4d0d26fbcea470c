"""Models in files: every checkpoint format cliplab reads and writes, its own bundles included, read
into cliplab models (open_clip, OpenAI and Hugging Face formats with outputs equal to theirs) and
written back.

Modules, one idea each: `formats` (the registry of formats: what a path holds, how it is read and
written), `cliplab_bundle` (cliplab's own bundles, step and run directories), `loaders` (one reader
per foreign format), `key_maps` (the rule machinery for state-dict names), `open_clip_keys` and
`hf_keys` (the rules per format), `hf_config` (HF config.json <-> ModelConfig; the open_clip config
converter lives with the model configs, `cliplab.models.open_clip_config`), `weight_files`,
`dcp_files` / `dcp_reader` (safe reading), `export`, `wise_ft`.
"""
