"""Edge driver for Caddy 2, through its admin API.

Layout of the configuration this driver owns (see ``build_apps_config``):

- server ``hostyard_http`` (plain HTTP): first a subroute with ``@id``
  ``hostyard-acme-challenges`` holding one route per HTTP-01 token, then a route
  that redirects every other request to HTTPS with status 308;
- server ``hostyard_https``: first a subroute with ``@id`` ``hostyard-sites``
  holding one route per site (plus a suspended-page route in front of it while the
  site is suspended), then a 404 page for unknown hostnames;
- ``apps.tls.certificates.load_pem``: one entry per certificate. Caddy picks the
  certificate whose names match the TLS client's SNI.

Every object carries an ``@id`` derived from the caller's id, so a change replaces
or deletes exactly one object by id and never rewrites the whole configuration.
Automatic HTTPS is disabled and no automation policy exists, so Caddy never requests a
certificate from a CA itself.
"""

import ipaddress
import re
import time
from typing import Any

import requests
import structlog
import urllib3
from cryptography import x509

from provisioning.drivers.edge.base import EdgeRoute
from provisioning.errors import PermanentError, TransientError

log = structlog.get_logger(__name__)

HTTP_SERVER = "hostyard_http"
HTTPS_SERVER = "hostyard_https"
CHALLENGES_ID = "hostyard-acme-challenges"
SITES_ID = "hostyard-sites"
SITE_PREFIX = "hostyard-site-"
SUSPENDED_PREFIX = "hostyard-suspended-"
CERT_PREFIX = "hostyard-cert-"
CHALLENGE_PREFIX = "hostyard-challenge-"

# Paths of the two route lists and the certificate list. They rely on each
# subroute being the first handler of the first route of its server.
CHALLENGE_ROUTES_PATH = f"/config/apps/http/servers/{HTTP_SERVER}/routes/0/handle/0/routes"
SITE_ROUTES_PATH = f"/config/apps/http/servers/{HTTPS_SERVER}/routes/0/handle/0/routes"
CERTIFICATES_PATH = "/config/apps/tls/certificates/load_pem"

SUSPENDED_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>This site is suspended</title></head>
<body>
<h1>This site is suspended</h1>
<p>The owner of this site can restore it from their hosting account.</p>
</body>
</html>
"""

NOT_FOUND_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>No site here</title></head>
<body><h1>No site is configured for this hostname</h1></body>
</html>
"""

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_LABEL_PATTERN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL)
# Number of times a create is retried when another writer changed the same list meanwhile.
_MAX_CONFLICT_RETRIES = 5
# Retries of a request whose connection Caddy dropped (see ``_request``).
_MAX_CONNECTION_RETRIES = 6
# Upper bound on deletes of one id, in case copies of an object were added out of band.
_MAX_DUPLICATE_DELETES = 10


def build_apps_config(*, listen_host: str, http_port: int, https_port: int) -> dict[str, Any]:
    """Build the ``apps`` section of the skeleton that ``CaddyEdgeDriver`` fills in."""
    https_authority = "{http.request.host}"
    if https_port != 443:
        https_authority += f":{https_port}"
    no_automatic_https = {"disable": True}
    html = {"Content-Type": ["text/html; charset=utf-8"]}

    http_server = {
        "listen": [f"{listen_host}:{http_port}"],
        "automatic_https": no_automatic_https,
        "protocols": ["h1"],
        "routes": [
            {"handle": [{"@id": CHALLENGES_ID, "handler": "subroute", "routes": []}]},
            {
                "handle": [
                    {
                        "handler": "static_response",
                        "status_code": 308,
                        "headers": {"Location": [f"https://{https_authority}{{http.request.uri}}"]},
                    }
                ]
            },
        ],
    }
    https_server = {
        "listen": [f"{listen_host}:{https_port}"],
        "automatic_https": no_automatic_https,
        "protocols": ["h1", "h2"],
        "tls_connection_policies": [{}],
        "routes": [
            {"handle": [{"@id": SITES_ID, "handler": "subroute", "routes": []}]},
            {
                "handle": [
                    {
                        "handler": "static_response",
                        "status_code": 404,
                        "headers": html,
                        "body": NOT_FOUND_PAGE,
                    }
                ]
            },
        ],
    }
    return {
        "http": {
            "http_port": http_port,
            "https_port": https_port,
            "servers": {HTTP_SERVER: http_server, HTTPS_SERVER: https_server},
        },
        "tls": {"certificates": {"load_pem": []}},
    }


class CaddyEdgeDriver:
    """Routes, certificates and HTTP-01 responses in one Caddy instance, changed by ``@id``.

    The skeleton (servers, route lists, certificate list) is created on first use
    when missing, listening on ``listen_host`` with ``http_port`` and ``https_port``.
    A skeleton that already exists is used as it is.
    """

    def __init__(
        self,
        *,
        admin_url: str,
        http_port: int = 80,
        https_port: int = 443,
        listen_host: str = "127.0.0.1",
        timeout: float = 10.0,
    ) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.http_port = http_port
        self.https_port = https_port
        self.listen_host = listen_host
        self.timeout = timeout
        self._session = requests.Session()

    # --- routes -------------------------------------------------------------------

    def ensure_route(self, *, site_id: str, hostnames: list[str], upstream: str) -> None:
        """Create or replace the site's route to ``upstream``. Idempotent.

        A suspended page configured for the site stays in front of the route, with
        the hostnames it was given: call ``set_suspended`` again when they change.
        Raises ``PermanentError`` for an invalid site id, hostname or upstream.
        """
        site_id = _check_id(site_id, "site id")
        hosts = _check_hostnames(hostnames)
        dial = _check_upstream(upstream)
        route = {
            "@id": SITE_PREFIX + site_id,
            "match": [{"host": hosts}],
            "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}],
            "terminal": True,
        }

        self._upsert(SITE_ROUTES_PATH, route, at_front=False)
        log.info("edge.route_ensured", site=site_id, hostnames=hosts, upstream=dial)

    def set_suspended(self, *, site_id: str, hostnames: list[str], suspended: bool) -> None:
        """Serve the suspended page (status 503) for the site's hostnames, or remove it.

        The page is a separate route placed before every site route, so the site's
        own route and upstream are kept for when it is resumed. Idempotent.
        """
        site_id = _check_id(site_id, "site id")
        object_id = SUSPENDED_PREFIX + site_id
        if not suspended:
            self._delete_id(object_id)
            log.info("edge.site_resumed", site=site_id)
            return

        hosts = _check_hostnames(hostnames)
        route = {
            "@id": object_id,
            "match": [{"host": hosts}],
            "handle": [
                {
                    "handler": "static_response",
                    "status_code": 503,
                    "headers": {
                        "Content-Type": ["text/html; charset=utf-8"],
                        "Cache-Control": ["no-store"],
                    },
                    "body": SUSPENDED_PAGE,
                }
            ],
            "terminal": True,
        }
        self._upsert(SITE_ROUTES_PATH, route, at_front=True)
        log.info("edge.site_suspended", site=site_id, hostnames=hosts)

    def remove_route(self, site_id: str) -> bool:
        """Remove the site's route and suspended page; return False if neither existed."""
        site_id = _check_id(site_id, "site id")
        removed = self._delete_id(SITE_PREFIX + site_id)
        removed += self._delete_id(SUSPENDED_PREFIX + site_id)
        log.info("edge.route_removed", site=site_id, existed=bool(removed))
        return bool(removed)

    def list_routes(self) -> list[EdgeRoute]:
        """List every site route with one GET of the site route list."""
        routes = self._get_list(SITE_ROUTES_PATH)

        found: dict[str, dict[str, Any]] = {}
        for route in routes:
            object_id = str(route.get("@id", ""))
            hosts = tuple(_route_hosts(route))
            if object_id.startswith(SITE_PREFIX):
                entry = found.setdefault(object_id[len(SITE_PREFIX) :], {"suspended": False})
                entry["hostnames"] = hosts
                entry["upstream"] = _route_upstream(route)
            elif object_id.startswith(SUSPENDED_PREFIX):
                entry = found.setdefault(object_id[len(SUSPENDED_PREFIX) :], {"upstream": ""})
                entry["suspended"] = True
                entry.setdefault("hostnames", hosts)

        return [
            EdgeRoute(
                site_id=site_id,
                hostnames=entry.get("hostnames", ()),
                upstream=entry.get("upstream", ""),
                suspended=entry.get("suspended", False),
            )
            for site_id, entry in sorted(found.items())
        ]

    # --- certificates -------------------------------------------------------------

    def load_certificate(self, *, cert_id: str, cert_pem: str, key_pem: str) -> None:
        """Create or replace the certificate ``cert_id`` (PEM chain and PEM private key).

        Idempotent. Raises ``PermanentError`` when the chain cannot be parsed or when
        Caddy rejects the pair (for example a key that does not match the
        certificate); Caddy then keeps its previous configuration.
        """
        cert_id = _check_id(cert_id, "certificate id")
        names = _check_certificate(cert_pem)
        if "PRIVATE KEY-----" not in key_pem:
            raise PermanentError(
                f"The private key for certificate {cert_id} is not in PEM format: "
                "pass the key that was generated for this certificate.",
                code="edge_invalid_certificate",
            )
        object_id = CERT_PREFIX + cert_id
        entry = {"@id": object_id, "certificate": cert_pem, "key": key_pem, "tags": [object_id]}

        self._upsert(CERTIFICATES_PATH, entry, at_front=False)
        log.info("edge.certificate_loaded", certificate=cert_id, names=names)

    def remove_certificate(self, cert_id: str) -> bool:
        """Remove the certificate ``cert_id``; return False if it was not loaded."""
        cert_id = _check_id(cert_id, "certificate id")
        removed = self._delete_id(CERT_PREFIX + cert_id)
        log.info("edge.certificate_removed", certificate=cert_id, existed=bool(removed))
        return bool(removed)

    def list_certificates(self) -> list[str]:
        """List the ids of the loaded certificates with one GET of the certificate list."""
        entries = self._get_list(CERTIFICATES_PATH)
        ids = (str(entry.get("@id", "")) for entry in entries)
        return sorted({i[len(CERT_PREFIX) :] for i in ids if i.startswith(CERT_PREFIX)})

    # --- HTTP-01 challenges -------------------------------------------------------

    def add_challenge(self, token: str, key_authorization: str) -> None:
        """Serve the key authorization at ``/.well-known/acme-challenge/<token>``; idempotent.

        Raises ``PermanentError`` when the token or the key authorization contain
        characters that ACME does not produce (base64url and one dot).
        """
        token = _check_token(token)
        if not key_authorization.startswith(token + ".") or not _TOKEN_PATTERN.match(
            key_authorization[len(token) + 1 :]
        ):
            raise PermanentError(
                f"Invalid key authorization for ACME token {token}: expected "
                "'<token>.<account key thumbprint>' in base64url.",
                code="edge_invalid_challenge",
            )
        route = {
            "@id": CHALLENGE_PREFIX + token,
            "match": [{"path": [f"/.well-known/acme-challenge/{token}"]}],
            "handle": [
                {
                    "handler": "static_response",
                    "status_code": 200,
                    "headers": {"Content-Type": ["application/octet-stream"]},
                    "body": key_authorization,
                }
            ],
            "terminal": True,
        }

        self._upsert(CHALLENGE_ROUTES_PATH, route, at_front=False)
        log.info("edge.challenge_added", token=token)

    def remove_challenge(self, token: str) -> bool:
        """Stop serving the challenge ``token``; return False if it was not published."""
        token = _check_token(token)
        removed = self._delete_id(CHALLENGE_PREFIX + token)
        log.info("edge.challenge_removed", token=token, existed=bool(removed))
        return bool(removed)

    # --- admin API ----------------------------------------------------------------

    def _upsert(self, list_path: str, obj: dict[str, Any], *, at_front: bool) -> None:
        """Replace the object with ``obj["@id"]`` in place, or add it to ``list_path``.

        Creation is conditional on the list's ETag, so two writers racing to add
        the same id leave one copy: the loser gets 412, finds the winner's object
        and replaces it.
        """
        object_id = obj["@id"]
        if self._replace(object_id, obj):
            return

        for _ in range(_MAX_CONFLICT_RETRIES):
            current, etag = self._get_list_with_etag(list_path)
            if any(item.get("@id") == object_id for item in current):
                if self._replace(object_id, obj):
                    return
                continue

            # PUT at an array index inserts before that index; POST appends.
            if at_front and current:
                method, path = "PUT", f"{list_path}/0"
            else:
                method, path = "POST", list_path
            response = self._request(method, path, body=obj, if_match=etag, allowed=(412,))
            if response.status_code != 412:
                return

        raise TransientError(
            f"Caddy's configuration at {list_path} changed {_MAX_CONFLICT_RETRIES} times while "
            f"adding {object_id}: retry later.",
            code="edge_conflict",
        )

    def _replace(self, object_id: str, obj: dict[str, Any]) -> bool:
        response = self._request("PATCH", f"/id/{object_id}", body=obj, allowed=(404,))
        return response.status_code != 404

    def _delete_id(self, object_id: str) -> int:
        deleted = 0
        for _ in range(_MAX_DUPLICATE_DELETES):
            response = self._request("DELETE", f"/id/{object_id}", allowed=(404,))
            if response.status_code == 404:
                break
            deleted += 1
        return deleted

    def _get_list(self, list_path: str) -> list[dict[str, Any]]:
        return self._get_list_with_etag(list_path)[0]

    def _get_list_with_etag(self, list_path: str) -> tuple[list[dict[str, Any]], str]:
        """GET a list this driver owns, creating the skeleton first when it is missing."""
        response = self._request("GET", list_path, allowed=(400,))
        if response.status_code == 400 or response.json() is None:
            self._create_skeleton()
            response = self._request("GET", list_path)

        items = response.json()
        if not isinstance(items, list):
            raise PermanentError(
                f"Caddy's configuration at {list_path} is not a list: "
                "remove the servers hostyard_http and hostyard_https so the driver recreates them.",
                code="edge_config_invalid",
                detail=response.text[:500],
            )
        return items, _caddy_etag(list_path, response.content)

    def _create_skeleton(self) -> None:
        """Create whichever part of the skeleton is missing, leaving existing parts alone."""
        template = {
            "apps": build_apps_config(
                listen_host=self.listen_host, http_port=self.http_port, https_port=self.https_port
            )
        }
        for parts in (
            ["apps", "http", "servers", HTTP_SERVER],
            ["apps", "http", "servers", HTTPS_SERVER],
            ["apps", "tls", "certificates", "load_pem"],
        ):
            self._create_missing(parts, template)

        for object_id in (CHALLENGES_ID, SITES_ID):
            response = self._request("GET", f"/id/{object_id}/handler", allowed=(404,))
            if response.status_code == 404:
                raise PermanentError(
                    f"Caddy has a server named {HTTP_SERVER} or {HTTPS_SERVER} without the "
                    f"route list '{object_id}': remove that server so the driver recreates it.",
                    code="edge_config_invalid",
                )
        log.info("edge.skeleton_created", admin_url=self.admin_url)

    def _create_missing(self, parts: list[str], template: dict[str, Any]) -> None:
        """PUT the template's subtree at the first missing level of ``parts``."""
        subtree: Any = template
        for depth, key in enumerate(parts, start=1):
            subtree = subtree[key]
            path = "/config/" + "/".join(parts[:depth])
            if self._request("GET", path).json() is None:
                self._request("PUT", path, body=subtree)
                return

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        if_match: str | None = None,
        allowed: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one admin API request; raise on errors except the ``allowed`` statuses."""
        url = self.admin_url + path
        headers = {"If-Match": if_match} if if_match else {}
        for attempt in range(_MAX_CONNECTION_RETRIES + 1):
            try:
                response = self._session.request(
                    method, url, json=body, headers=headers, timeout=self.timeout
                )
                break
            except requests.ConnectionError as exc:
                # Caddy 2.6 restarts its admin server on every config change, and drops
                # requests that arrive meanwhile. Every request here is safe to repeat:
                # creates carry If-Match, so a repeated one that already applied gets 412.
                if attempt < _MAX_CONNECTION_RETRIES and _connection_dropped(exc):
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise TransientError(
                    f"Caddy's admin API at {self.admin_url} did not respond: check that Caddy "
                    "runs.",
                    code="edge_unreachable",
                    detail=f"{method} {path}: {exc}",
                ) from exc
            except requests.Timeout as exc:
                raise TransientError(
                    f"Caddy's admin API at {self.admin_url} timed out after {self.timeout} s: "
                    "retry later.",
                    code="edge_timeout",
                    detail=f"{method} {path}: {exc}",
                ) from exc

        if response.ok or response.status_code in allowed:
            return response
        raise _caddy_error(method, path, response)


def _caddy_error(method: str, path: str, response: requests.Response) -> Exception:
    """Map a failed admin API response to TransientError or PermanentError."""
    try:
        message = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        message = response.text[:500]
    # Caddy's messages can quote the submitted config: drop PEM blocks, which may be keys.
    message = _PEM_BLOCK.sub("[PEM removed]", message)
    detail = f"{method} {path} -> HTTP {response.status_code}: {message}"

    # Caddy 2.6 returns 500 "loading new config: ..." when a change fails to
    # provision. It keeps its previous config, and the same change fails again.
    rejected = response.status_code < 500 or message.startswith("loading new config")
    if rejected:
        log.error("edge.change_rejected", method=method, path=path, status=response.status_code)
        return PermanentError(
            f"Caddy rejected the change: {message}", code="edge_config_rejected", detail=detail
        )
    log.warning("edge.admin_error", method=method, path=path, status=response.status_code)
    return TransientError(
        f"Caddy's admin API failed with HTTP {response.status_code}: retry later.",
        code="edge_unavailable",
        detail=detail,
    )


def _connection_dropped(exc: requests.ConnectionError) -> bool:
    """Tell a connection closed mid-request from one refused because nothing listens."""
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, urllib3.exceptions.ProtocolError)


def _caddy_etag(path: str, body: bytes) -> str:
    """Compute the ETag Caddy's admin API gives ``GET path``: FNV-1a 32 of the body.

    Caddy 2.6 sends this ETag only as an HTTP trailer, which ``requests`` does not
    expose, so it is computed from the exact bytes Caddy returned.
    """
    digest = 0x811C9DC5
    for byte in body:
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f'"{path} {digest:08x}"'


def _check_id(value: str, kind: str) -> str:
    if not isinstance(value, str) or not _ID_PATTERN.match(value):
        raise PermanentError(
            f"Invalid {kind} {value!r}: use 1-100 letters, digits, '.', '_' or '-'.",
            code="edge_invalid_id",
        )
    return value


def _check_token(token: str) -> str:
    if not isinstance(token, str) or not _TOKEN_PATTERN.match(token):
        raise PermanentError(
            f"Invalid ACME token {token!r}: expected base64url characters only.",
            code="edge_invalid_challenge",
        )
    return token


def _check_hostnames(hostnames: list[str]) -> list[str]:
    """Return the names lower-cased, without trailing dots or repeats; raise if one is invalid."""
    if isinstance(hostnames, str) or not hostnames:
        raise PermanentError(
            f"Invalid hostnames {hostnames!r}: pass a non-empty list of names.",
            code="edge_invalid_hostname",
        )

    result: list[str] = []
    for raw in hostnames:
        name = str(raw).strip().lower().rstrip(".")
        labels = name.split(".")
        if labels[0] == "*":
            labels = labels[1:]
        valid = (
            len(name) <= 253
            and len(labels) >= 1
            and all(_LABEL_PATTERN.match(label) for label in labels)
        )
        if not valid:
            raise PermanentError(
                f"Invalid hostname {raw!r}: use letters, digits and hyphens in dot-separated "
                "labels, optionally starting with '*.'.",
                code="edge_invalid_hostname",
            )
        if name not in result:
            result.append(name)
    return result


def _check_upstream(upstream: str) -> str:
    """Return ``host:port`` for Caddy's ``dial``; raise PermanentError if it is not one."""
    error = PermanentError(
        f"Invalid upstream {upstream!r}: expected 'ip:port' such as '172.17.0.5:8080' "
        "or '[fd00::5]:8080'.",
        code="edge_invalid_upstream",
    )
    host, sep, port_text = str(upstream).rpartition(":")
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise error

    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise error from None
        return f"[{host}]:{int(port_text)}"

    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        # A container name on a shared Docker network is also a valid dial target.
        if not all(_LABEL_PATTERN.match(label) for label in host.lower().split(".")):
            raise error from None
    return f"{host.lower()}:{int(port_text)}"


def _check_certificate(cert_pem: str) -> list[str]:
    """Return the DNS names of the chain's first certificate; raise if the PEM is invalid."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except (ValueError, TypeError, AttributeError) as exc:
        raise PermanentError(
            "The certificate is not a valid PEM chain: pass the full chain the CA returned.",
            code="edge_invalid_certificate",
            detail=str(exc),
        ) from exc
    try:
        san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in san.value.get_values_for_type(x509.DNSName)]


def _route_hosts(route: dict[str, Any]) -> list[str]:
    hosts: list[str] = []
    for matcher in route.get("match", []):
        hosts.extend(matcher.get("host", []))
    return hosts


def _route_upstream(route: dict[str, Any]) -> str:
    for handler in route.get("handle", []):
        for upstream in handler.get("upstreams", []):
            return str(upstream.get("dial", ""))
    return ""
