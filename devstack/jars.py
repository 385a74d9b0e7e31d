"""Apache Kafka's broker jars, resolved by Maven from ``devstack/pom.xml`` into a cache.

The jars live in ``<cache_root()>/kafka-<version>/libs`` (``~/.cache/revocast`` unless
``REVOCAST_CACHE`` says otherwise). Once a fetch completed, a marker tied to the pom's
digest makes later starts offline. An AppCDS class archive beside the jars lets later
JVMs start a second or two sooner.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from devstack.process import DevstackError, one_line

log = logging.getLogger("devstack")

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
MAVEN_TIMEOUT = 1200.0
MARKER_NAME = ".revocast-complete.json"
MVN_MISSING = (
    "mvn not found on PATH: install Maven (apt-get install -y maven) so the Kafka {version} "
    "jars can be fetched, or set KAFKA_BOOTSTRAP_SERVERS"
)


def cache_root() -> Path:
    """``$REVOCAST_CACHE``, else ``~/.cache/revocast``."""
    return Path(os.environ.get("REVOCAST_CACHE") or "~/.cache/revocast").expanduser()


def kafka_version() -> str:
    """The Kafka version pinned by ``devstack/pom.xml`` (its ``kafka.version`` property)."""
    try:
        root = ET.parse(POM).getroot()  # noqa: S314 - our own file
    except (OSError, ET.ParseError) as exc:
        raise DevstackError(f"cannot read {POM}: {exc}") from exc
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = root.find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise DevstackError(f"{POM} has no <kafka.version> property: restore it")
    return (node.text or "").strip()


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _cache_complete(libs: Path, version: str) -> bool:
    try:
        marker = json.loads((libs / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("pom_sha256") == _pom_digest()
        and (libs / f"kafka_2.13-{version}.jar").is_file()
        and (libs / f"kafka-clients-{version}.jar").is_file()
    )


def _maven_error(output: str) -> str:
    """The informative part of Maven's first ``[ERROR]`` line."""
    errors = [ln.split("[ERROR]", 1)[1].strip() for ln in output.splitlines() if "[ERROR]" in ln]
    errors = [ln for ln in errors if ln]
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    best = errors[0] if errors else (lines[-1] if lines else "no output")
    best = best.split(" -> [Help", 1)[0]
    # "Failed to execute goal ... on project X: Could not resolve ...: Could not transfer ..."
    # - the last "Could not" clause is the cause.
    cause = best.rfind("Could not ")
    return one_line(best[cause:] if cause > 0 else best, 240)


def ensure_kafka_jars(offline_ok: bool = True) -> Path:
    """Return the directory holding the broker's runtime jars, fetching them if needed.

    The jars live in ``<cache_root()>/kafka-<version>/libs``. With ``offline_ok=True``
    (the default) a complete cache - one whose marker matches the current pom - is
    returned without touching the network or Maven. ``offline_ok=False`` re-runs Maven
    even then (a refresh). Maven copies into a staging directory that replaces ``libs``
    only once the copy succeeded, under a file lock, so concurrent callers are safe.
    """
    version = kafka_version()
    base = cache_root() / f"kafka-{version}"
    libs = base / "libs"
    if offline_ok and _cache_complete(libs, version):
        return libs

    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if offline_ok and _cache_complete(libs, version):  # another process fetched them
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise DevstackError(MVN_MISSING.format(version=version))
        staging = base / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        log.info("fetching Kafka %s jars: %s", version, " ".join(cmd))
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=MAVEN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise DevstackError(
                f"mvn did not finish fetching the Kafka {version} jars within "
                f"{MAVEN_TIMEOUT:.0f} s: check access to Maven Central or set "
                "KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        if done.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise DevstackError(
                f"mvn could not fetch the Kafka {version} jars (exit {done.returncode}: "
                f"{_maven_error(done.stdout + done.stderr)}): check access to Maven Central "
                "(proxy settings in ~/.m2/settings.xml) or set KAFKA_BOOTSTRAP_SERVERS"
            )
        marker = {
            "kafka_version": version,
            "pom_sha256": _pom_digest(),
            "jars": sorted(p.name for p in staging.glob("*.jar")),
            "fetched_at": time.time(),
        }
        (staging / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")
        old = base / f"libs.old-{os.getpid()}"
        if libs.exists():
            libs.rename(old)
        staging.rename(libs)
        shutil.rmtree(old, ignore_errors=True)
        return libs


def cds_archive(java: str, libs: Path) -> Path | None:
    """Where the AppCDS archive for this JVM and this set of jars lives (may not exist yet).

    The name hashes the JVM binary (path, size, mtime) and the jar cache's marker, so a
    JDK upgrade or a re-fetch gets a new archive instead of a mismatched one.
    """
    try:
        real_java = Path(java).resolve()
        st = real_java.stat()
        marker = (libs / MARKER_NAME).read_bytes()
    except OSError:
        return None  # no marker: jars passed in by hand; skip the archive
    key = hashlib.sha256(
        f"{real_java}\0{st.st_size}\0{st.st_mtime_ns}\0".encode() + marker
    ).hexdigest()[:16]
    directory = libs.parent / "cds"
    try:
        directory.mkdir(exist_ok=True)
    except OSError:
        return None
    return directory / f"kafka-{key}.jsa"


def libs_version(libs: Path) -> str:
    """The Kafka version on a classpath, read from the kafka-clients jar's name."""
    for jar in libs.glob("kafka-clients-*.jar"):
        return jar.name.removeprefix("kafka-clients-").removesuffix(".jar")
    raise DevstackError(f"{libs} has no kafka-clients jar: run `python -m devstack fetch`")


def random_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints, without starting a JVM for it."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
