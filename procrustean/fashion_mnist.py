"""Deprecated location of :mod:`procrustean.data.fashion_mnist`, kept so that the command documented before the
package layout changed still works: ``python -m procrustean.fashion_mnist --save_to_disk DIR``."""
import sys
import warnings

from .data.fashion_mnist import CLASS_NAMES, load_fashion_mnist, main, read_idx  # noqa: F401

warnings.warn("procrustean.fashion_mnist moved to procrustean.data.fashion_mnist; import or run it from there.",
              FutureWarning, stacklevel=2)

if __name__ == "__main__":
    sys.exit(main())
