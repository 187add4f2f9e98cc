"""The built-in decoding methods, one module per family; importing this package registers them.

A new built-in method is one more module here plus its line below (and, if it is to be a
``decode=`` group option, a YAML file in ``configs/decode/``). See `argsfw.decoding.registry`.
"""

from argsfw.decoding.methods import (  # noqa: F401
    args,
    baselines,
    best_of_n,
    cards,
    controlled,
    gated,
    token_level,
    treebon,
)
