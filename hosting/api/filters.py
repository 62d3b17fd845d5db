import django_filters

from hosting.models import Site, SiteStatus


class SiteFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=SiteStatus.choices)
    app = django_filters.CharFilter(field_name="app__slug")
    plan = django_filters.CharFilter(field_name="plan__slug")
    customer_email = django_filters.CharFilter(field_name="customer__email", lookup_expr="iexact")
    hostname = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Site
        fields = ["status", "app", "plan", "customer_email", "hostname"]
