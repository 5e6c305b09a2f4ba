"""binsort: train, compare and use image classifiers that sort a photo of waste into a bin.

The package is a library first; the ``binsort`` command (``binsort.cli``) is a thin layer over
it. Importing ``binsort`` is cheap: torch and Lightning load only in the modules that need them.
"""

__version__ = "0.1.0"
