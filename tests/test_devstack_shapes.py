"""The cluster and secure-mode layouts devstack writes, and `revocast dev` as an installed
command: checked without starting a JVM (the brokers themselves run in tests/cluster and
tests/secure)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from devstack import DevstackError, KafkaCluster, SecureSetup, Services
from devstack.cli import main
from devstack.secure import service_user


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")


def test_cluster_nodes_share_a_quorum_and_replicate_three_ways(tmp_path: Path) -> None:
    cluster = KafkaCluster(3)
    cluster._assign_ports()
    ports = [p for n in cluster.nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == 6, "every node gets its own two ports"
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster.nodes)
    for node in cluster.nodes:
        node.voters = voters
        props = _props(node._server_properties(tmp_path / "data"))
        assert props["controller.quorum.voters"] == voters
        assert props["node.id"] == str(node.node_id)
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["unclean.leader.election.enable"] == "false"
        assert props["listeners"].startswith(f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://")
    assert cluster.bootstrap == ",".join(f"127.0.0.1:{n.port}" for n in cluster.nodes)


def test_cluster_size_and_ports_are_checked() -> None:
    with pytest.raises(DevstackError, match="1 to 9 nodes, not 0"):
        KafkaCluster(0)
    with pytest.raises(DevstackError, match="2 broker ports given for 3 brokers"):
        KafkaCluster(3, ports=[1, 2])


def test_secure_material_is_private_and_verifiable(tmp_path: Path) -> None:
    setup = SecureSetup.generate(tmp_path / "tls", ["orders", "billing"])
    for name in ("broker.p12", "users.json"):
        mode = stat.S_IMODE((setup.directory / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    ca = x509.load_pem_x509_certificate(setup.ca_file.read_bytes())
    store = pkcs12.load_pkcs12(
        (setup.directory / "broker.p12").read_bytes(),
        setup._key_password.encode(),
    )
    assert store.cert is not None
    cert = store.cert.certificate
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert sorted(setup.users) == sorted(["admin", "broker", "iam", "svc-orders", "svc-billing"])
    assert len(set(setup.users.values())) == len(setup.users), "every user has its own password"
    assert SecureSetup.load(setup.directory).users == setup.users


def test_secure_layout_denies_by_default_and_authenticates_every_listener(
    tmp_path: Path,
) -> None:
    setup = SecureSetup.generate(tmp_path / "tls", ["orders"])
    props = setup.server_properties()
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:admin;User:broker"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    scram = setup.format_args()
    assert scram.count("--add-scram") == len(setup.users)
    assert all("PLAINTEXT" not in arg for arg in scram)


def test_service_names_are_checked() -> None:
    assert service_user("orders") == "svc-orders"
    for bad in ("", "Orders", "a b", "x" * 64, "svc;drop"):
        with pytest.raises(DevstackError, match="is not 1-63 lowercase"):
            service_user(bad)


def test_unknown_principal_is_named(tmp_path: Path) -> None:
    setup = SecureSetup.generate(tmp_path / "tls", ["orders"])
    with pytest.raises(DevstackError, match="no SCRAM user 'svc-billing'"):
        setup.client("svc-billing")


def test_up_refuses_one_port_for_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--brokers", "3", "--kafka-port", "19999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("devstack: error: --kafka-port names one node's port")
    assert err.count("\n") == 1


@pytest.mark.integration
def test_revocast_dev_runs_from_any_directory(tmp_path: Path, services: Services) -> None:
    """The installed `revocast dev run` finds its pom and runs CMD with the stack's variables."""
    revocast = Path(sys.executable).with_name("revocast")
    env = {**os.environ, **services.env(), "PYTHONPATH": ""}
    done = subprocess.run(
        [
            str(revocast),
            "dev",
            "run",
            "--",
            sys.executable,
            "-c",
            "import os, devstack; print(os.environ['KAFKA_BOOTSTRAP_SERVERS']); "
            "print(devstack.kafka_version())",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == services.kafka_bootstrap
    assert lines[1].count(".") == 2, "the pom's Kafka version, read from the installed package"
    bad = subprocess.run(
        [str(revocast), "dev", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "revocast dev: error: nothing to run: use `revocast dev run -- CMD [ARGS...]`"
    )
