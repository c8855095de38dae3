"""CadSnap model runtime: image in, CadQuery program and solid out.

Importing this package is cheap and needs only the standard library; heavy
dependencies (cadquery, torch, llama_cpp) are imported by the modules that use them.
"""

__version__ = "0.1.0"
