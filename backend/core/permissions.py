from rest_framework.permissions import BasePermission


class HasRole(BasePermission):
    """Allow authenticated users whose role is one of `roles` (admins always pass)."""

    roles: tuple[str, ...] = ()

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (user.role in self.roles or user.role == "admin"))


class IsReviewer(HasRole):
    roles = ("reviewer",)


class IsMerchantStaff(HasRole):
    roles = ("merchant_staff",)


class IsResident(HasRole):
    roles = ("resident",)


class IsBuyer(BasePermission):
    """Company buyers only (offset orders and their certificates); unlike HasRole, admins do not pass: an
    administrator has no company to buy for."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.role == "buyer")
