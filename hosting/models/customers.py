from django.db import models
from django.db.models.functions import Lower

from hosting.models.organizations import Organization


class Customer(models.Model):
    """A person or course that owns sites, within one organization."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="customers"
    )
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    # The storefront's or school's own identifier for this customer.
    external_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                "organization", Lower("email"), name="customer_unique_email_per_organization"
            ),
        ]

    def __str__(self) -> str:
        return self.email
