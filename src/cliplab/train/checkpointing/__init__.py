"""A run's checkpoints, written and read back:

    manager.py       the file protocol of `checkpoints/`: stage, publish (manifest, `latest`), prune,
                     find what to resume (`CheckpointManager`); restore a run's state from a payload
    payload.py       `train_state.pt`: the payload's schema, built once (`training_payload`), read once
    atomic_files.py  files replaced atomically, fsync, out-of-space errors
    checkpointer.py  when to save, and the restore of a whole-copy (DDP) run (`Checkpointer`)
    dcp.py           the checkpointer of an FSDP2 run: DCP directories written shard by shard
    dcp_state.py     the sharded model and optimiser into and out of DCP (`save_sharded` / `load_sharded`)
    run_lock.py      the run directory's lock (`RunLock`)

The checkpointer a run uses is chosen with the Trainer (`cliplab.train.trainer.build_checkpointer`).
Verification and the `latest` reader sit below, in `cliplab.checkpoint_files`.
"""
