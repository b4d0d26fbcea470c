"""The test oracles (open_clip, timm, CLIP_benchmark) go on sys.path for the whole suite:
`reference_libraries` adds build/test-oracles, where scripts/setup.sh installs them outside the
user's environment."""

import reference_libraries  # noqa: F401  (imported for its sys.path entry)
