from __future__ import annotations

import re

from attrs import field, frozen

from ._exceptions import InvalidOptionError

# A Kubernetes API version: v1, v2beta3, v1alpha1 (apimachinery's version priority format).
_VERSION = re.compile(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")
# DNS-1123 label: what plurals and namespaces must look like.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_plural(_: object, __: object, value: str) -> None:
    if not _LABEL.match(value):
        raise InvalidOptionError(f"plural must be a lowercase DNS label, got {value!r}")


def _check_version(_: object, __: object, value: str) -> None:
    if not value or "/" in value:
        raise InvalidOptionError(f"version must be like 'v1' or 'v1beta1', got {value!r}")


@frozen
class Resource:
    """A Kubernetes resource type: group, version and plural name.

    ``Resource("example.com", "v1", "widgets")`` names the custom resource ``widgets`` of
    group ``example.com``; the core group is ``""`` (``Resource("", "v1", "configmaps")``).
    ``kind`` and ``namespaced`` are optional: they are only needed where crwatch has to build
    objects or pick between namespaced and cluster-wide paths, and ``None`` means unknown.
    """

    group: str
    version: str = field(validator=_check_version)
    plural: str = field(validator=_check_plural)
    kind: str | None = field(default=None, kw_only=True)
    namespaced: bool | None = field(default=None, kw_only=True)

    @classmethod
    def parse(cls, text: str) -> Resource:
        """Parse ``plural.version.group`` (``widgets.v1.example.com``) or ``plural.version``.

        The second form names the core group (``configmaps.v1``); a bare plural is taken as
        core ``v1`` (``configmaps``), as ``kubectl`` does for built-in types. The version is
        required for other groups: parsing sends no request. To resolve ``"widgets"``,
        a kind or a short name through the server's discovery, use
        ``await client.resource(text)``.
        """
        parts = text.strip().split(".")
        if not parts or not parts[0]:
            raise InvalidOptionError(f"cannot parse resource {text!r}")
        if len(parts) == 1:
            return cls("", "v1", parts[0])
        if not _VERSION.match(parts[1]):
            raise InvalidOptionError(
                f"cannot parse resource {text!r}: expected plural.version.group, "
                f"for example {parts[0]}.v1.{'.'.join(parts[1:])}"
            )
        return cls(".".join(parts[2:]), parts[1], parts[0])

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` of objects of this type: ``example.com/v1``, or ``v1`` for core."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """Return the URL path of the collection (or of one object when ``name`` is given)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            base = f"{base}/namespaces/{namespace}"
        base = f"{base}/{self.plural}"
        return f"{base}/{name}" if name else base

    def __str__(self) -> str:
        tail = f".{self.group}" if self.group else ""
        return f"{self.plural}.{self.version}{tail}"
