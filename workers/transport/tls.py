"""TLS for the MQTT and WebSocket listeners: the server ``ssl.SSLContext`` and the client certificate subject.

``build_ssl_context`` reads the certificate chain and key named by the
settings (TLS 1.2 or later only). With ``tls_ca`` set, clients may present a
certificate signed by that CA (``CERT_OPTIONAL``: a bad one fails the
handshake, none is accepted); with ``tls_require_client_cert`` too, a client
without one is refused during the handshake (``CERT_REQUIRED``).
``cert_subject`` turns the verified peer certificate that the transport
reports (``get_extra_info("peercert")``) into an RFC 4514 string such as
``CN=device-1,O=Acme,C=DE``, which the auth provider receives in
``ConnectInfo.cert_subject``; an unverified or absent certificate gives
``None``.

Reload (SIGHUP): ``ReloadableTLS`` owns the context the listeners were
started with and a *current* one; ``reload`` builds a fresh context from the
files (a failure keeps the current one and raises) and every handshake after
that is switched to it from the ClientHello callback (``sni_callback``, run
with or without SNI), so new connections get the new certificate, key and CA
bundle while established ones keep theirs. Whether client certificates are
required is fixed at start.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Protocol

# short names of the usual attribute types (RFC 4514 section 3; the rest keep Python's long name)
_SHORT = {"commonName": "CN", "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
          "organizationName": "O", "organizationalUnitName": "OU", "streetAddress": "STREET",
          "domainComponent": "DC", "userId": "UID"}


class TLSSettings(Protocol):
    tls_cert: str
    tls_key: str
    tls_key_password: str
    tls_ca: str
    tls_require_client_cert: bool


def build_ssl_context(settings: TLSSettings) -> ssl.SSLContext:
    """Server context from the settings' files; ``ValueError`` names the missing or wrong setting."""
    if not settings.tls_cert:
        raise ValueError("TIDEMQ_TLS_CERT (PEM certificate chain) is required for the TLS/WSS listeners")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise ValueError(f"TIDEMQ_{name.upper()}: no such file {path!r}")
    if settings.tls_require_client_cert and not settings.tls_ca:
        raise ValueError("TIDEMQ_TLS_REQUIRE_CLIENT_CERT needs TIDEMQ_TLS_CA (the CA that signs client certificates)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key or None, settings.tls_key_password or None)
    except ssl.SSLError as exc:
        raise ValueError(f"TIDEMQ_TLS_CERT / TIDEMQ_TLS_KEY: cannot load the certificate and key: {exc}") from exc
    if settings.tls_ca:
        try:
            ctx.load_verify_locations(cafile=settings.tls_ca)
        except ssl.SSLError as exc:
            raise ValueError(f"TIDEMQ_TLS_CA: cannot load {settings.tls_ca!r}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED if settings.tls_require_client_cert else ssl.CERT_OPTIONAL
    return ctx


class ReloadableTLS:
    """The listeners' SSL context, whose new handshakes use the context of the last ``reload``."""

    def __init__(self, settings: TLSSettings) -> None:
        self.context = build_ssl_context(settings)  # what the listeners are started with
        self.current = self.context
        self.context.sni_callback = self._switch

    def _switch(self, ssl_obj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                ctx: ssl.SSLContext) -> None:
        current = self.current
        if current is not ctx:
            ssl_obj.context = current

    def reload(self, settings: TLSSettings) -> None:
        """Build a new context from the files; ValueError (the current one stays) if they cannot be used."""
        self.current = build_ssl_context(settings)


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def cert_subject(peercert: Any) -> str | None:
    """RFC 4514 subject (most specific RDN first) of ``SSLObject.getpeercert()``; ``None`` if none."""
    if not peercert or not isinstance(peercert, dict):
        return None
    subject = peercert.get("subject")
    if not subject:
        return None
    rdns = []
    for rdn in reversed(subject):  # getpeercert lists the RDNs in certificate (ASN.1) order
        rdns.append("+".join(f"{_SHORT.get(k, k)}={_escape(str(v))}" for k, v in rdn))
    return ",".join(rdns)
