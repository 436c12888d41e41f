"""``crwatch.compat.stream``: the official clients' ``Watch().stream`` loop, on crwatch.

The official clients' ``watch.Watch().stream(list_fn, *args, **kwargs)`` yields dicts
``{"type", "object", "raw_object"}`` from one watch request after another
(https://github.com/kubernetes-client/python/blob/master/kubernetes/base/watch/watch.py):
``raw_object`` is the object as a dict and ``object`` its model (a ``V1ConfigMap``; a dict
again for custom objects, whose list methods return ``object``). It does not list first,
raises on the second 410 in a row, and never notices a stalled connection.

:func:`stream` takes the same arguments and yields the same dicts, from
:func:`crwatch.watch` underneath: the initial state comes from a list, a 410 leads to a
relist (and the differences as events), and a stall to a reconnect. The resource is read
from the list method (its URL template) and its arguments; the credentials from the API
object's ``api_client.configuration``.

Given the synchronous client's method, iteration is a plain ``for`` loop: the watch runs
on an event loop in a thread of its own, started at the first ``next()`` and stopped when
the iteration is closed (``close()``, ``with``, the end of the iteration, or garbage
collection). That thread is the one place crwatch starts a thread: the caller is
synchronous, so nothing else could run the event loop. Given kubernetes-asyncio's method,
iteration is ``async for`` in the caller's task, with no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pydoc
import queue
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

import anyio
import orjson

from ._client import Client
from ._events import Event
from ._exceptions import InvalidOptionError
from ._resource import Resource
from ._watch import EventStream, Watch, watch

__all__ = ["Stream", "stream"]

# The list methods' URL templates, as the generated clients write them: ``'/api/v1/...'``
# (kubernetes-asyncio) or ``resource_path='/apis/...'`` (kubernetes >= 32).
_PATH = re.compile(r"""['"](/apis?/[^'"]*)['"]""")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

#: List options that a watch with a list first makes moot: accepted and ignored.
_IGNORED = frozenset(
    {
        "watch",
        "pretty",
        "allow_watch_bookmarks",
        "send_initial_events",
        "resource_version_match",
        "_preload_content",
        "_request_timeout",
        "async_req",
        "_return_http_data_only",
    }
)


def _source_path(api: object, name: str) -> str:
    """Return the URL template of ``api``'s list method ``name`` (from its generated code)."""
    cls = type(api)
    for candidate in (f"_{name}_serialize", f"{name}_with_http_info", name):
        fn = getattr(cls, candidate, None)
        if fn is None:
            continue
        with contextlib.suppress(OSError, TypeError):
            match = _PATH.search(inspect.getsource(inspect.unwrap(fn)))
            if match:
                return match.group(1)
    raise InvalidOptionError(
        f"cannot tell which resource {cls.__name__}.{name} lists: pass a list method of the "
        "official client (list_namespaced_custom_object, list_namespaced_config_map, ...)"
    )


def _resource_of(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Resource, str | None, dict[str, Any]]:
    """Return the resource, the namespace and the remaining (list option) arguments."""
    api = func.__self__  # type: ignore[attr-defined]
    name = func.__name__
    if not name.startswith("list_"):
        raise InvalidOptionError(f"stream() needs a list method, got {name}")
    template = _source_path(api, name)
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise InvalidOptionError(f"{name}: {exc}") from None
    options = dict(bound.arguments)
    options.update(options.pop("kwargs", {}))
    params: dict[str, str] = {}
    for placeholder in _PLACEHOLDER.findall(template):
        value = options.pop(placeholder, None)
        if not isinstance(value, str) or not value:
            raise InvalidOptionError(f"{name} needs {placeholder!r} (a non-empty string)")
        params[placeholder] = value
    parts = template.format(**params).strip("/").split("/")
    # /api/v1[/namespaces/NS]/PLURAL or /apis/GROUP/VERSION[/namespaces/NS]/PLURAL
    group, rest = ("", parts[1:]) if parts[0] == "api" else (parts[1], parts[2:])
    version, rest = rest[0], rest[1:]
    namespace = None
    if len(rest) == 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if len(rest) != 1:
        raise InvalidOptionError(f"{name} does not list a collection ({template})")
    return Resource(group, version, rest[0]), namespace, options


def _watch_options(options: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """Map the list method's options onto :func:`crwatch.watch`'s; return the deadline."""
    out: dict[str, Any] = {}
    timeout: float | None = None
    for key, value in options.items():
        if value is None or key in _IGNORED:
            continue
        if key in ("label_selector", "field_selector"):
            out[key] = value
        elif key == "limit":
            out["page_size"] = value
        elif key == "timeout_seconds":
            timeout = float(value)
        elif key == "resource_version":
            if value not in ("", "0"):
                raise InvalidOptionError(
                    "crwatch.compat.stream lists first and resumes by itself: drop "
                    f"resource_version={value!r} (the first events are the current objects)"
                )
        else:
            raise InvalidOptionError(f"crwatch.compat.stream does not support {key}=")
    return out, timeout


def _return_type(func: Callable[..., Any]) -> str:
    """Return the model name of one item of what ``func`` lists, as the official Watch finds it."""
    annotation = inspect.signature(func).return_annotation
    name = ""
    if inspect.isclass(annotation) and annotation is not inspect.Signature.empty:
        name = annotation.__name__
    if not name:
        for line in (pydoc.getdoc(func) or "").splitlines():
            if line.startswith(":rtype:"):
                name = line[len(":rtype:") :].strip()
                break
    return name.removesuffix("List")


class _Spec:
    """What to watch and how; shared by a Stream, its thread and its generator.

    The generator and the thread hold this, never the Stream, so that dropping the last
    reference to the Stream collects it at once (no cycle) and stops the thread.
    """

    __slots__ = ("func", "namespace", "options", "resource", "stopped", "timeout")

    def __init__(
        self,
        func: Callable[..., Any],
        resource: Resource,
        namespace: str | None,
        options: dict[str, Any],
        timeout: float | None,
    ) -> None:
        self.func = func
        self.resource = resource
        self.namespace = namespace
        self.options = options
        self.timeout = timeout
        self.stopped = False


class Stream:
    """The events of :func:`crwatch.compat.stream`, as the official ``Watch().stream``.

    Iterate it with ``for`` when it was made from the synchronous client's method, with
    ``async for`` when made from kubernetes-asyncio's. Each item is a dict
    ``{"type": "ADDED" | "MODIFIED" | "DELETED", "object": model or dict, "raw_object":
    dict}``. The iteration ends after ``timeout_seconds`` (when given) or :meth:`stop`,
    and raises crwatch's errors (:class:`crwatch.ForbiddenError`, ...) when the watch
    cannot go on.

    Close it when done early: ``close()`` / ``with`` for the synchronous form (which stops
    its thread; garbage collection does it too), ``aclose()`` / ``async with`` for the
    asynchronous one (which leaves the watch's task group; a ``break`` out of a bare
    ``async for`` leaves it open until then).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        resource: Resource,
        namespace: str | None,
        options: dict[str, Any],
        timeout: float | None,
        *,
        is_async: bool,
    ) -> None:
        self._spec = _Spec(func, resource, namespace, options, timeout)
        self._is_async = is_async
        self._return_type = _return_type(func)
        self._sync: Generator[dict[str, Any], None, None] | None = None
        self._watch: Watch | None = None
        self._events: EventStream | None = None
        self._deadline: float | None = None

    def __repr__(self) -> str:
        spec = self._spec
        where = f" in {spec.namespace!r}" if spec.namespace else ""
        kind = "async" if self._is_async else "sync"
        return f"<crwatch.compat.Stream {spec.resource}{where} {kind}>"

    def stop(self) -> None:
        """End the iteration before the next event, as the official ``Watch.stop()``."""
        self._spec.stopped = True

    # --- synchronous client: a thread running the event loop ---

    def __iter__(self) -> Stream:
        if self._is_async:
            raise TypeError(
                "this stream was made from kubernetes-asyncio's method: use `async for`"
            )
        return self

    def __next__(self) -> dict[str, Any]:
        if self._is_async:
            raise TypeError(
                "this stream was made from kubernetes-asyncio's method: use `async for`"
            )
        if self._spec.stopped:
            self.close()
            raise StopIteration
        if self._sync is None:
            self._sync = _thread_events(self._spec)
        return next(self._sync)

    def close(self) -> None:
        """Stop the watch and its thread (synchronous form); iteration then ends."""
        self._spec.stopped = True
        events, self._sync = self._sync, None
        if events is not None:
            events.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        events = getattr(self, "_sync", None)
        if events is not None:
            with contextlib.suppress(Exception):
                events.close()

    # --- kubernetes-asyncio: in the caller's task ---

    def __aiter__(self) -> Stream:
        if not self._is_async:
            raise TypeError("this stream was made from the synchronous client's method: use `for`")
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._is_async:
            raise TypeError("this stream was made from the synchronous client's method: use `for`")
        if self._spec.stopped:
            await self.aclose()
            raise StopAsyncIteration
        if self._events is None:
            spec = self._spec
            client = Client(spec.func.__self__.api_client)  # type: ignore[attr-defined]
            self._watch = _open_watch(client, spec)
            self._events = await self._watch.__aenter__()
            self._deadline = _deadline(spec.timeout)
        try:
            event = await _next_event(self._events, self._deadline)
        except BaseException as exc:
            await self._leave(type(exc), exc, exc.__traceback__)
            raise
        if event is None:
            await self.aclose()
            raise StopAsyncIteration
        return _async_item(self._spec.func, self._return_type, event)

    async def aclose(self) -> None:
        """Stop the watch (asynchronous form); iteration then ends."""
        self._spec.stopped = True
        await self._leave(None, None, None)

    async def _leave(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._spec.stopped = True
        watch_cm, self._watch = self._watch, None
        if watch_cm is not None:
            await watch_cm.__aexit__(exc_type, exc, tb)

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _open_watch(client: Client, spec: _Spec) -> Watch:
    return watch(client, spec.resource, namespace=spec.namespace, **spec.options)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


async def _next_event(events: AsyncIterator[Event], deadline: float | None) -> Event | None:
    """Return the next event, or ``None`` once ``deadline`` (monotonic) has passed."""
    if deadline is None:
        return await events.__anext__()
    with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
        return await events.__anext__()
    return None


def _async_item(func: Callable[..., Any], return_type: str, event: Event) -> dict[str, Any]:
    # What kubernetes-asyncio's Watch.unmarshal_event builds: ``object`` deserialized from
    # the JSON by the API object's own ApiClient (a fresh dict for ``object``).
    raw = orjson.loads(orjson.dumps(event.object))
    data = SimpleNamespace(data=orjson.dumps(raw).decode())
    api_client = func.__self__.api_client  # type: ignore[attr-defined]
    model = api_client.deserialize(response=data, response_type=return_type or "object")
    return {"type": event.type.value, "object": model, "raw_object": raw}


# --- the synchronous form's thread ---


#: Seconds given to closing transports before the thread's loop closes.
_CLOSE_GRACE = 2.0

#: Events the loop thread reads ahead of the consumer (the hand-off buffer's bound).
_AHEAD = 256


class _End:
    """The last item of the hand-off queue: the watch ended, with an error or not."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Runner:
    """An event loop in a daemon thread, holding one ``crwatch.watch`` open.

    A pump task in that loop iterates the watch and hands the events to the consumer's
    thread through a ``queue.Queue``, at most ``_AHEAD`` ahead: one lock per event instead
    of one cross-thread call (``run_coroutine_threadsafe`` per event tripled the cost of an
    event against the official client's loop). When the buffer is full the pump waits, so a
    consumer that stops iterating stops the reading too (crwatch's backpressure).
    """

    def __init__(self, spec: _Spec) -> None:
        self._spec = spec
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._space: asyncio.Event | None = None
        self._waiting = False
        self._items: queue.Queue[Event | _End] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="crwatch.compat", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._space = asyncio.Event()
        try:
            api_client, cleanup = _async_api_client(self._spec.func)
            try:
                async with (
                    _open_watch(Client(api_client), self._spec) as events,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(self._pump, events)
                    self._ready.set()
                    await self._stopping.wait()
                    tg.cancel_scope.cancel()
            finally:
                await api_client.close()
                await _settle_transports(_CLOSE_GRACE)
                cleanup()
        except BaseException as exc:
            self._error = exc
        finally:
            self._items.put(_End(self._error))
            self._ready.set()

    async def _pump(self, events: EventStream) -> None:
        assert self._space is not None
        items = self._items
        try:
            async for event in events:
                while items.qsize() >= _AHEAD:
                    # Announce the wait, then look again: a get() in between sees the flag.
                    self._space.clear()
                    self._waiting = True
                    if items.qsize() < _AHEAD:
                        break
                    await self._space.wait()
                self._waiting = False
                items.put(event)
        except Exception as exc:
            items.put(_End(exc))

    def get(self, deadline: float | None) -> Event | None:
        """Return the next event, ``None`` at the deadline; raise the watch's error."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            return None
        if self._waiting:
            self._waiting = False
            self._call(self._space)
        if isinstance(item, _End):
            self._items.put(item)  # for any later get()
            if item.error is not None:
                raise item.error
            return None
        return item

    def _call(self, event: asyncio.Event | None) -> None:
        loop = self._loop
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def stop(self) -> None:
        self._call(self._stopping)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)


async def _settle_transports(grace: float) -> None:
    """Let this thread's loop finish closing its sockets before it closes.

    Closed connections finish closing in the next loop iterations, and asyncio.run would
    close the loop first and leak their sockets
    (https://docs.aiohttp.org/en/stable/client_advanced.html#graceful-shutdown). A
    connection cancelled in the middle of its TLS handshake is worse: asyncio keeps its
    socket open until the TLS shutdown after the handshake, which no pool tracks. The loop
    is this thread's own, so every transport on it is ours: wait for them to close, up to
    ``grace`` seconds, then abort what is left. CPython's selector loops keep their
    transports in ``_transports``; on a loop without it, a few iterations are all we give.
    """
    loop = asyncio.get_running_loop()
    transports: Mapping[int, asyncio.Transport] = getattr(loop, "_transports", {})
    deadline = loop.time() + grace
    for _ in range(8):
        await asyncio.sleep(0)
    while True:
        open_ = [t for t in list(transports.values()) if _socket_open(t)]
        if not open_:
            return
        if loop.time() >= deadline:
            for transport in open_:
                transport.abort()
            await asyncio.sleep(0)
            return
        await asyncio.sleep(0.01)


def _socket_open(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.fileno() != -1


def _thread_events(spec: _Spec) -> Generator[dict[str, Any], None, None]:
    """Yield the official client's event dicts from a runner; stop it when closed."""
    from kubernetes import watch as official_watch  # the caller's own client

    unmarshal: Any = official_watch.Watch()  # type: ignore[no-untyped-call]
    return_type = unmarshal.get_return_type(spec.func)
    runner = _Runner(spec)
    runner.start()
    try:
        deadline = _deadline(spec.timeout)
        while not spec.stopped:
            event = runner.get(deadline)
            if event is None:
                return
            if return_type == "object":
                # Custom objects: the official Watch gives two equal dicts, the parsed line
                # and its deserialized copy; orjson does the same three times faster.
                data = orjson.dumps(event.object)
                yield {
                    "type": event.type.value,
                    "object": orjson.loads(data),
                    "raw_object": orjson.loads(data),
                }
            else:
                # The official client's own conversion: identical ``object`` models.
                line = orjson.dumps({"type": event.type.value, "object": event.object})
                yield unmarshal.unmarshal_event(line.decode(), return_type)
    finally:
        runner.stop()


def _async_api_client(func: Callable[..., Any]) -> tuple[Any, Callable[[], None]]:
    """Build a kubernetes-asyncio ApiClient with the sync client's host and credentials."""
    from kubernetes_asyncio import client as aio

    source = func.__self__.api_client.configuration  # type: ignore[attr-defined]
    config = aio.Configuration()
    config.host = source.host
    config.api_key = dict(source.api_key or {})
    config.api_key_prefix = dict(source.api_key_prefix or {})
    config.username = source.username
    config.password = source.password
    config.verify_ssl = source.verify_ssl
    config.cert_file = source.cert_file
    config.key_file = source.key_file
    config.assert_hostname = source.assert_hostname
    config.tls_server_name = getattr(source, "tls_server_name", None)
    config.proxy = getattr(source, "proxy", None)
    config.ssl_ca_cert = source.ssl_ca_cert
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    ca_data = getattr(source, "ca_cert_data", None)
    if ca_data and not source.ssl_ca_cert:
        # kubernetes-asyncio reads the CA from a file only.
        fd, path = tempfile.mkstemp(prefix="crwatch-ca-", suffix=".crt")
        with os.fdopen(fd, "wb") as f:
            f.write(ca_data.encode() if isinstance(ca_data, str) else ca_data)
        config.ssl_ca_cert = path

        def cleanup() -> None:
            Path(path).unlink(missing_ok=True)

    return aio.ApiClient(config), cleanup


def stream(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Stream:
    """Watch like the official client's ``watch.Watch().stream(func, *args, **kwargs)``.

    ::

        from kubernetes import client, config
        import crwatch.compat

        config.load_kube_config()
        api = client.CustomObjectsApi()
        for event in crwatch.compat.stream(api.list_namespaced_custom_object,
                                           "example.com", "v1", "default", "widgets"):
            print(event["type"], event["object"]["metadata"]["name"])

    Args:
        func: a bound list method of an API object of the official ``kubernetes``
            client (iterate with ``for``) or of kubernetes-asyncio (``async for``):
            ``CustomObjectsApi.list_namespaced_custom_object``,
            ``list_cluster_custom_object``, or a built-in type's, such as
            ``CoreV1Api.list_namespaced_config_map``.
        *args: ``func``'s positional arguments (group, version, namespace, plural...).
        **kwargs: ``func``'s options: ``label_selector``, ``field_selector``, ``limit``
            (the list's page size) and ``timeout_seconds`` (end the iteration after that
            long) are honoured; ``watch``, ``allow_watch_bookmarks`` and other request
            options are ignored. ``resource_version`` is refused unless ``""``/``"0"``.

    Returns:
        A :class:`Stream` of ``{"type", "object", "raw_object"}`` dicts.

    Raises:
        InvalidOptionError: ``func`` is not a list method of either official client, an
            argument is missing, or an option is not supported.
    """
    self_ = getattr(func, "__self__", None)
    module = type(self_).__module__ if self_ is not None else ""
    if module.startswith("kubernetes_asyncio."):
        is_async = True
    elif module.startswith("kubernetes."):
        is_async = False
    else:
        raise InvalidOptionError(
            "stream() needs a bound list method of a kubernetes or kubernetes_asyncio API "
            f"object, got {func!r}"
        )
    resource, namespace, options = _resource_of(func, args, kwargs)
    watch_options, timeout = _watch_options(options)
    return Stream(func, resource, namespace, watch_options, timeout, is_async=is_async)
