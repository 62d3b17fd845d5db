from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

handler400 = "hosting.api.errors.bad_request"
handler404 = "hosting.api.errors.page_not_found"
handler500 = "hosting.api.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("hosting.api.urls")),
    path(
        "api/v1/schema",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
]
