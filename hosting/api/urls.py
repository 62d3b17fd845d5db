from django.urls import path
from rest_framework.routers import SimpleRouter

from hosting.api import domains, usage, views

router = SimpleRouter(trailing_slash=False)
router.register("sites", views.SiteViewSet, basename="site")
router.register("operations", views.OperationViewSet, basename="operation")
router.register("plans", views.PlanViewSet, basename="plan")
router.register("apps", views.AppViewSet, basename="app")

urlpatterns = [
    path(
        "sites/<uuid:site_id>/domains",
        domains.SiteDomainsView.as_view(),
        name="site-domains",
    ),
    path(
        "sites/<uuid:site_id>/domains/<str:domain>",
        domains.SiteDomainDetailView.as_view(),
        name="site-domain-detail",
    ),
    *router.urls,
    *usage.urlpatterns,
]
