from django.db import models

from hosting.models.organizations import Organization


class IdempotencyRecord(models.Model):
    """The first response to a request sent with an ``Idempotency-Key`` header.

    A row is inserted before the request is processed; ``response_status`` stays
    null while it is in progress, so concurrent requests with the same key wait for
    the first one's response instead of repeating its work.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="idempotency_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}:{self.key}"
