"""matcalc: matrix calculus from the command line."""

__version__ = "0.1.0"

__all__ = ["derive", "Derivation", "Result", "MatcalcError", "ParseError", "ShapeError", "MathError",
           "UsageError", "__version__"]

# the pipeline is imported on first use, so that `matcalc --version` and `--help` start fast
_LAZY = {"derive": "api", "Derivation": "api", "Result": "api", "MatcalcError": "errors",
         "MathError": "errors", "ParseError": "errors", "ShapeError": "errors", "UsageError": "errors"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
