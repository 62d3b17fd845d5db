from rest_framework.routers import SimpleRouter

from hosting.api import usage, views

router = SimpleRouter(trailing_slash=False)
router.register("sites", views.SiteViewSet, basename="site")
router.register("operations", views.OperationViewSet, basename="operation")
router.register("plans", views.PlanViewSet, basename="plan")
router.register("apps", views.AppViewSet, basename="app")

urlpatterns = router.urls + usage.urlpatterns
