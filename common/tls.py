"""TLS for every gRPC channel and bulk socket: a cluster CA, per-service certificates, contexts.

``ensure_ca`` and ``issue`` make what ``ffs cluster up`` uses by default (EC
P-256, with the ``cryptography`` library): a CA under DIR/tls and one
certificate per service naming its host names and addresses, keys mode 0600.
Real hosts bring their own files (``tls_cert``, ``tls_key``, ``tls_ca`` in the
service's TOML).

What TLS proves here: a client (or a node calling another) checks the
server's certificate against the cluster CA, and every byte is encrypted.
Who the *caller* is comes from its token or node key (common/auth.py), not
from a client certificate: grpcio's server credentials request client
certificates only when they require them (tested), which would force a
certificate on every user; node keys give mutual authentication between
nodes without that.

One configuration per process (``configure``): services set it at start from
their config; a client process takes its CA from ``tls_ca=`` or the
``FFS_TLS_CA`` variable on first use (``configure_client_from_env``).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import ssl

from .errors import InvalidArgument

CA_ENV = "FFS_TLS_CA"
CERT_DAYS = 3650


@dataclasses.dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM files of one service (cert and key) and the CA it trusts."""

    cert: str
    key: str
    ca: str

    def check(self) -> "TlsFiles":
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if not os.path.exists(path):
                raise InvalidArgument(f"TLS {what} file {path} does not exist")
        return self


def _write(path: str, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_ca(directory: str) -> tuple[str, str]:
    """(ca.pem, ca.key) in directory, made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    cert_path, key_path = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fireflyfs cluster CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return cert_path, key_path


def issue(ca_dir: str, out_dir: str, name: str, hosts: list[str]) -> TlsFiles:
    """A certificate for service name valid for hosts (names or addresses), signed by the CA in
    ca_dir, written as out_dir/name.pem and name.key (0600); reused when it exists."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert_path, ca_key_path = ensure_ca(ca_dir)
    os.makedirs(out_dir, exist_ok=True)
    files = TlsFiles(os.path.join(out_dir, f"{name}.pem"), os.path.join(out_dir, f"{name}.key"), ca_cert_path)
    if os.path.exists(files.cert) and os.path.exists(files.key):
        return files
    with open(ca_cert_path, "rb") as handle:
        ca_cert = x509.load_pem_x509_certificate(handle.read())
    with open(ca_key_path, "rb") as handle:
        ca_key = serialization.load_pem_private_key(handle.read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()), private=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return files


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context


def client_context(ca: str) -> ssl.SSLContext:
    """Verifies the server's certificate against the cluster CA, and its host name or address."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(ca)
    return context


@dataclasses.dataclass
class ProcessTls:
    """This process's TLS: gRPC credentials and bulk socket contexts (None: plaintext)."""

    ca: str | None = None
    bulk_server: ssl.SSLContext | None = None
    bulk_client: ssl.SSLContext | None = None


process_tls = ProcessTls()


def configure(files: TlsFiles | None = None, ca: str | None = None) -> None:
    """TLS for this process: a service passes its files (it serves and calls with TLS), a client
    only the CA it trusts. gRPC's credentials go to common/rpc's process_security."""
    import grpc

    from . import rpc

    ca = files.ca if files is not None else ca
    if ca is None:
        return
    if not os.path.exists(ca):
        raise InvalidArgument(f"TLS CA file {ca} does not exist")
    server_credentials = None
    if files is not None:
        files.check()
        server_credentials = grpc.ssl_server_credentials([(_read(files.key), _read(files.cert))])
        process_tls.bulk_server = server_context(files)
    process_tls.ca = ca
    process_tls.bulk_client = client_context(ca)
    rpc.process_security.configure(server_credentials=server_credentials,
                                   channel_credentials=grpc.ssl_channel_credentials(root_certificates=_read(ca)))


def configure_client_from_env(explicit_ca: str | None = None) -> None:
    """A client's TLS: tls_ca= (explicit_ca), else FFS_TLS_CA; nothing when neither is set (or
    this process already has TLS, as a service or an earlier client)."""
    ca = explicit_ca or os.environ.get(CA_ENV)
    if ca and process_tls.ca != ca and (explicit_ca or process_tls.ca is None):
        configure(ca=ca)
