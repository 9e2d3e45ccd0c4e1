"""The bottom layer: errors, units, registries, optional imports, serialization and shared constants.

Nothing here imports torch or any other heavy package, so every layer (and ``import sizewise``) can use it cheaply.
"""
