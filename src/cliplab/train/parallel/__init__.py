"""How a run is spread over processes and devices:

    processes.py     the process group, the device, `DistributedContext` (torchrun, elastic)
    torch_setup.py   threads, determinism, seeds
    build.py         `ModelBuild`: where the modules are built (meta under FSDP2) and how they are
                     wrapped (`ParallelModel`: DDP, FSDP2 or one process); `whole_model` for evaluation
    fsdp.py          FSDP2 units, mixed precision, the names of held 0-d parameters (`shard`)
    fsdp_state.py    values into and out of FSDP2 shards, in the unsharded format
"""
