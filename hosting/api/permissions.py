from typing import TYPE_CHECKING

from rest_framework import permissions
from rest_framework.request import Request

if TYPE_CHECKING:
    from rest_framework.views import APIView

from hosting.models import ApiKey
from hosting.models.organizations import ApiKeyScope


class HasOrganizationKey(permissions.BasePermission):
    """Require an API key; reads need ``sites:read``, changes need ``sites:write``."""

    message = "This API key lacks the scope for this request."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        needed = (
            ApiKeyScope.SITES_READ
            if request.method in permissions.SAFE_METHODS
            else ApiKeyScope.SITES_WRITE
        )
        if needed.value in key.scopes:
            return True
        # DRF reads the denial message from the permission instance.
        self.message = (
            f"This API key lacks the {needed.value!r} scope; issue a key with it "
            "(manage.py create_api_key --scopes ...)."
        )
        return False
