"""Garbage collection by ``metadata.ownerReferences``, run in-process and synchronously.

Follows kube-controller-manager's garbage collector
(https://kubernetes.io/docs/concepts/architecture/garbage-collection/ and
https://github.com/kubernetes/kubernetes/blob/master/pkg/controller/garbagecollector/garbagecollector.go):

- An owner is matched by kind, name and **uid**, looked up in the dependent's namespace (or
  at cluster scope for a cluster-scoped kind). An owner that is missing, or whose uid
  differs, is *dangling*; one being deleted in the foreground is *waiting*; any other is
  *solid*.
- A dependent with a solid owner stays; references to dangling or waiting owners are
  removed from it. A dependent without one is deleted (foreground when a waiting owner asked
  for it and it has dependents itself, else by the finalizers it carries). So a dependent
  whose owner uid never existed is collected too.
- A reference whose kind the server does not serve, or a namespaced owner of a
  cluster-scoped dependent, cannot be resolved: the real collector retries it forever
  and deletes nothing; so does this one (it leaves the object alone).
- ``foregroundDeletion``: every dependent is deleted; the owner loses the finalizer (and so
  goes) once no dependent with ``blockOwnerDeletion: true`` is left.
- ``orphan``: the reference to the owner is removed from every dependent, then the finalizer.

Deletion options map to those finalizers as the generic registry does
(https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go,
``deletionFinalizersForGarbageCollection``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._state import ClusterState, ResourceType

Obj = dict[str, Any]

ORPHAN: Final = "orphan"
FOREGROUND: Final = "foregroundDeletion"
POLICIES: Final = ("Foreground", "Background", "Orphan")


def deletion_finalizers(
    finalizers: list[str], propagation: str | None, orphan_dependents: bool | None = None
) -> list[str]:
    """Return the finalizers an object has after a DELETE with these options.

    ``None`` options keep the GC finalizers the object already has (the default policy of
    custom resources and of the built-ins served here is background).
    """
    if orphan_dependents is not None:
        orphan, foreground = orphan_dependents, False
    elif propagation is not None:
        orphan, foreground = propagation == "Orphan", propagation == "Foreground"
    else:
        orphan, foreground = ORPHAN in finalizers, FOREGROUND in finalizers
    out = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    if orphan:
        out.append(ORPHAN)
    if foreground:
        out.append(FOREGROUND)
    return out


def check_delete_options(propagation: str | None, orphan_dependents: bool | None) -> None:
    """Raise 422 Invalid for DeleteOptions kube-apiserver refuses.

    (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go,
    ``ValidateDeleteOptions``.)
    """
    from ._state import invalid

    causes: list[tuple[str, str, str]] = []
    if propagation is not None and orphan_dependents is not None:
        causes.append(
            (
                "propagationPolicy",
                "FieldValueInvalid",
                f'Invalid value: "{propagation}": orphanDependents and deletionPropagation '
                "cannot be both set",
            )
        )
    if propagation is not None and propagation not in POLICIES:
        causes.append(
            (
                "propagationPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{propagation}": supported values: "Foreground", '
                '"Background", "Orphan"',
            )
        )
    if causes:
        raise invalid("DeleteOptions", "meta.k8s.io", "", causes)


def _refs(obj: Obj | None) -> list[Obj]:
    if obj is None:
        return []
    refs = obj.get("metadata", {}).get("ownerReferences")
    return [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []


class _Item:
    """An object the collector acts on, by identity (it re-reads the latest state)."""

    __slots__ = ("name", "namespace", "rtype", "uid")

    def __init__(self, rtype: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        self.rtype = rtype
        self.name: str = meta["name"]
        self.namespace: str | None = meta.get("namespace") if rtype.namespaced else None
        self.uid: str = meta.get("uid", "")

    def key(self) -> tuple[str, str, str | None, str]:
        return (self.rtype.group, self.rtype.plural, self.namespace, self.name)


class GarbageCollector:
    """Reacts to stored changes (`observe`) and acts on them when the state settles (`flush`)."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state
        self._gone: set[str] = set()  # uids of removed objects: their dependents are checked
        self._attempt: dict[tuple[str, str, str | None, str], _Item] = {}
        self._foreground: dict[str, _Item] = {}  # owners deleting their dependents first
        self._orphaning: dict[str, _Item] = {}  # owners orphaning their dependents
        # owner uid -> its dependents, kept in step with every stored change, so finding
        # dependents never scans the cluster (the real collector keeps a graph for this).
        self._by_owner: dict[str, dict[tuple[str, str, str | None, str], _Item]] = {}

    def observe(self, rtype: ResourceType, etype: str, obj: Obj, prev: Obj | None) -> None:
        """Queue what a stored change asks the collector to do."""
        meta = obj["metadata"]
        # Most objects have no owners: keep their writes cheap.
        before = _refs(prev) if prev is not None and prev["metadata"].get("ownerReferences") else []
        after = _refs(obj) if etype != "DELETED" and meta.get("ownerReferences") else []
        if before or after:
            self._index(rtype, obj, before, after)
        uid = meta.get("uid", "")
        if etype == "DELETED":
            if uid in self._by_owner:
                self._gone.add(uid)
            self._foreground.pop(uid, None)
            self._orphaning.pop(uid, None)
        else:
            if meta.get("deletionTimestamp"):
                finalizers = meta.get("finalizers") or ()
                if FOREGROUND in finalizers:
                    self._foreground[uid] = _Item(rtype, obj)
                if ORPHAN in finalizers:
                    self._orphaning[uid] = _Item(rtype, obj)
            if after:
                item = _Item(rtype, obj)
                self._attempt[item.key()] = item
        if before:
            # A dependent that went away, or dropped its reference, may unblock an owner
            # that waits for its dependents.
            now = {r.get("uid") for r in after}
            for ref in before:
                if ref.get("uid") not in now:
                    owner = self._waiting_owner(ref, meta.get("namespace"))
                    if owner is not None:
                        self._foreground[owner.uid] = owner

    def pending(self) -> bool:
        """Tell whether `flush` has work to do."""
        return bool(self._gone or self._attempt or self._foreground or self._orphaning)

    def flush(self) -> None:
        """Do the queued work (it may store changes, which queue more)."""
        from ._state import ApiError

        gone, self._gone = self._gone, set()
        orphaning, self._orphaning = self._orphaning, {}
        foreground, self._foreground = self._foreground, {}
        attempt, self._attempt = self._attempt, {}
        dependents = self._dependents(gone | set(orphaning) | set(foreground))
        for uid, owner in orphaning.items():
            self._orphan(owner, dependents.get(uid, []))
        for uid in gone:
            for dep in dependents.get(uid, []):
                attempt[dep.key()] = dep
        for uid in foreground:
            for dep in dependents.get(uid, []):
                latest = self._latest(dep)
                if latest is not None and not latest["metadata"].get("deletionTimestamp"):
                    attempt.setdefault(dep.key(), dep)
        # Dependents first, while their owner still waits for them (the real collector
        # queues them before the owner), then the owners whose blockers may be gone.
        for item in attempt.values():
            # Changed or gone meanwhile: the change that did it queued a new look.
            with contextlib.suppress(ApiError):
                self._attempt_to_delete(item)
        for owner in foreground.values():
            self._finish_foreground(owner)

    # -- lookups --------------------------------------------------------------------------

    def _index(self, rtype: ResourceType, obj: Obj, before: list[Obj], after: list[Obj]) -> None:
        item = _Item(rtype, obj)
        key = item.key()
        for ref in before:
            deps = self._by_owner.get(str(ref.get("uid")))
            if deps is not None:
                deps.pop(key, None)
                if not deps:
                    del self._by_owner[str(ref.get("uid"))]
        for ref in after:
            self._by_owner.setdefault(str(ref.get("uid")), {})[key] = item

    def _dependents(self, uids: set[str]) -> dict[str, list[_Item]]:
        found: dict[str, list[_Item]] = {}
        for uid in uids:
            deps = self._by_owner.get(uid)
            if deps:
                found[uid] = list(deps.values())
        return found

    def _latest(self, item: _Item) -> Obj | None:
        coll = self._state.collection(item.rtype)
        obj = coll.objects.get(f"{item.namespace}/{item.name}" if item.namespace else item.name)
        if obj is None or obj["metadata"].get("uid") != item.uid:
            return None
        return obj

    def _owner(self, ref: Obj, namespace: str | None) -> tuple[bool, Obj | None]:
        """Resolve an owner reference: ``(resolvable, owner or None when dangling)``."""
        api_version = str(ref.get("apiVersion") or "")
        group, _, version = api_version.rpartition("/")
        kind = ref.get("kind")
        rtype = self._state.lookup_kind(group, version, str(kind or ""))
        if rtype is None or not ref.get("name") or not ref.get("uid"):
            return False, None
        if rtype.namespaced and not namespace:
            return False, None  # a cluster-scoped dependent cannot have a namespaced owner
        coll = self._state.collection(rtype)
        key = f"{namespace}/{ref['name']}" if rtype.namespaced else str(ref["name"])
        owner = coll.objects.get(key)
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return True, None
        return True, owner

    def _waiting_owner(self, ref: Obj, namespace: str | None) -> _Item | None:
        resolved, owner = self._owner(ref, namespace)
        if not resolved or owner is None:
            return None
        meta = owner["metadata"]
        if meta.get("deletionTimestamp") and FOREGROUND in (meta.get("finalizers") or ()):
            api_version = str(ref.get("apiVersion") or "")
            group, _, version = api_version.rpartition("/")
            rtype = self._state.lookup_kind(group, version, str(ref.get("kind") or ""))
            assert rtype is not None
            return _Item(rtype, owner)
        return None

    # -- actions --------------------------------------------------------------------------

    def _patch_meta(self, item: _Item, meta_patch: Obj) -> None:
        self._state.patch(item.rtype, item.name, {"metadata": meta_patch}, item.namespace)

    def _orphan(self, owner: _Item, dependents: list[_Item]) -> None:
        from ._state import ApiError

        for dep in dependents:
            obj = self._latest(dep)
            if obj is None:
                continue
            refs = [r for r in _refs(obj) if r.get("uid") != owner.uid]
            with contextlib.suppress(ApiError):
                self._patch_meta(dep, {"ownerReferences": refs or None})
        self._drop_finalizer(owner, ORPHAN)

    def _drop_finalizer(self, item: _Item, finalizer: str) -> None:
        from ._state import ApiError

        obj = self._latest(item)
        if obj is None:
            return
        finalizers = obj["metadata"].get("finalizers") or []
        if finalizer not in finalizers:
            return
        rest = [f for f in finalizers if f != finalizer]
        with contextlib.suppress(ApiError):
            self._patch_meta(item, {"finalizers": rest or None})

    def _finish_foreground(self, owner: _Item) -> None:
        """Drop ``foregroundDeletion`` once no dependent blocks the owner's deletion."""
        obj = self._latest(owner)
        if obj is None or FOREGROUND not in (obj["metadata"].get("finalizers") or ()):
            return
        for dep in self._dependents({owner.uid}).get(owner.uid, []):
            latest = self._latest(dep)
            if latest is not None and any(
                r.get("uid") == owner.uid and r.get("blockOwnerDeletion") is True
                for r in _refs(latest)
            ):
                return
        self._drop_finalizer(owner, FOREGROUND)

    def _attempt_to_delete(self, item: _Item) -> None:
        obj = self._latest(item)
        if obj is None:
            return
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return  # already on its way; a foreground owner is handled on its own
        refs = _refs(obj)
        if not refs:
            return
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        for ref in refs:
            resolved, owner = self._owner(ref, item.namespace)
            if not resolved:
                return  # unresolvable: the real collector keeps retrying and deletes nothing
            if owner is None:
                dangling.append(ref)
            elif owner["metadata"].get("deletionTimestamp") and FOREGROUND in (
                owner["metadata"].get("finalizers") or ()
            ):
                waiting.append(ref)
            else:
                solid.append(ref)
        if solid:
            if dangling or waiting:
                drop = {r.get("uid") for r in dangling + waiting}
                keep = [r for r in refs if r.get("uid") not in drop]
                self._patch_meta(item, {"ownerReferences": keep})
            return
        finalizers = meta.get("finalizers") or ()
        if waiting and self._dependents({item.uid}):
            policy = "Foreground"
        elif ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        self._state.delete(
            item.rtype,
            item.name,
            item.namespace,
            preconditions={"uid": item.uid},
            propagation=policy,
        )
