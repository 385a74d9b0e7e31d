"""Every package's ``__all__`` names exactly its public attributes (httpx's test, adapted)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["schemas", "producer", "consumers"])
def test_all_is_honest(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "duplicate names in __all__"
    missing = {name for name in exported if not hasattr(module, name)}
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(package + ".")
    }
    assert public <= exported, (
        f"{package} exports public names missing from __all__: {public - exported}"
    )


def test_schemas_imports_no_kafka_or_redis() -> None:
    import subprocess
    import sys

    code = (
        "import sys, schemas, schemas.export;"
        "banned={'kafka','redis','aiokafka','faust','producer','consumers'};"
        "bad=[m for m in sys.modules if m.split('.')[0] in banned];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"schemas imports {proc.stdout.strip()}"


@pytest.mark.parametrize(
    ("package", "forbidden"), [("producer", "consumers"), ("consumers", "producer")]
)
def test_producer_and_consumers_never_import_each_other(package: str, forbidden: str) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, pkgutil, importlib, {package};"
        f"mods=pkgutil.walk_packages({package}.__path__, '{package}.');"
        "[importlib.import_module(m.name) for m in mods];"
        f"sys.exit(1 if '{forbidden}' in sys.modules else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{package} imports {forbidden}: {proc.stderr[-500:]}"
