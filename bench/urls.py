"""The project's URLs plus trivial DRF endpoints that serve as the API benchmark's baseline."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as project_urlpatterns


class PingView(APIView):
    """Return a constant body with no authentication and no database query."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class AuthenticatedPingView(APIView):
    """Return a constant body after the API's own API-key authentication (one query)."""

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    *project_urlpatterns,
    path("bench/ping", PingView.as_view(), name="bench-ping"),
    path("bench/ping-auth", AuthenticatedPingView.as_view(), name="bench-ping-auth"),
]
