"""Normalization and validation of customers' domain names.

Pure functions with no database access, shared by the API, the admin and the
provisioning steps. A normalized name is lower case, has no trailing dot and is in
ASCII: internationalized labels become A-labels (``xn--...``) through UTS 46
mapping and IDNA 2008 rules, as implemented by the ``idna`` package.
"""

import ipaddress

import idna

MAX_LABEL_LENGTH = 63  # RFC 1035, section 2.3.4
MAX_NAME_LENGTH = 253  # 255 octets on the wire, minus the length byte and the root label


class DomainNameError(ValueError):
    """A domain name that Hostyard cannot serve, with a stable machine-readable code."""

    def __init__(self, message: str, code: str = "domain_invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def normalize_domain(raw: str, *, platform_domain: str) -> str:
    """Return ``raw`` as a lower-case ASCII domain name without a trailing dot.

    Raises ``DomainNameError`` for an empty name, a wildcard, an IP address, a
    single label, a label or name over the DNS length limits, characters that
    IDNA 2008 forbids and an invalid A-label. It also rejects the platform zone
    ``platform_domain`` and names inside it, because those belong to Hostyard.
    """
    name = raw.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise DomainNameError("The domain name is empty: enter a name such as example.org.")

    if "*" in name:
        raise DomainNameError(
            f"'{raw}' is a wildcard: enter one exact domain name, such as www.example.org.",
            "domain_wildcard",
        )
    if _is_ip_address(name):
        raise DomainNameError(
            f"'{raw}' is an IP address: enter a domain name that points at the platform.",
            "domain_ip_address",
        )

    try:
        mapped = idna.uts46_remap(name, std3_rules=True, transitional=False)
    except idna.IDNAError as exc:
        raise DomainNameError(
            f"'{raw}' contains a character not allowed in domain names ({exc})."
        ) from exc

    labels = [_to_a_label(label, raw) for label in mapped.split(".")]
    if len(labels) < 2:
        raise DomainNameError(
            f"'{raw}' has a single label: enter a full domain name such as example.org.",
            "domain_single_label",
        )
    if labels[-1].isdigit():
        raise DomainNameError(
            f"'{raw}' ends in a numeric label, which no top-level domain is.",
        )

    normalized = ".".join(labels)
    if len(normalized) > MAX_NAME_LENGTH:
        raise DomainNameError(
            f"'{raw}' is {len(normalized)} characters long in ASCII, "
            f"but the maximum is {MAX_NAME_LENGTH}.",
            "domain_too_long",
        )

    platform = platform_domain.strip().lower().rstrip(".")
    if platform and (normalized == platform or normalized.endswith("." + platform)):
        raise DomainNameError(
            f"'{normalized}' is inside the platform zone {platform}, "
            "where each site already has a name. Add a domain you own instead.",
            "domain_platform_zone",
        )
    return normalized


def to_unicode(domain: str) -> str:
    """Return ``domain`` with A-labels decoded for display; invalid labels stay as they are."""
    labels = []
    for label in domain.split("."):
        try:
            labels.append(idna.decode(label) if label.startswith("xn--") else label)
        except idna.IDNAError:
            labels.append(label)
    return ".".join(labels)


def _to_a_label(label: str, raw: str) -> str:
    if not label:
        raise DomainNameError(f"'{raw}' contains an empty label (two dots in a row).")

    try:
        a_label = idna.alabel(label).decode("ascii")
    except idna.IDNAError as exc:
        if label.startswith("xn--"):
            raise DomainNameError(
                f"'{label}' in '{raw}' is not a valid A-label (xn-- encoded label): "
                "check the spelling or enter the name in its Unicode form.",
                "domain_invalid_a_label",
            ) from exc
        encoded = label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
        if len(encoded) > MAX_LABEL_LENGTH:
            raise _label_too_long(encoded, raw) from exc
        raise DomainNameError(f"'{label}' in '{raw}' is not a valid label: {exc}.") from exc

    if len(a_label) > MAX_LABEL_LENGTH:
        raise _label_too_long(a_label, raw)
    return a_label


def _label_too_long(label: str, raw: str) -> DomainNameError:
    return DomainNameError(
        f"The label '{label[:20]}...' in '{raw[:80]}' is {len(label)} characters long in "
        f"ASCII, but the maximum is {MAX_LABEL_LENGTH}.",
        "domain_label_too_long",
    )


def _is_ip_address(name: str) -> bool:
    candidate = name.strip("[]")
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True
