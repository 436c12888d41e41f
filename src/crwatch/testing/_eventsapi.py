"""Events: core/v1 ``events`` and ``events.k8s.io/v1`` ``events`` as two views of one store.

kube-apiserver keeps one storage for both APIs: an Event written through either is read
through the other, converted field by field
(https://github.com/kubernetes/kubernetes/blob/master/pkg/apis/events/v1/conversion.go).
The fake stores the core/v1 form; the ``events.k8s.io`` API converts on the way in and out.

| core/v1 | events.k8s.io/v1 |
| --- | --- |
| ``involvedObject`` | ``regarding`` |
| ``message`` | ``note`` |
| ``source`` | ``deprecatedSource`` |
| ``firstTimestamp`` | ``deprecatedFirstTimestamp`` |
| ``lastTimestamp`` | ``deprecatedLastTimestamp`` |
| ``count`` | ``deprecatedCount`` |
| ``reportingComponent`` | ``reportingController`` |

``reason``, ``type``, ``action``, ``eventTime``, ``series``, ``related`` and
``reportingInstance`` have the same names in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ._patch import PatchError, apply_json_patch, apply_merge_patch

if TYPE_CHECKING:
    from ._state import ClusterState, ResourceType

Obj = dict[str, Any]

EVENTS_GROUP: Final = "events.k8s.io"
EVENTS_API_VERSION: Final = "events.k8s.io/v1"

# core/v1 name -> events.k8s.io/v1 name, for the fields that differ.
_CORE_TO_V1: Final[Mapping[str, str]] = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "reportingComponent": "reportingController",
}
_V1_TO_CORE: Final[Mapping[str, str]] = {v: k for k, v in _CORE_TO_V1.items()}

# Field selectors the core/v1 events registry serves besides metadata.name/namespace
# (https://github.com/kubernetes/kubernetes/blob/master/pkg/registry/core/event/strategy.go).
CORE_EVENT_FIELDS: Final = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
)


def _rename(obj: Obj, names: Mapping[str, str], api_version: str) -> Obj:
    out: Obj = {}
    for key, value in obj.items():
        out[names.get(key, key)] = value
    out["apiVersion"] = api_version
    return out


def core_to_v1(obj: Obj) -> Obj:
    """Return the ``events.k8s.io/v1`` form of a stored core/v1 Event."""
    return _rename(obj, _CORE_TO_V1, EVENTS_API_VERSION)


def v1_to_core(obj: Obj) -> Obj:
    """Return the core/v1 form of an ``events.k8s.io/v1`` Event."""
    return _rename(obj, _V1_TO_CORE, "v1")


def served_as(obj: Obj, api_version: str) -> Obj:
    """Return ``obj`` as the API ``api_version`` serves it (a relabel, or the Event mapping)."""
    if (
        api_version == EVENTS_API_VERSION
        and obj.get("kind") == "Event"
        and obj.get("apiVersion") == "v1"
    ):
        return core_to_v1(obj)
    return {**obj, "apiVersion": api_version}


class EventsView:
    """The ``events.k8s.io/v1`` write and read path over the core/v1 Event store."""

    def __init__(self, state: ClusterState, core: ResourceType) -> None:
        self._state = state
        self._core = core

    def _in(self, body: Any) -> Any:
        if not isinstance(body, dict):
            return body  # the core path answers the 400
        api_version = body.get("apiVersion")
        if api_version not in (None, "", EVENTS_API_VERSION):
            return {**body, "apiVersion": api_version}  # refused by the core path's check
        return v1_to_core(body)

    def create(self, body: Any, namespace: str | None) -> Obj:
        """POST through ``events.k8s.io/v1``."""
        return core_to_v1(self._state.create(self._core, self._in(body), namespace))

    def get(self, name: str, namespace: str | None) -> Obj:
        """GET through ``events.k8s.io/v1``."""
        return core_to_v1(self._state.get(self._core, name, namespace))

    def update(self, body: Any, name: str, namespace: str | None) -> Obj:
        """PUT through ``events.k8s.io/v1``."""
        return core_to_v1(self._state.update(self._core, self._in(body), name, namespace))

    def patch(self, name: str, patch: Any, namespace: str | None, patch_type: str) -> Obj:
        """PATCH through ``events.k8s.io/v1``: the patch applies to the v1 form."""
        from ._state import ApiError, bad_request, status_body

        old = core_to_v1(self._state.get(self._core, name, namespace))
        try:
            if patch_type == "json":
                if not isinstance(patch, list):
                    raise bad_request(
                        "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                    )
                patched = apply_json_patch(old, patch)
            else:
                if not isinstance(patch, dict):
                    raise bad_request("merge patch must be a JSON object")
                patched = apply_merge_patch(old, patch)
        except PatchError as exc:
            raise ApiError(status_body(422, "Invalid", str(exc))) from None
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        meta = patched.get("metadata")
        if isinstance(meta, dict) and not meta.get("resourceVersion"):
            # A patch is applied to the object it read: keep its optimistic-concurrency guard.
            patched["metadata"] = {**meta, "resourceVersion": old["metadata"]["resourceVersion"]}
        return self.update(patched, name, namespace)

    def delete(self, name: str, namespace: str | None, **options: Any) -> Obj:
        """DELETE through ``events.k8s.io/v1``."""
        return core_to_v1(self._state.delete(self._core, name, namespace, **options))
