"""Namespace lifecycle: the NamespaceLifecycle admission check and the namespace controller.

Admission
(https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle/admission.go):
a create in a namespace that does not exist answers 404 ``namespaces "x" not found``; a
create in a namespace being terminated answers 403 Forbidden with a ``NamespaceTerminating``
cause; ``default``, ``kube-system`` and ``kube-public`` may not be deleted.

Deletion (https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/ and
https://github.com/kubernetes/kubernetes/blob/master/pkg/registry/core/namespace/storage/storage.go):
the first DELETE sets ``deletionTimestamp`` and ``status.phase: Terminating``; the namespace
controller
(https://github.com/kubernetes/kubernetes/blob/master/pkg/controller/namespace/deletion/namespaced_resources_deleter.go)
then deletes every object in it (background propagation, so their finalizers hold them),
reports what remains in ``status.conditions``, and once nothing is left removes the
``kubernetes`` spec finalizer and deletes the namespace.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._state import ClusterState, ResourceType

Obj = dict[str, Any]

IMMORTAL: Final = frozenset({"default", "kube-system", "kube-public"})
SPEC_FINALIZER: Final = "kubernetes"
NAME_LABEL: Final = "kubernetes.io/metadata.name"

# Conditions the namespace controller keeps on a terminating namespace, with the reason
# used when all is well (pkg/controller/namespace/deletion/status_condition_utils.go).
_CONDITIONS: Final = (
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
)


def prepare_namespace(obj: Obj) -> None:
    """Set what the namespace registry sets on create (``PrepareForCreate``).

    The ``kubernetes`` spec finalizer, ``status.phase: Active`` and the
    ``kubernetes.io/metadata.name`` label
    (https://kubernetes.io/docs/reference/labels-annotations-taints/#kubernetes-io-metadata-name).
    """
    spec = obj.get("spec")
    spec = dict(spec) if isinstance(spec, dict) else {}
    finalizers = list(spec.get("finalizers") or ())
    if SPEC_FINALIZER not in finalizers:
        finalizers.append(SPEC_FINALIZER)
    spec["finalizers"] = finalizers
    obj["spec"] = spec
    obj["status"] = {"phase": "Active"}
    meta = obj["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), NAME_LABEL: meta["name"]}


def _with_finalizers(spec: Obj, finalizers: list[str]) -> Obj:
    # An empty list is left out, as Go's omitempty does on the wire.
    out = {k: v for k, v in spec.items() if k != "finalizers"}
    if finalizers:
        out["finalizers"] = finalizers
    return out


def is_terminating(ns_obj: Obj) -> bool:
    """Tell whether a Namespace object is being terminated."""
    return (ns_obj.get("status") or {}).get("phase") == "Terminating"


class NamespaceLifecycle:
    """Admission check plus the namespace controller, driven by `ClusterState`."""

    def __init__(self, state: ClusterState, namespaces: ResourceType) -> None:
        self._state = state
        self._type = namespaces
        self._dirty: set[str] = set()

    def _namespace(self, name: str) -> Obj | None:
        return self._state.collection(self._type).objects.get(name)

    # -- admission ------------------------------------------------------------------------

    def admit_create(self, rtype: ResourceType, namespace: str, name: str) -> None:
        """Raise the NamespaceLifecycle admission error for a create, if any."""
        from ._state import ApiError, status_body

        ns_obj = self._namespace(namespace)
        if ns_obj is None:
            raise self._type.not_found(namespace)
        if not is_terminating(ns_obj):
            return
        qualified = rtype.qualified
        subject = f'{qualified} "{name}"' if name else qualified
        details: Obj = {"name": name} if name else {}
        if rtype.group:
            details["group"] = rtype.group
        details["kind"] = rtype.plural
        details["causes"] = [
            {
                "reason": "NamespaceTerminating",
                "message": f"namespace {namespace} is being terminated",
                "field": "metadata.namespace",
            }
        ]
        raise ApiError(
            status_body(
                403,
                "Forbidden",
                f"{subject} is forbidden: unable to create new content in namespace "
                f"{namespace} because it is being terminated",
                details,
            )
        )

    def admit_delete(self, name: str) -> None:
        """Refuse to delete the namespaces a cluster cannot live without."""
        from ._state import ApiError, status_body

        if name in IMMORTAL:
            raise ApiError(
                status_body(
                    403,
                    "Forbidden",
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    {"name": name, "kind": "namespaces"},
                )
            )

    # -- DELETE ---------------------------------------------------------------------------

    def delete(self, old: Obj) -> Obj:
        """Serve a namespace DELETE: mark it Terminating first, remove it once finalized."""
        state = self._state
        meta = old["metadata"]
        spec_finalizers = (old.get("spec") or {}).get("finalizers") or []
        if not meta.get("deletionTimestamp"):
            new_meta = dict(meta)
            new_meta["deletionTimestamp"] = state.timestamp()
            new_meta["deletionGracePeriodSeconds"] = 0
            new = {**old, "metadata": new_meta, "status": {**old.get("status", {})}}
            new["status"]["phase"] = "Terminating"
            return state.store_modified(self._type, new, old)
        if spec_finalizers or meta.get("finalizers"):
            return old  # the system is still removing content (or other finalizers hold it)
        return state.store_removed(self._type, old)

    def finalize(self, name: str, body: Any) -> Obj:
        """Serve ``PUT /api/v1/namespaces/NAME/finalize``: replace ``spec.finalizers`` only.

        A terminating namespace left without finalizers goes at once (the registry's
        ``ShouldDeleteNamespaceDuringUpdate``); this is how a namespace stuck on a spec
        finalizer nobody removes is released
        (https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/namespace-v1/#update-replace-finalize-of-the-specified-namespace).
        """
        from ._state import bad_request

        old = self._state.get(self._type, name)
        if not isinstance(body, dict):
            raise bad_request("the object provided is not a JSON object")
        body_meta = body.get("metadata")
        given_rv = body_meta.get("resourceVersion") if isinstance(body_meta, dict) else None
        if given_rv and given_rv != old["metadata"]["resourceVersion"]:
            raise self._type.conflict(
                name,
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        spec = body.get("spec")
        raw = (spec.get("finalizers") if isinstance(spec, dict) else None) or []
        if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
            raise bad_request("spec.finalizers must be a list of strings")
        finalizers = list(dict.fromkeys(raw))
        old_spec = old.get("spec") or {}
        if finalizers == list(old_spec.get("finalizers") or ()):
            return old
        new = self._state.store_modified(
            self._type, {**old, "spec": _with_finalizers(old_spec, finalizers)}, old
        )
        current = self._namespace(name)
        if current is None:
            return new  # the namespace controller saw it empty and removed it already
        meta = current["metadata"]
        if not finalizers and meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._state.store_removed(self._type, current)
        return current

    # -- controller -----------------------------------------------------------------------

    def observe(self, rtype: ResourceType, etype: str, obj: Obj) -> None:
        """Note which terminating namespaces a stored change concerns."""
        if rtype == self._type:
            if etype != "DELETED" and is_terminating(obj):
                self._dirty.add(obj["metadata"]["name"])
            return
        if etype == "DELETED" and rtype.namespaced:
            ns = obj["metadata"].get("namespace")
            if ns:
                ns_obj = self._namespace(ns)
                if ns_obj is not None and is_terminating(ns_obj):
                    self._dirty.add(ns)

    def pending(self) -> bool:
        """Tell whether `flush` has work to do."""
        return bool(self._dirty)

    def flush(self) -> None:
        """Delete the content of every namespace noted dirty; finish those left empty."""
        while self._dirty:
            name = self._dirty.pop()
            ns_obj = self._namespace(name)
            if ns_obj is not None and is_terminating(ns_obj):
                self._sweep(name, ns_obj)

    def _sweep(self, name: str, ns_obj: Obj) -> None:
        from ._state import ApiError

        state = self._state
        remaining: Counter[str] = Counter()
        finalizers: Counter[str] = Counter()
        for rtype, coll in state.collections():
            if not rtype.namespaced:
                continue
            prefix = f"{name}/"
            keys = [k for k in coll.sorted_keys() if k.startswith(prefix)]
            for key in keys:
                obj = coll.objects.get(key)
                if obj is None:
                    continue
                meta = obj["metadata"]
                if not meta.get("deletionTimestamp"):
                    # Gone meanwhile: what matters is what is left below.
                    with contextlib.suppress(ApiError):
                        state.delete(
                            rtype,
                            meta["name"],
                            name,
                            preconditions={"uid": meta.get("uid")},
                            propagation="Background",
                        )
            left = [coll.objects[k] for k in keys if k in coll.objects]
            if left:
                remaining[rtype.qualified] += len(left)
                for obj in left:
                    for finalizer in obj["metadata"].get("finalizers") or ():
                        finalizers[finalizer] += 1
        ns_obj = self._namespace(name) or ns_obj
        if remaining:
            self._report(ns_obj, remaining, finalizers)
            return
        self._finalize(ns_obj)

    def _report(self, ns_obj: Obj, remaining: Counter[str], finalizers: Counter[str]) -> None:
        now = self._state.timestamp()
        old_conditions = {
            c.get("type"): c for c in (ns_obj.get("status") or {}).get("conditions") or ()
        }
        conditions: list[Obj] = []
        for ctype, ok_reason, ok_message in _CONDITIONS:
            status, reason, message = "False", ok_reason, ok_message
            if ctype == "NamespaceContentRemaining" and remaining:
                status, reason = "True", "SomeResourcesRemain"
                message = "Some resources are remaining: " + ", ".join(
                    f"{r} has {n} resource instances" for r, n in sorted(remaining.items())
                )
            elif ctype == "NamespaceFinalizersRemaining" and finalizers:
                status, reason = "True", "SomeFinalizersRemain"
                message = "Some content in the namespace has finalizers remaining: " + ", ".join(
                    f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())
                )
            previous = old_conditions.get(ctype)
            stamp = (
                previous["lastTransitionTime"]
                if previous and previous.get("status") == status
                else now
            )
            conditions.append(
                {
                    "type": ctype,
                    "status": status,
                    "lastTransitionTime": stamp,
                    "reason": reason,
                    "message": message,
                }
            )
        status_obj = {**(ns_obj.get("status") or {}), "conditions": conditions}
        if status_obj != ns_obj.get("status"):
            self._state.store_modified(self._type, {**ns_obj, "status": status_obj}, ns_obj)

    def _finalize(self, ns_obj: Obj) -> None:
        spec = ns_obj.get("spec") or {}
        fins = [f for f in spec.get("finalizers") or () if f != SPEC_FINALIZER]
        if fins != list(spec.get("finalizers") or ()):
            # The /finalize step: the controller gives up its spec finalizer.
            ns_obj = self._state.store_modified(
                self._type, {**ns_obj, "spec": _with_finalizers(spec, fins)}, ns_obj
            )
        if not fins and not ns_obj["metadata"].get("finalizers"):
            self._state.store_removed(self._type, ns_obj)
