"""The files of cliplab's step checkpoints, read the same way by every reader: manifests (`manifest`:
complete and intact, or the reason not) and a run's `checkpoints/` directory (`step_dirs`: the one
reader of `latest`, the newest checkpoint that verifies, reading one whole while the run prunes).

Below `cliplab.model_io` and `cliplab.train`: it imports neither, so that resume and every reader of a
run (`cliplab.load`, eval, classify, embed, export, `--pretrained`) verify with the same code.
"""
