"""The built-in decoding methods: each module here declares one or more `Method` objects.

The registry (`argsfw.decoding.registry`) finds them by scanning this package, so a new built-in
method is one new module (plus, optionally, a ``decode=`` group YAML in ``configs/decode/``).
Nothing else lists the methods or their knobs.
"""
