"""``python -m proton_easy``: the ``proton-easy`` command line (see :mod:`proton_easy.cli`).

Example::

    python -m proton_easy send -b localhost:5672/examples --msg-content hello
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
