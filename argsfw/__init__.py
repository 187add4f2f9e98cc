__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: `import argsfw` stays cheap; torch/transformers load on first use of ARGS.
    if name == "ARGS":
        from argsfw.decoding.original_api import ARGS

        return ARGS
    raise AttributeError(f"module 'argsfw' has no attribute {name!r}")
