"""How a SigLIP loss exchanges the text features between ranks (open_clip's `dist_impl`; the
algorithms are `cliplab.losses.siglip`'s), named here without importing torch so that the training
config and the CLI's --help read the same tuple."""

SIGLIP_DIST_IMPLS = ("bidir", "shift", "reduce", "gather")
