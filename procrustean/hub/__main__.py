"""``python -m procrustean.hub push EXPORT_DIR REPO_ID``: publish an export folder (see ``push``)."""
import sys

from .push import main

sys.exit(main())
