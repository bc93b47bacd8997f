"""The four platforms' names as configuration (issue 15): ``deploy/platforms.yaml``.

Why data: the 2021 reform renamed the township platforms (监管执法 replaced
市场监管 + 综合执法, 公共服务 replaced 便民服务), older deployments still send
the legacy names, and counties keep renaming them.  Each of those is a line
in the YAML file, read once per process (``GRIDHUB_PLATFORMS_FILE`` names
another file).  ``aliases`` map a county's own name to the name analysts
group by; an unknown name stays an error (the event is dead-lettered with
the list of known names), because a typo must not create a fifth platform.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gridhub.core.yamlconf import ConfigError, line_of, load_yaml

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "deploy" / "platforms.yaml"
ENV = "GRIDHUB_PLATFORMS_FILE"


@dataclass(frozen=True)
class Platforms:
    names: frozenset[str]
    aliases: dict[str, str]

    def canonical(self, name: str) -> str | None:
        """The configured name for ``name`` (itself, or what its alias points to); None when unknown."""
        name = name.strip()
        if name in self.names:
            return name
        return self.aliases.get(name)

    def known(self) -> list[str]:
        return sorted(self.names | set(self.aliases))


def load_platforms(path: Path) -> Platforms:
    doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("platforms"), list) or not doc["platforms"]:
        raise ConfigError(path, None, "expected 'platforms: [name, ...]' (and optionally 'aliases: {new: name}')")
    names = frozenset(str(n).strip() for n in doc["platforms"] if str(n).strip())
    aliases = doc.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise ConfigError(path, line_of(doc, "aliases"), "aliases: expected a mapping 'new name: configured name'")
    for new, target in aliases.items():
        if str(target) not in names:
            raise ConfigError(path, line_of(aliases, new), f"alias {new!r} points to {target!r}, not a platform")
    return Platforms(names, {str(k).strip(): str(v) for k, v in aliases.items()})


@lru_cache(maxsize=1)
def platforms() -> Platforms:
    """The configured platforms of this process (read on first use)."""
    return load_platforms(Path(os.environ.get(ENV) or DEFAULT_FILE))
