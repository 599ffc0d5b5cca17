from rest_framework.permissions import BasePermission

from backend.partners.models import Partner


class IsSignedPartner(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Partner)
