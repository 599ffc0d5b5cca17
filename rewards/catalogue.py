"""Writes of the merchant side: merchants, their staff, rewards (fields, status, stock, image).

Every function that changes what the public catalogue shows calls `catalogue_changed()` (the cache version is
bumped when the transaction commits). Stock moves only through the guarded statements of rewards/locking.py.
"""

import io
import secrets

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.accounts.authentication import auth_user_forget
from backend.accounts.models import District, User
from backend.accounts.services import user_create
from backend.core.errors import ApplicationError
from rewards import locking
from rewards.cache import catalogue_changed
from rewards.models import Merchant, MerchantStaff, Reward

MAX_IMAGE_BYTES = 2 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # a decompression bomb is refused before it is decoded
IMAGE_MAX_SIDE = 1600
REWARD_FIELDS = {
    "title_zh",
    "title_en",
    "description_zh",
    "description_en",
    "category",
    "points_cost",
    "stock",
    "limit_count",
    "limit_period",
    "valid_from",
    "valid_until",
    "voucher_validity_days",
    "district",
    "face_value_minor",
}


def _not_found() -> ApplicationError:
    return ApplicationError(_("No such reward."), code="not_found", status_code=404)


def _district(code: str | None) -> District | None:
    if not code:
        return None
    district = District.objects.filter(code=code).first()
    if district is None:
        raise ApplicationError(_("Unknown district."), code="district_invalid", attr="district")
    return district


# --- merchants and staff ----------------------------------------------------------------------------------


@transaction.atomic
def merchant_create(
    *, name_zh: str, district: str, name_en: str = "", address: str = "", category: str = "other"
) -> Merchant:
    """Register a merchant (operators: `manage.py create_merchant` or the admin)."""
    if not name_zh.strip():
        raise ApplicationError(_("A merchant needs a name."), code="name_required", attr="name_zh")
    return Merchant.objects.create(
        name_zh=name_zh.strip()[:120],
        name_en=name_en.strip()[:120],
        district=_district(district),
        address=address[:255],
        category=category,
    )


@transaction.atomic
def merchant_update(*, merchant: Merchant, **fields) -> Merchant:
    """Change a merchant's details or status (suspending hides its rewards from the catalogue)."""
    merchant = Merchant.objects.select_for_update().get(pk=merchant.pk)
    for name, value in fields.items():
        if name == "district":
            value = _district(value.code if isinstance(value, District) else value)
        setattr(merchant, name, value)
    merchant.full_clean()
    merchant.save()
    catalogue_changed()
    return merchant


@transaction.atomic
def staff_add(
    *, merchant: Merchant, phone: str, password: str, display_name: str = "", is_manager: bool = False
) -> MerchantStaff:
    """Create a `merchant_staff` user working for `merchant`."""
    user = user_create(phone=phone, password=password, role=User.Role.MERCHANT_STAFF, display_name=display_name)
    return MerchantStaff.objects.create(user=user, merchant=merchant, is_manager=is_manager)


@transaction.atomic
def staff_remove(*, merchant: Merchant, user_id: int) -> None:
    """Remove a member of staff of this merchant (404 for anyone else's): the account is deactivated."""
    user_id = min(int(user_id), 2**63 - 1)
    staff = MerchantStaff.objects.select_for_update().filter(merchant=merchant, user_id=user_id).first()
    if staff is None:
        raise ApplicationError(_("No such member of staff."), code="not_found", status_code=404)
    if (
        staff.is_manager
        and not MerchantStaff.objects.filter(merchant=merchant, is_manager=True).exclude(pk=staff.pk).exists()
    ):
        raise ApplicationError(_("A merchant keeps at least one manager."), code="last_manager")
    staff.delete()
    User.objects.filter(pk=user_id).update(is_active=False)
    auth_user_forget(user_id)  # a bulk update sends no post_save: drop the cached auth row (accounts/authentication.py)


# --- rewards ----------------------------------------------------------------------------------------------


def _check_reward(reward: Reward) -> None:
    if (reward.limit_count is None) != (not reward.limit_period):
        raise ApplicationError(
            _("Give both a limit and its period, or neither."), code="limit_invalid", attr="limit_period"
        )
    if reward.valid_until and reward.valid_until <= reward.valid_from:
        raise ApplicationError(_("valid_until must be after valid_from."), code="validity_invalid", attr="valid_until")
    if reward.stock is not None and reward.stock < 0:
        raise ApplicationError(_("Stock cannot be negative."), code="stock_invalid", attr="stock")


@transaction.atomic
def reward_create(*, merchant: Merchant, **fields) -> Reward:
    """List a new reward (active at once unless `status` says otherwise)."""
    unknown = set(fields) - REWARD_FIELDS - {"status"}
    if unknown:
        raise ValueError(f"unknown reward fields {sorted(unknown)}")
    if "district" in fields:
        fields["district"] = _district(fields["district"])
    reward = Reward(merchant=merchant, **fields)
    _check_reward(reward)
    reward.save()
    catalogue_changed()
    return reward


def _locked(merchant: Merchant, reward_id: int) -> Reward:
    reward_id = min(int(reward_id), 2**63 - 1)  # a path id beyond bigint is simply not found
    reward = Reward.objects.select_for_update().filter(pk=reward_id, merchant=merchant).first()
    if reward is None:
        raise _not_found()
    return reward


@transaction.atomic
def reward_update(*, merchant: Merchant, reward_id: int, **fields) -> Reward:
    """Change a reward's details. Stock is adjusted with `reward_stock_adjust` (a relative, guarded change),
    except switching between limited and unlimited, which sets it here."""
    unknown = set(fields) - REWARD_FIELDS
    if unknown:
        raise ValueError(f"unknown reward fields {sorted(unknown)}")
    reward = _locked(merchant, reward_id)
    if reward.status == Reward.Status.ARCHIVED:
        raise ApplicationError(_("An archived reward cannot be changed."), code="reward_archived", status_code=409)
    if "district" in fields:
        fields["district"] = _district(fields["district"])
    for name, value in fields.items():
        setattr(reward, name, value)
    _check_reward(reward)
    reward.updated_at = timezone.now()
    reward.save()
    catalogue_changed()
    return reward


TRANSITIONS = {
    Reward.Status.PAUSED: {Reward.Status.ACTIVE},
    Reward.Status.ACTIVE: {Reward.Status.PAUSED},
    Reward.Status.ARCHIVED: {Reward.Status.ACTIVE, Reward.Status.PAUSED},
}


@transaction.atomic
def reward_set_status(*, merchant: Merchant, reward_id: int, status: str) -> Reward:
    """Pause, resume (`active`) or archive (final) a reward. Vouchers already issued stay valid."""
    reward = _locked(merchant, reward_id)
    if reward.status == status:
        return reward
    if reward.status not in TRANSITIONS[status]:
        raise ApplicationError(
            _("A %(old)s reward cannot become %(new)s.") % {"old": reward.status, "new": status},
            code="reward_status_invalid",
            status_code=409,
        )
    reward.status = status
    reward.updated_at = timezone.now()
    reward.save(update_fields=["status", "updated_at"])
    catalogue_changed()
    return reward


@transaction.atomic
def reward_stock_adjust(*, merchant: Merchant, reward_id: int, delta: int) -> Reward:
    """Add (or with a negative delta remove) items. Relative and guarded, so it never overwrites what
    concurrent redemptions took; 409 `stock_insufficient` below zero, `stock_unlimited` on unlimited stock."""
    reward_id = min(int(reward_id), 2**63 - 1)
    reward = Reward.objects.filter(pk=reward_id, merchant=merchant).only("id", "stock").first()
    if reward is None:
        raise _not_found()
    if reward.stock is None:
        raise ApplicationError(_("This reward has unlimited stock."), code="stock_unlimited", status_code=409)
    if locking.stock_adjust(reward_id=reward_id, delta=delta) is None:
        raise ApplicationError(_("Not that many items left."), code="stock_insufficient", status_code=409)
    catalogue_changed()
    return Reward.objects.select_related("merchant", "district").get(pk=reward_id)


def image_reencode(upload) -> bytes:
    """At most 2 MB in, any format Pillow reads; out: a clean JPEG (metadata dropped, orientation applied,
    at most 1600 px a side). Anything else is `image_invalid` / `image_too_large`, never a 500."""
    if upload.size > MAX_IMAGE_BYTES:
        raise ApplicationError(_("The image must be at most 2 MB."), code="image_too_large", attr="image")
    try:
        with Image.open(upload) as probe:
            if probe.width * probe.height > MAX_IMAGE_PIXELS:
                raise ApplicationError(_("The image has too many pixels."), code="image_too_large", attr="image")
            probe.verify()
        upload.seek(0)
        with Image.open(upload) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE))
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=85, optimize=True)
    except ApplicationError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ApplicationError(_("The file is not an image we can read."), code="image_invalid", attr="image") from None
    return out.getvalue()


@transaction.atomic
def reward_image_set(*, merchant: Merchant, reward_id: int, upload) -> Reward:
    """Replace a reward's image with a re-encoded copy of the upload."""
    data = image_reencode(upload)
    reward = _locked(merchant, reward_id)
    old = reward.image.name if reward.image else ""
    reward.image.save(f"{reward.pk}-{secrets.token_hex(6)}.jpg", ContentFile(data), save=False)
    reward.updated_at = timezone.now()
    reward.save(update_fields=["image", "updated_at"])
    if old:
        transaction.on_commit(lambda: reward.image.storage.delete(old))
    catalogue_changed()
    return reward
