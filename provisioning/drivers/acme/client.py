"""ACME certificate issuance with the ``acme`` package (RFC 8555), for Let's Encrypt or Pebble.

HTTP-01 responses are published on the edge proxy through an ``EdgeDriver``, DNS-01
responses as TXT records at ``_acme-challenge.<name>`` through a ``DnsDriver``. A
wildcard name needs DNS-01. Authorizations that the CA reports as already valid are
skipped, because CAs reuse them across orders (Pebble does for about half of them).

Errors follow ``provisioning.errors``. A rate limit, a timeout, an unreachable CA or
repeated bad nonces raise ``TransientError``. A failed validation, a rejected name or
an invalid key raise ``PermanentError``, which carries the CA's own explanation.
"""

import datetime
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import josepy as jose
import requests
import structlog
from acme import challenges, crypto_util, errors, messages
from acme import client as acme_client
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from provisioning.drivers.dns.base import DnsDriver
from provisioning.drivers.edge.base import EdgeDriver
from provisioning.errors import PermanentError, TransientError

log = structlog.get_logger(__name__)

ChallengeType = Literal["http-01", "dns-01"]
T = TypeVar("T")

# ACME error codes (RFC 8555, section 6.7) worth repeating the same request for.
_TRANSIENT_CODES = {"rateLimited", "serverInternal", "badNonce"}
# How many times one request is sent again after a badNonce error. The ``acme``
# package already retries once on its own.
_MAX_BAD_NONCE_RETRIES = 3
_USER_AGENT = "hostyard-acme"


@dataclass(frozen=True)
class AcmeAccount:
    """An ACME account: its private key (PEM, to be stored encrypted) and its URL at the CA."""

    key_pem: str
    uri: str


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate from the CA: leaf plus intermediates, and the private key it was made for."""

    cert_pem: str  # full chain, leaf first
    key_pem: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    names: tuple[str, ...]


class _RecordingNetwork(acme_client.ClientNetwork):
    """``ClientNetwork`` that keeps the last HTTP response.

    ``acme`` raises ``messages.Error`` without the response it came from, and a
    rate limit's Retry-After header exists only on that response.
    """

    last_response: requests.Response | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        return response


class AcmeClient:
    """Registers accounts and issues certificates at one ACME directory.

    ``ca_bundle`` is a CA file that verifies the ACME server's HTTPS (Pebble's
    listener certificate); empty means the system's trust store. ``edge`` serves
    HTTP-01 and ``dns`` publishes DNS-01 responses. A challenge type whose driver
    is missing raises ``PermanentError``.
    """

    def __init__(
        self,
        *,
        directory_url: str,
        ca_bundle: str = "",
        contact_email: str = "",
        edge: EdgeDriver | None = None,
        dns: DnsDriver | None = None,
        dns_ttl: int = 60,
        dns_propagation_seconds: float = 0.0,
        request_timeout: int = 30,
        validation_timeout: float = 90.0,
    ) -> None:
        self.directory_url = directory_url
        self.ca_bundle = ca_bundle
        self.contact_email = contact_email
        self.edge = edge
        self.dns = dns
        self.dns_ttl = dns_ttl
        # NOTE: a fixed wait after publishing TXT records. An authoritative server
        # updated through RFC 2136 serves them at once; a hosted DNS may not.
        self.dns_propagation_seconds = dns_propagation_seconds
        self.request_timeout = request_timeout
        self.validation_timeout = validation_timeout
        self._accounts: dict[str, messages.RegistrationResource] = {}

    # --- accounts -----------------------------------------------------------------

    def register_account(self, *, account_key_pem: str = "") -> AcmeAccount:
        """Register an account, or find the existing one for ``account_key_pem``.

        Without a key, a new P-256 key is generated: store the returned ``key_pem``
        and pass it to every later call. Idempotent for a given key.
        """
        key_pem = account_key_pem or generate_private_key_pem()
        account = self._client(key_pem).net.account
        assert account is not None  # _client sets it or raises
        return AcmeAccount(key_pem=key_pem, uri=str(account.uri))

    # --- issuance -----------------------------------------------------------------

    def issue_certificate(
        self,
        *,
        names: list[str],
        challenge: ChallengeType,
        account_key_pem: str,
        key_pem: str = "",
    ) -> IssuedCertificate:
        """Order, validate and download a certificate for ``names`` (the first is the main name).

        A new P-256 private key is generated unless ``key_pem`` is given. Challenge
        responses are removed again whether validation succeeds or fails. Raises
        ``PermanentError`` when a name cannot be validated (with the CA's detail,
        such as "connection refused" or "unauthorized") and ``TransientError`` for
        rate limits (with ``retry_after``), timeouts and an unreachable CA.
        """
        names = _check_names(names, challenge)
        self._solver_check(challenge)
        key_pem = key_pem or generate_private_key_pem()
        csr_pem = _make_csr(key_pem, names)
        client = self._client(account_key_pem)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.validation_timeout)

        order = self._call(client, "create the order", client.new_order, csr_pem)
        pending = []
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                log.info("acme.authorization_reused", name=_authz_name(authzr))
            else:
                pending.append(authzr)

        for batch in _batches(pending, challenge):
            self._validate_batch(client, batch, challenge, deadline)

        finalized = self._call(client, "finalize the order", client.finalize_order, order, deadline)
        issued = _issued_certificate(finalized.fullchain_pem, key_pem)
        log.info(
            "acme.certificate_issued",
            names=list(issued.names),
            challenge=challenge,
            not_after=issued.not_after.isoformat(),
            reused_authorizations=len(order.authorizations) - len(pending),
        )
        return issued

    def _validate_batch(
        self,
        client: acme_client.ClientV2,
        batch: list[messages.AuthorizationResource],
        challenge: ChallengeType,
        deadline: datetime.datetime,
    ) -> None:
        """Publish, respond to and wait for each authorization of ``batch``, then clean up."""
        published: list[tuple[messages.AuthorizationResource, messages.ChallengeBody, Any]] = []
        try:
            for authzr in batch:
                challb = _find_challenge(authzr, challenge)
                response, validation = challb.response_and_validation(client.net.key)
                self._publish(authzr, challb, validation)
                published.append((authzr, challb, response))

            if challenge == "dns-01" and self.dns_propagation_seconds > 0:
                time.sleep(self.dns_propagation_seconds)

            for _authzr, challb, response in published:
                self._call(
                    client, "respond to the challenge", client.answer_challenge, challb, response
                )
            for authzr, _challb, _response in published:
                self._wait_valid(client, authzr, challenge, deadline)
        finally:
            for authzr, challb, _response in published:
                self._unpublish(authzr, challb)

    def _wait_valid(
        self,
        client: acme_client.ClientV2,
        authzr: messages.AuthorizationResource,
        challenge: ChallengeType,
        deadline: datetime.datetime,
    ) -> None:
        name = _authz_name(authzr)
        while datetime.datetime.now() < deadline:
            authzr, response = self._call(client, "poll the authorization", client.poll, authzr)
            status = authzr.body.status
            if status == messages.STATUS_VALID:
                log.info("acme.authorization_valid", name=name, challenge=challenge)
                return
            if status != messages.STATUS_PENDING:
                raise _validation_error(authzr, challenge)
            # Poll every 0.5 s unless the CA sets Retry-After, and never wait past 5 s.
            wait = _retry_after_seconds(response)
            time.sleep(min(max(wait if wait is not None else 0.5, 0.2), 5.0))

        raise TransientError(
            f"The CA did not finish validating {name} within {self.validation_timeout:.0f} s: "
            "retry later.",
            code="acme_timeout",
        )

    # --- challenge publication ----------------------------------------------------

    def _solver_check(self, challenge: ChallengeType) -> None:
        if challenge == "http-01" and self.edge is None:
            raise PermanentError(
                "HTTP-01 validation needs an edge driver: set HOSTYARD_EDGE_DRIVER to 'caddy'.",
                code="acme_no_solver",
            )
        if challenge == "dns-01" and self.dns is None:
            raise PermanentError(
                "DNS-01 validation needs a DNS driver: set HOSTYARD_DNS_DRIVER.",
                code="acme_no_solver",
            )

    def _publish(
        self,
        authzr: messages.AuthorizationResource,
        challb: messages.ChallengeBody,
        validation: str,
    ) -> None:
        if isinstance(challb.chall, challenges.HTTP01):
            assert self.edge is not None
            self.edge.add_challenge(challb.chall.encode("token"), validation)
        else:
            assert self.dns is not None
            record = challb.chall.validation_domain_name(authzr.body.identifier.value)
            self.dns.ensure_record(name=record, type="TXT", value=validation, ttl=self.dns_ttl)

    def _unpublish(
        self, authzr: messages.AuthorizationResource, challb: messages.ChallengeBody
    ) -> None:
        """Remove a challenge response; log a failure instead of hiding the original error."""
        try:
            if isinstance(challb.chall, challenges.HTTP01):
                assert self.edge is not None
                self.edge.remove_challenge(challb.chall.encode("token"))
            else:
                assert self.dns is not None
                record = challb.chall.validation_domain_name(authzr.body.identifier.value)
                self.dns.delete_record(name=record, type="TXT")
        except (TransientError, PermanentError) as exc:
            log.warning(
                "acme.challenge_cleanup_failed",
                name=_authz_name(authzr),
                error=exc.message,
                detail=exc.detail,
            )

    # --- protocol plumbing ----------------------------------------------------------

    def _client(self, account_key_pem: str) -> acme_client.ClientV2:
        """Build a ClientV2 signed by the account key, registering the account if needed."""
        jwk, alg = _account_jwk(account_key_pem)
        net = _RecordingNetwork(
            key=jwk,
            alg=alg,
            verify_ssl=self.ca_bundle or True,  # type: ignore[arg-type]
            user_agent=_USER_AGENT,
            timeout=self.request_timeout,
        )
        directory = self._call_network(
            net, "read the directory", acme_client.ClientV2.get_directory, self.directory_url, net
        )
        client = acme_client.ClientV2(directory, net)

        thumbprint = jwk.thumbprint().hex()
        known = self._accounts.get(thumbprint)
        if known is not None:
            net.account = known
            return client

        registration = messages.NewRegistration.from_data(
            email=self.contact_email or None, terms_of_service_agreed=True
        )
        try:
            account = self._call(client, "register the account", client.new_account, registration)
            log.info("acme.account_registered", account=account.uri)
        except errors.ConflictError as exc:
            # The CA returns 200 with the account URL when this key is already registered.
            account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            net.account = account
            log.info("acme.account_found", account=account.uri)
        self._accounts[thumbprint] = account
        return client

    def _call(
        self, client: acme_client.ClientV2, action: str, func: Callable[..., T], *args: Any
    ) -> T:
        return self._call_network(client.net, action, func, *args)

    def _call_network(
        self, net: acme_client.ClientNetwork, action: str, func: Callable[..., T], *args: Any
    ) -> T:
        """Run one ACME request, retrying bad nonces, and map failures to provisioning errors."""
        for attempt in range(_MAX_BAD_NONCE_RETRIES + 1):
            try:
                return func(*args)
            except messages.Error as exc:
                if exc.code == "badNonce" and attempt < _MAX_BAD_NONCE_RETRIES:
                    log.warning("acme.bad_nonce_retry", action=action, attempt=attempt + 1)
                    continue
                last = getattr(net, "last_response", None)
                raise acme_error(exc, action=action, response=last) from exc
            except requests.exceptions.SSLError as exc:
                raise PermanentError(
                    f"Could not verify the TLS certificate of the ACME server "
                    f"{self.directory_url} to {action}: set HOSTYARD_ACME_CA_BUNDLE to the "
                    "CA file that signed it.",
                    code="acme_tls_untrusted",
                    detail=str(exc),
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(
                    f"The ACME server {self.directory_url} did not respond when trying to "
                    f"{action}: retry later.",
                    code="acme_unreachable",
                    detail=str(exc),
                ) from exc
            except errors.TimeoutError as exc:
                raise TransientError(
                    f"The ACME server did not finish the request to {action} in time: retry later.",
                    code="acme_timeout",
                    detail=repr(exc),
                ) from exc
            except errors.ConflictError:
                # The caller handles it, because newAccount returns it for a registered key.
                raise
            except errors.ClientError as exc:
                # Not a problem document: for example an HTML error page from a proxy.
                raise TransientError(
                    f"The ACME server sent an unexpected response when trying to {action}: "
                    "retry later.",
                    code="acme_bad_response",
                    detail=repr(exc)[:500],
                ) from exc
        raise AssertionError("unreachable: the loop returns or raises")


def acme_error(
    error: messages.Error, *, action: str, response: requests.Response | None = None
) -> TransientError | PermanentError:
    """Map an ACME problem document to TransientError or PermanentError.

    A rate limit carries ``retry_after`` in seconds from the response's Retry-After
    header when it has one.
    """
    explanation = error.detail or error.description or error.typ
    detail = str(error)
    if error.code == "rateLimited":
        retry_after = _retry_after_seconds(response)
        when = f"after {retry_after:.0f} s" if retry_after is not None else "later"
        return TransientError(
            f"The CA rate-limited the request to {action}: {explanation}. Retry {when}.",
            code="acme_rate_limited",
            detail=detail,
            retry_after=retry_after,
        )
    if error.code in _TRANSIENT_CODES:
        return TransientError(
            f"The CA failed to {action} ({error.code}): {explanation}. Retry later.",
            code="acme_server_error",
            detail=detail,
            retry_after=_retry_after_seconds(response),
        )
    return PermanentError(
        f"The CA rejected the request to {action} ({error.code or error.typ}): {explanation}",
        code="acme_rejected",
        detail=detail,
    )


def generate_private_key_pem() -> str:
    """Generate a P-256 private key in unencrypted PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _account_jwk(key_pem: str) -> tuple[jose.JWK, jose.JWASignature]:
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise PermanentError(
            "The ACME account key is not an unencrypted PEM private key: "
            "register a new account or restore the stored key.",
            code="acme_invalid_account_key",
        ) from exc
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return jose.JWKEC(key=key), jose.ES256
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    raise PermanentError(
        "The ACME account key must be RSA or EC P-256: register a new account.",
        code="acme_invalid_account_key",
    )


def _make_csr(key_pem: str, names: list[str]) -> bytes:
    try:
        return crypto_util.make_csr(key_pem.encode(), names)
    except (ValueError, TypeError) as exc:
        raise PermanentError(
            "The certificate's private key is not an unencrypted PEM key: omit key_pem "
            "to generate a new one.",
            code="acme_invalid_key",
        ) from exc


def _check_names(names: list[str], challenge: str) -> list[str]:
    if challenge not in ("http-01", "dns-01"):
        raise PermanentError(
            f"Unsupported ACME challenge {challenge!r}: use 'http-01' or 'dns-01'.",
            code="acme_unsupported_challenge",
        )
    cleaned: list[str] = []
    for raw in names:
        name = str(raw).strip().lower().rstrip(".")
        if name and name not in cleaned:
            cleaned.append(name)
    if not cleaned:
        raise PermanentError(
            "No names to certify: pass at least one hostname.", code="acme_no_names"
        )
    wildcards = [name for name in cleaned if name.startswith("*.")]
    if wildcards and challenge != "dns-01":
        raise PermanentError(
            f"Wildcard names {wildcards} can only be validated with DNS-01: "
            "request them with challenge='dns-01'.",
            code="acme_wildcard_needs_dns",
        )
    return cleaned


def _batches(
    authzrs: list[messages.AuthorizationResource], challenge: ChallengeType
) -> Iterator[list[messages.AuthorizationResource]]:
    """Split authorizations so no batch needs two TXT values at the same record name.

    ``DnsDriver.ensure_record`` keeps one value per name and type, and a name and
    its wildcard (``example.org`` and ``*.example.org``) share one record name.
    HTTP-01 responses never collide, so they form one batch.
    """
    if challenge == "http-01":
        if authzrs:
            yield authzrs
        return

    remaining = list(authzrs)
    while remaining:
        batch: list[messages.AuthorizationResource] = []
        used: set[str] = set()
        for authzr in list(remaining):
            name = authzr.body.identifier.value
            if name not in used:
                used.add(name)
                batch.append(authzr)
                remaining.remove(authzr)
        yield batch


def _find_challenge(
    authzr: messages.AuthorizationResource, challenge: ChallengeType
) -> messages.ChallengeBody:
    for challb in authzr.body.challenges:
        if challb.chall.typ == challenge:
            return challb
    offered = sorted(str(challb.chall.typ) for challb in authzr.body.challenges)
    raise PermanentError(
        f"The CA offers no {challenge} challenge for {_authz_name(authzr)} "
        f"(offered: {', '.join(offered)}): request the certificate with one of those.",
        code="acme_challenge_unavailable",
    )


def _validation_error(
    authzr: messages.AuthorizationResource, challenge: ChallengeType
) -> PermanentError:
    """Build the error for an authorization the CA marked invalid, with the CA's reason."""
    name = _authz_name(authzr)
    problems = [challb.error for challb in authzr.body.challenges if challb.error is not None]
    if problems:
        reason = "; ".join(problem.detail or str(problem) for problem in problems)
        detail = "\n".join(str(problem) for problem in problems)
    else:
        reason = f"the authorization is {authzr.body.status}"
        detail = ""
    hint = (
        "check that the name's A/AAAA records point at the platform"
        if challenge == "http-01"
        else "check that the TXT record can be published in the name's zone"
    )
    log.error("acme.validation_failed", name=name, challenge=challenge, reason=reason)
    return PermanentError(
        f"The CA could not validate {name} with {challenge}: {reason}. Next: {hint}.",
        code="acme_validation_failed",
        detail=detail,
    )


def _issued_certificate(fullchain_pem: str, key_pem: str) -> IssuedCertificate:
    leaf = x509.load_pem_x509_certificates(fullchain_pem.encode())[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return IssuedCertificate(
        cert_pem=fullchain_pem,
        key_pem=key_pem,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        names=names,
    )


def _authz_name(authzr: messages.AuthorizationResource) -> str:
    value = str(authzr.body.identifier.value)
    return f"*.{value}" if authzr.body.wildcard else value


def _retry_after_seconds(response: requests.Response | None) -> float | None:
    if response is None or "Retry-After" not in response.headers:
        return None
    when = acme_client.ClientV2.retry_after(response, 0)
    return float(max(round((when - datetime.datetime.now()).total_seconds()), 0))
