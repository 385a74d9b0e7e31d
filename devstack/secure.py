"""Secure mode for the local Kafka: TLS with a generated CA, SCRAM-SHA-512 users, ACLs.

The trust model, as ACLs on the three revocast topics:

==================  ==========================  ===========================
principal           events topic                receipts / dead letters
==================  ==========================  ===========================
``User:iam``        write, read, describe       read, describe
``User:svc-<name>`` read, describe              write, describe
``User:admin``      super user (topics, ACLs)   super user
``User:broker``     super user (replication)    super user
anyone else         refused                     refused
==================  ==========================  ===========================

The IAM side reads what it needs to answer "is it in force, and where": the events topic
(to locate an event's partition and offset), receipts, and dead letters (which services
refused an event, and why).

So a service that is compromised can forge receipts (they are measurements) but can
never write an event: only the IAM principal makes a revocation. Signatures stay the
second line: an event written by the IAM principal is still verified by every consumer.

Layout of one node:

* client and inter-broker listener ``SASL_SSL``: TLS 1.2+ with a server certificate signed
  by the generated CA, then SCRAM-SHA-512. A plaintext client is refused at the TLS
  handshake; a wrong password at the SASL step.
* controller listener ``SSL`` with client certificates required (mutual TLS): SCRAM
  cannot authenticate the quorum itself, since its credentials live in the metadata
  the quorum replicates. The certificate's CN maps to ``User:broker``.
* ``StandardAuthorizer``, ``allow.everyone.if.no.acl.found=false``: what is not granted
  is denied.

The SCRAM users are created at format time (``kafka-storage format --add-scram``), so the
cluster never runs a moment without them. Keys, certificates and ``users.json`` are
written with mode 0600 into the directory given to :meth:`SecureSetup.generate`.

    setup = SecureSetup.generate(tmp_dir, services=["orders", "billing"])
    with KafkaBroker(security=setup) as kafka:
        setup.grant(kafka.bootstrap, TopicNames())
        publisher_options = setup.client("iam").to_kafka_python()
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from devstack.process import DevstackError, one_line
from schemas import TopicNames
from schemas.security import ENV_PREFIX, KafkaSecurity

__all__ = ["ADMIN_USER", "BROKER_USER", "IAM_USER", "SecureSetup", "service_user"]

ADMIN_USER = "admin"
BROKER_USER = "broker"
IAM_USER = "iam"
MECHANISM = "SCRAM-SHA-512"
DEFAULT_SERVICES = ("orders", "billing", "agents")
CERT_DAYS = 30
_SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def service_user(service: str) -> str:
    """The Kafka principal name of a service: ``svc-<service>``."""
    if not _SERVICE_NAME.match(service):
        raise DevstackError(
            f"service name {service!r} is not 1-63 lowercase letters, digits, '.', '_' or '-'"
        )
    return f"svc-{service}"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 file (never through an existing file or symlink)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _generate_pki(directory: Path, key_password: str) -> None:
    """A CA, and one certificate for every node (CN=broker, SAN 127.0.0.1 and localhost)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=CERT_DAYS)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "revocast devstack CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_USER)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    # The nodes' key store is PKCS#12, not PEM: Kafka reads an encrypted PEM key through
    # the JDK's EncryptedPrivateKeyInfo, which on JDK 17 has no PBES2 (the only scheme
    # cryptography writes), and Kafka refuses a PEM key store without a key password.
    # The trust store (ca.pem) is PEM.
    store = pkcs12.serialize_key_and_certificates(
        BROKER_USER.encode(),
        key,
        cert,
        [ca_cert],
        serialization.BestAvailableEncryption(key_password.encode()),
    )
    _write_private(directory / "broker.p12", store)
    # The CA key is not kept: nothing else is ever signed by this CA.


class SecureSetup:
    """Certificates, SCRAM users and ACLs of one secured devstack (a :class:`NodeSecurity`).

    Build with :meth:`generate` (new material) or :meth:`load` (a directory written
    before); pass as ``security=`` to :class:`~devstack.broker.KafkaBroker` or
    :class:`~devstack.cluster.KafkaCluster`.
    """

    listener_name = "SASL_SSL"
    listener_protocol = "SASL_SSL"
    controller_protocol = "SSL"

    def __init__(self, directory: Path, users: Mapping[str, str], key_password: str) -> None:
        self.directory = directory
        self.users = dict(users)
        self._key_password = key_password

    # -- material

    @classmethod
    def generate(cls, directory: Path, services: Iterable[str] = DEFAULT_SERVICES) -> SecureSetup:
        """Write a CA, the nodes' key store and random SCRAM passwords into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        names = [ADMIN_USER, BROKER_USER, IAM_USER, *(service_user(s) for s in services)]
        if len(set(names)) != len(names):
            raise DevstackError(f"service names repeat or clash with built-in users: {names}")
        users = {name: secrets.token_urlsafe(24) for name in names}
        key_password = secrets.token_urlsafe(24)
        _generate_pki(directory, key_password)
        record = {"mechanism": MECHANISM, "users": users, "key_password": key_password}
        _write_private(directory / "users.json", (json.dumps(record, indent=1) + "\n").encode())
        return cls(directory, users, key_password)

    @classmethod
    def load(cls, directory: Path) -> SecureSetup:
        """The material :meth:`generate` wrote into ``directory``."""
        path = directory / "users.json"
        try:
            record = json.loads(path.read_text())
            users, key_password = record["users"], record["key_password"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DevstackError(
                f"cannot read {path} ({one_line(str(exc), 120)}): regenerate it"
            ) from None
        if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
            raise DevstackError(f"{path}: 'users' is not a name -> password map: regenerate it")
        return cls(directory, users, str(key_password))

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def services(self) -> list[str]:
        return [u.removeprefix("svc-") for u in self.users if u.startswith("svc-")]

    # -- NodeSecurity

    def server_properties(self) -> dict[str, str]:
        broker_password = self.users[BROKER_USER]
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{broker_password}";'
        )
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.directory / "broker.p12"),
            "ssl.keystore.password": self._key_password,
            "ssl.key.password": self._key_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.client.auth": "none",
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([A-Za-z0-9._-]+)(,.*)?$/$1/,DEFAULT",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN_USER};User:{BROKER_USER}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_args(self) -> list[str]:
        args: list[str] = []
        for name, password in self.users.items():
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return args

    def admin_options(self) -> dict[str, Any]:
        return self.client(ADMIN_USER).to_kafka_python()

    # -- clients

    def client(self, user: str) -> KafkaSecurity:
        """The security options of principal ``user`` (``"iam"``, ``"svc-orders"``...)."""
        if user not in self.users:
            raise DevstackError(f"no SCRAM user {user!r}: known users are {sorted(self.users)}")
        return KafkaSecurity.model_validate(
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": MECHANISM,
                "sasl_username": user,
                "sasl_password": self.users[user],
                "ssl_cafile": self.ca_file,
            }
        )

    def env(self, user: str) -> dict[str, str]:
        """``REVOCAST_KAFKA_*`` variables that make revocast's settings act as ``user``."""
        sec = self.client(user)
        return {
            f"{ENV_PREFIX}SECURITY_PROTOCOL": sec.security_protocol,
            f"{ENV_PREFIX}SASL_MECHANISM": MECHANISM,
            f"{ENV_PREFIX}SASL_USERNAME": user,
            f"{ENV_PREFIX}SASL_PASSWORD": self.users[user],
            f"{ENV_PREFIX}SSL_CAFILE": str(self.ca_file),
        }

    # -- ACLs

    def grant(self, bootstrap: str, topics: TopicNames, *, timeout: float = 10.0) -> int:
        """Create the trust model's ACLs (module docstring) on ``topics``; returns how many."""
        from kafka.admin import (
            ACL,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePattern,
            ResourceType,
        )

        from devstack.broker import admin_client

        def allow(user: str, op: ACLOperation, topic: str) -> ACL:
            return ACL(
                principal=f"User:{user}",
                host="*",
                operation=op,
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(
                    ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL
                ),
            )

        read, write, describe = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE
        acls = [
            allow(IAM_USER, write, topics.events),
            allow(IAM_USER, read, topics.events),
            allow(IAM_USER, describe, topics.events),
            # `revoke` reads the events topic's retention before accepting a long lifetime.
            allow(IAM_USER, ACLOperation.DESCRIBE_CONFIGS, topics.events),
            allow(IAM_USER, read, topics.receipts),
            allow(IAM_USER, describe, topics.receipts),
            allow(IAM_USER, read, topics.dead_letter),
            allow(IAM_USER, describe, topics.dead_letter),
        ]
        for user in (u for u in self.users if u.startswith("svc-")):
            acls += [
                allow(user, read, topics.events),
                allow(user, describe, topics.events),
                allow(user, write, topics.receipts),
                allow(user, describe, topics.receipts),
                allow(user, write, topics.dead_letter),
                allow(user, describe, topics.dead_letter),
            ]
        from kafka.errors import KafkaError

        try:
            admin = admin_client(bootstrap, timeout, self.admin_options())
            try:
                result = admin.create_acls(acls)
            finally:
                admin.close()
        except KafkaError as exc:
            raise DevstackError(
                f"could not create the ACLs at {bootstrap} within {timeout:g} s "
                f"({one_line(f'{type(exc).__name__}: {exc}', 160)}): is the broker up?"
            ) from None
        failed = result.get("failed") or []
        if failed:
            raise DevstackError(
                f"the broker refused {len(failed)} of {len(acls)} ACLs ({failed[0]!r}): "
                "is the StandardAuthorizer configured and the admin a super user?"
            )
        return len(acls)
