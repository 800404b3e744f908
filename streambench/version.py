"""streambench's version (the same as ``pyproject.toml``'s), in a module that imports nothing,
so that modules which print or record it do not import the package root, which names (for type
checkers) the modules above them."""

__version__ = "0.1.0"
