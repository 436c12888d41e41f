"""What ``import crwatch`` costs: kubernetes-asyncio is loaded only when a Client needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_PROBE = """
import json, sys
import crwatch
before = "kubernetes_asyncio" in sys.modules
client = crwatch.Client.from_kubeconfig(sys.argv[1])
made = "kubernetes_asyncio" in sys.modules
import anyio
async def enter():
    async with client:
        pass
anyio.run(enter)
entered = "kubernetes_asyncio" in sys.modules
import crwatch._demo
print(json.dumps([before, made, entered, "crwatch._cli" in sys.modules]))
"""


def test_import_crwatch_loads_no_kubernetes_asyncio(tmp_path: Path) -> None:
    """``import crwatch`` and making a Client leave kubernetes-asyncio unloaded.

    Entering a kubeconfig Client (in a fresh interpreter) is what loads it. The demo
    does not import the command line it is run from (no ``_cli`` <-> ``_demo`` cycle).
    """
    # The kubeconfig only needs to load, not to reach a server: nothing listens there.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(kubeconfig)],
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
    )
    assert json.loads(done.stdout) == [False, False, True, False]
