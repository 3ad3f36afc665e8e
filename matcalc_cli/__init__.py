"""matcalc: matrix calculus from the command line."""

__version__ = "0.1.0"

from .api import Derivation, Result, derive  # noqa: E402
from .errors import MatcalcError, MathError, ParseError, ShapeError, UsageError  # noqa: E402

__all__ = ["derive", "Derivation", "Result", "MatcalcError", "ParseError", "ShapeError", "MathError",
           "UsageError", "__version__"]
