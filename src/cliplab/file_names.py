"""File and directory names that mean several things in cliplab, each defined once with its meaning.

config.json is three schemas, told apart by the directory holding it:

    RUN_CONFIG_FILE     a run directory: the resolved TrainConfig (`cliplab.train.config.io`)
    MODEL_CONFIG_FILE   a bundle or step directory: a ModelConfig plus "format_version"
                        (`cliplab.pretrained.cliplab_bundle`)
    HF_CONFIG_FILE      a Hugging Face model directory: transformers' config, with "model_type"
                        (`cliplab.pretrained.formats.hf`)

"Shard" is four things; names and docstrings qualify which:

    DCP shards          an FSDP2 run's weights and optimiser state in a step directory: the DCP
                        directory DCP_SHARDS_DIR, one .distcp file per rank plus DCP_METADATA_FILE
                        (`cliplab.pretrained.dcp_files`, `cliplab.train.checkpointing.dcp_state`)
    FSDP shards         each rank's slice of a parameter in memory (`cliplab.train.parallel.fsdp`)
    webdataset shards   the tar files of a dataset (`cliplab.data.webdataset_source`, written by
                        `cliplab.data.webdataset_writer`, counted by `cliplab.data.webdataset_counts`)
    HF index parts      the weight files a Hugging Face `*.index.json` maps tensors to
                        (`cliplab.pretrained.weight_files.hf_index_source`)

This module imports nothing, so every package may use it.
"""

RUN_CONFIG_FILE = "config.json"
MODEL_CONFIG_FILE = "config.json"
HF_CONFIG_FILE = "config.json"

DCP_SHARDS_DIR = "shards"
DCP_METADATA_FILE = ".metadata"
