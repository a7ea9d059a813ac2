"""Files Linli reads at run time that are not Python: found through importlib.resources, so the same
lookups work from the checkout (`./dev.sh`, an editable install) and from an installed wheel.

Two kinds:
- inside a package (bot/web/static, bot/core/vocabulary.toml, bot/data/migrations): `package_path`;
- the repository's top-level templates/, data/*.csv (the demo register) and config.toml: the user
  keeps them at the top of the checkout, so bot/_shipped/ holds relative symlinks to them
  (templates -> ../../templates, ...). setuptools follows the links when it builds a wheel and
  copies the files in as bot/_shipped/... package data (pyproject.toml [tool.setuptools.package-data]);
  in the checkout the links lead back to the top-level files. `shipped` reads both the same way.

Linli needs real files (jinja2's FileSystemLoader, aiohttp's static route, sqlite imports of the
register), so a resource that is not on the file system (a zipped install) is refused with a clear
error rather than half-working.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED_PACKAGE = "bot"
SHIPPED_DIR = "_shipped"

# everything the app opens, as (package, relative name); test_package.py and `missing()` check it
REQUIRED: tuple[tuple[str, str], ...] = (
    (SHIPPED_PACKAGE, f"{SHIPPED_DIR}/templates/messages/alert_group.j2"),
    (SHIPPED_PACKAGE, f"{SHIPPED_DIR}/templates/web/login.html"),
    (SHIPPED_PACKAGE, f"{SHIPPED_DIR}/templates/alerts/body.j2"),
    (SHIPPED_PACKAGE, f"{SHIPPED_DIR}/templates/notices"),
    (SHIPPED_PACKAGE, f"{SHIPPED_DIR}/data/dalong_register.csv"),
    (SHIPPED_PACKAGE, f"{SHIPPED_DIR}/data/dalong_register_groups.csv"),
    (SHIPPED_PACKAGE, f"{SHIPPED_DIR}/config.toml"),
    ("bot.web", "static/live.js"),
    ("bot.web", "static/dashboard.css"),
    ("bot.web", "static/favicon.ico"),
    ("bot.core", "vocabulary.toml"),
    ("bot.data", "migrations"),
)


class ResourceError(RuntimeError):
    """A file Linli ships is missing or not on the file system: a broken install."""


def package_path(package: str, name: str) -> Path:
    """`name` (a '/'-separated path) inside `package`, as a real file-system Path.

    Raises ResourceError when it does not exist or lives inside an archive."""
    node = resources.files(package)
    for part in name.split("/"):
        node = node / part
    if not isinstance(node, Path):  # e.g. a zipimport Traversable: no path jinja2/aiohttp could use
        raise ResourceError(f"{package}/{name} is not on the file system ({type(node).__name__}); "
                            "install Linli from a wheel or a checkout, not a zip")
    if not node.exists():
        raise ResourceError(f"{package}/{name} is missing from this installation "
                            f"(looked at {node}); reinstall Linli")
    # resolve: in the checkout the path runs through bot/_shipped's symlinks; logs and error
    # messages should name the real file (data/dalong_register.csv), not the link
    return node.resolve()


def shipped(name: str) -> Path:
    """A top-level repository resource: "templates", "data/dalong_register.csv", "config.toml"."""
    return package_path(SHIPPED_PACKAGE, f"{SHIPPED_DIR}/{name}")


def missing() -> list[str]:
    """Every required resource that cannot be found, one sentence each (empty when all are there)."""
    out = []
    for package, name in REQUIRED:
        try:
            package_path(package, name)
        except (ResourceError, ModuleNotFoundError) as e:
            out.append(str(e))
    return out
