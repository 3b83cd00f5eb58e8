"""Jinja rendering of router configuration: one strict environment per platform (undefined
variables fail, and a template that prints None fails), the device
features rendered from a validated intent, and the structure check applied to each result.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from vpop.core import validate
from vpop.core.errors import BadInput
from vpop.core.settings import PROJECT_ROOT
from vpop.network.filters import FILTERS, is_ipv4, is_ipv6
from vpop.network.intent import validate_intent
from vpop.network.platforms import FEATURES, PLATFORMS
from vpop.network.structure import Placeholders, compare_structure

TEMPLATE_ROOT = PROJECT_ROOT / "templates"


_FEATURE_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}", re.ASCII)


_ENVIRONMENTS: dict[str, jinja2.Environment] = {}


ENVIRONMENTS_LOCK = threading.Lock()


def _finalize(value: object) -> object:
    if value is None:
        raise BadInput("a template printed None; a required value is missing from the intent")
    return value


def new_environment(root: Path) -> jinja2.Environment:
    """A device-template environment: strict, whitespace-exact, no escaping, no ``None``."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finalize,
    )


def environment(platform: str) -> jinja2.Environment:
    """The one Jinja2 environment of ``templates/<platform>``, built on first use.

    Args:
        platform: ``frr``, ``ios`` or ``junos``.

    Returns:
        The cached environment.

    Raises:
        BadInput: for an unknown platform.
    """
    platform = validate.one_of(platform, "platform", PLATFORMS)
    with ENVIRONMENTS_LOCK:
        env = _ENVIRONMENTS.get(platform)
        if env is None:
            env = new_environment(TEMPLATE_ROOT / platform)
            env.filters.update(FILTERS[platform])
            env.tests.update({"ipv4": is_ipv4, "ipv6": is_ipv6})
            _ENVIRONMENTS[platform] = env
    return env


def render(platform: str, feature: str, variables: Mapping[str, Any]) -> str:
    """Render ``templates/<platform>/<feature>.j2`` with ``variables``, as given.

    No validation happens here: :func:`render_router` validates first. Use this directly
    only with variables that are already canonical.

    Args:
        platform: ``frr``, ``ios`` or ``junos``.
        feature: the template's name without ``.j2``.
        variables: the template's variables (a ``RouterIntent``).

    Returns:
        The rendered text.

    Raises:
        BadInput: for an unknown platform or feature, or when ``variables`` lack a value
            the template needs.
    """
    env = environment(platform)
    if not isinstance(feature, str) or not _FEATURE_NAME.fullmatch(feature):
        raise BadInput(f"feature: {feature!r} is not a template name")
    try:
        template = env.get_template(f"{feature}.j2")
    except jinja2.TemplateNotFound as err:
        raise BadInput(f"feature: {platform} has no template {feature}.j2") from err
    try:
        return template.render(dict(variables))
    except jinja2.UndefinedError as err:
        raise BadInput(f"{platform}/{feature}: {err.message}") from err


def render_router(intent: Mapping[str, Any]) -> dict[str, str]:
    """Validate a ``RouterIntent`` and render every feature of its platform.

    Args:
        intent: the mapping described in docs/selection.md (router, platform, isps, lines).

    Returns:
        ``{feature: text}`` in :data:`FEATURES` order.

    Raises:
        BadInput: when any value of the intent is invalid or inconsistent.
        StructureError: when a rendered text does not have its template's line structure.
    """
    canonical = validate_intent(intent)
    platform = canonical["platform"]
    placeholders = Placeholders().variables(canonical)  # the same for every feature
    rendered: dict[str, str] = {}
    for feature in FEATURES[platform]:
        text = render(platform, feature, canonical)
        check_structure(platform, feature, canonical, text, placeholders=placeholders)
        rendered[feature] = text
    return rendered


def check_structure(
    platform: str,
    feature: str,
    variables: Mapping[str, Any],
    text: str,
    *,
    placeholders: Mapping[str, Any] | None = None,
) -> None:
    """Check that ``text`` has exactly the line structure of its template.

    The template is rendered a second time with every string leaf of ``variables`` replaced
    by a safe placeholder of the same kind (lists keep their length). The two texts must
    have the same number of lines, the same whitespace, and line by line the same literal
    tokens; where the placeholder text has a value, the real text must have a single value
    token (letters, digits and ``_.:/-``), so no value can add a line, a statement or a
    token.

    Args:
        platform: ``frr``, ``ios`` or ``junos``.
        feature: the template's name.
        variables: the variables ``text`` was rendered from.
        text: the rendered text.
        placeholders: ``Placeholders().variables(variables)``, when the caller made them
            already (one set serves every feature of an intent).

    Raises:
        StructureError: naming the first line that differs.
    """
    if placeholders is None:
        placeholders = Placeholders().variables(variables)
    expected = render(platform, feature, placeholders)
    compare_structure(f"{platform}/{feature}", text, expected)
