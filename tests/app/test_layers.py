"""The layers read top-down: app -> services -> core -> generated code, and nothing points back up; the app
reaches a service only through its `module.py` (and the settings section that module names)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pynode
from pynode.app import modules

ROOT = Path(pynode.__file__).resolve().parent
SERVICES = {m.name for m in modules.MODULES}


def _imports(package: str) -> dict[str, set[str]]:
    """`pynode.*` modules each file of `package` imports (at any depth, lazily or not)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(ROOT))] = {n for n in names if n.startswith("pynode.")}
    return found


def test_core_imports_no_service_and_not_the_app() -> None:
    for path, names in _imports("core").items():
        above = {n for n in names if n.split(".")[1] in SERVICES | {"app"}}
        assert not above, f"core/{path} imports {sorted(above)}"


def test_a_service_imports_only_core_and_itself() -> None:
    for service in SERVICES:
        for path, names in _imports(service).items():
            foreign = {n for n in names if n.split(".")[1] not in {"core", service}}
            assert not foreign, f"{service}/{path} imports {sorted(foreign)}: reach other services via a peer port"


def test_every_service_has_one_module_and_is_listed_once() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/module.py")} - {"core"}  # core/module.py: the protocol
    assert packages == SERVICES
    assert len(modules.names()) == len(set(modules.names()))


# The app may name these two modules of a service, nothing deeper: everything else comes through the module.
SEAM = ("module", "settings")


def test_the_app_imports_only_each_services_module_and_settings() -> None:
    for path, names in _imports("app").items():
        deeper = {
            n for n in names if n.split(".")[1] in SERVICES and (len(n.split(".")) < 3 or n.split(".")[2] not in SEAM)
        }
        assert not deeper, f"{path} imports {sorted(deeper)}: go through the service's module.py"


# What building a service loads, never listing one: the app and the CLI import every `<svc>.module` (and through
# them `core.module`) to know the services, so those files keep adapters and the gRPC server inside `build()`.
HEAVY = ("sqlalchemy", "aiosqlite", "psycopg", "redis", "minio", "PIL", "grpc", "jwt", "bcrypt", "httpx")


def test_importing_every_services_module_loads_no_adapter() -> None:
    listing = "import pynode.app.modules, pynode.core.module"
    seams = [f"pynode.{name}.module" for name in sorted(SERVICES)]
    script = (
        f"import json, sys; {listing}; import {', '.join(seams)}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    # A fresh interpreter: this one has loaded everything already.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(done.stdout)
    assert loaded == [], f"importing the modules loads {loaded}: import adapters inside build()"


def test_the_embedded_defaults_load_neither_redis_nor_minio(tmp_path: Path) -> None:
    # Each takes a second or two to import on a busy laptop: `scripts/run` (memory://, local files) pays for
    # neither. The bootstrap and the files module are imported whole, and their default adapters built.
    script = f"""
import asyncio, json, sys
from pathlib import Path
from pynode.app import bootstrap
from pynode.core.executors import Executors
from pynode.core.settings import StoreSettings
from pynode.files.module import open_storage
from pynode.files.settings import FilesSettings
stores = StoreSettings()
bootstrap.build_kv(stores, Path({str(tmp_path)!r}))
bootstrap.build_feed(stores)
bootstrap.build_streams(stores)
async def local():
    executors = Executors()
    *_, close = await open_storage(FilesSettings(), Path({str(tmp_path)!r}), executors)
    await close()
    await executors.close()
asyncio.run(local())
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {{'redis', 'minio'}})))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVPYNODE_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
