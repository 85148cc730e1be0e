#!/usr/bin/env bash
# Build the documentation site into site/ with every warning an error (mkdocs --strict):
# a docstring that griffe cannot parse, a broken link or cross-reference, a public name of
# pde_popdyn without an API entry. Needs the docs extra: pip install ".[docs]".
# Usage: bash docs/build.sh [extra mkdocs build options, e.g. --site-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
# Material for MkDocs prints a notice about MkDocs 2.0 on every build; it is not a warning
# of this build, so silence it.
export NO_MKDOCS_2_WARNING=1
exec python -m mkdocs build --strict --clean "$@"
