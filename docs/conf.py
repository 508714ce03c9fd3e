"""Sphinx configuration of fusedmlp's documentation: user guide, API reference (numpydoc) and
the example gallery (sphinx-gallery, executed at build time).

Build (offline): ``python docs/build.py`` (see its docstring), or directly
``SCIKIT_LEARN_DATA=<offline data home> sphinx-build -W -b html docs docs/_build/html``.
"""

import os
import sys
from pathlib import Path

import fusedmlp

HERE = Path(__file__).resolve().parent

project = "fusedmlp"
author = "the fusedmlp developers"
copyright = "2026, the fusedmlp developers"
release = version = fusedmlp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.json"]
templates_path = ["_templates"]
root_doc = "index"

autosummary_generate = True
numpydoc_show_class_members = False  # (the class template documents every method)
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "config.cache"]

intersphinx_mapping = {}  # offline build: no inventories are fetched

html_theme = "pydata_sphinx_theme"
html_title = f"fusedmlp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []

# The gallery: every examples/plot_*.py runs when the docs build; FUSEDMLP_EXAMPLES_FAST=1 runs
# each on a subset (CI), FUSEDMLP_EXAMPLES_PATTERN selects examples by file name (a regex).
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": os.environ.get("FUSEDMLP_EXAMPLES_PATTERN", r"/plot_"),
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "show_memory": False,
}

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(HERE))
