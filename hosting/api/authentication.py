"""API key authentication: ``Authorization: Api-Key hy_<prefix>_<secret>`` (or Bearer)."""

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from hosting.models import ApiKey

# last_used_at is written at most this often per key, so reads stay cheap.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keywords = ("api-key", "bearer")

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        keyword, _, raw_key = header.partition(" ")
        if keyword.lower() not in self.keywords or not raw_key.strip():
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header; send 'Authorization: Api-Key <key>'."
            )

        key = ApiKey.find(raw_key.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")

        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return None, key

    def authenticate_header(self, request: Request) -> str:
        return 'Api-Key realm="hostyard"'
