"""Sphinx configuration: the API reference from ocirt's docstrings, the
README as the quick start. Built with -W in CI: a warning fails it."""

import ocirt

project = "ocirt"
release = ocirt.__version__
extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
default_role = "code"  # the docstrings' `name` is code
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_mock_imports = ["distributed"]  # ocirt.dask's optional dependency, not needed to read its docstrings
autodoc_default_options = {"members": True, "show-inheritance": True}
myst_heading_anchors = 3
# myst: the README links files of the repository, not pages; ref.python: a name that
# two documented paths lead to (ocirt.RunResult is ocirt.run.RunResult) is one class.
suppress_warnings = ["myst.xref_missing", "ref.python"]
exclude_patterns = ["_build"]
