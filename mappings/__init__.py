"""YAML mapping files (OCI <-> FreeBSD jail/RCTL), their JSON Schema and loader.

``default.yaml`` ships inside the package and is always loaded first; user
files are layered over it (see :mod:`mappings.loader`). Nothing here touches
the OS except reading mapping files.
"""

from mappings.loader import MappingRules, load_rules, shipped_paths

__all__ = ["MappingRules", "load_rules", "shipped_paths"]
