"""Normalization and rejection rules for customers' domain names."""

import pytest

from hosting.domain_names import DomainNameError, normalize_domain, to_unicode

PLATFORM = "sites.hostyard.test"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Blog.Example.ORG.", "blog.example.org"),
        ("  example.org  ", "example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("ｅｘａｍｐｌｅ。org", "example.org"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
        ("hostyard.test", "hostyard.test"),
        ("other-sites.hostyard.test", "other-sites.hostyard.test"),
    ],
)
def test_normalize_accepts(raw, expected):
    assert normalize_domain(raw, platform_domain=PLATFORM) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "domain_invalid"),
        (".", "domain_invalid"),
        ("xn--zz.example", "domain_invalid_a_label"),
        ("xn--a.example", "domain_invalid_a_label"),
        ("*.example.org", "domain_wildcard"),
        ("203.0.113.9", "domain_ip_address"),
        ("2001:db8::1", "domain_ip_address"),
        ("[2001:db8::1]", "domain_ip_address"),
        ("localhost", "domain_single_label"),
        ("a" * 64 + ".example", "domain_label_too_long"),
        ("ü" * 60 + ".example", "domain_label_too_long"),
        (".".join(["a" * 60] * 5), "domain_too_long"),
        ("sites.hostyard.test", "domain_platform_zone"),
        ("blog.sites.hostyard.test.", "domain_platform_zone"),
        ("Blog.Sites.Hostyard.Test", "domain_platform_zone"),
        ("example..org", "domain_invalid"),
        ("under_score.example", "domain_invalid"),
        ("-leading.example", "domain_invalid"),
        ("1.2.3", "domain_invalid"),
    ],
)
def test_normalize_rejects(raw, code):
    with pytest.raises(DomainNameError) as excinfo:
        normalize_domain(raw, platform_domain=PLATFORM)

    assert excinfo.value.code == code
    assert excinfo.value.message


def test_rejection_message_names_value():
    with pytest.raises(DomainNameError) as excinfo:
        normalize_domain("xn--zz.example", platform_domain=PLATFORM)

    assert "xn--zz" in excinfo.value.message
    assert "A-label" in excinfo.value.message


def test_platform_rejection_names_zone():
    with pytest.raises(DomainNameError) as excinfo:
        normalize_domain("shop.sites.hostyard.test", platform_domain=PLATFORM)

    assert PLATFORM in excinfo.value.message


def test_to_unicode_decodes_a_labels():
    assert to_unicode("xn--bcher-kva.example") == "bücher.example"
    assert to_unicode("blog.example.org") == "blog.example.org"
    assert to_unicode("xn--zz.example") == "xn--zz.example"
