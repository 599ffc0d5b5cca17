import itertools
import os
import time

import pytest

from rewards import catalogue
from tests.conftest import PASSWORD, client_for, next_phone

_names = itertools.count(1)


@pytest.fixture
def merchant_factory(reference_data):
    """make() -> (merchant, manager MerchantStaff with .client)."""

    def make(district="370202", name=None):
        merchant = catalogue.merchant_create(
            name_zh=name or f"商户{next(_names)}-{os.getpid()}-{time.monotonic_ns()}", name_en="Shop", district=district
        )
        staff = catalogue.staff_add(merchant=merchant, phone=next_phone(), password=PASSWORD, is_manager=True)
        staff.client = client_for(staff.user)
        return merchant, staff

    return make


@pytest.fixture
def shop(merchant_factory):
    return merchant_factory()


@pytest.fixture
def reward_factory():
    def make(merchant, **fields):
        fields.setdefault("title_zh", f"奖励{next(_names)}")
        fields.setdefault("points_cost", 100)
        fields.setdefault("face_value_minor", 1000)
        return catalogue.reward_create(merchant=merchant, **fields)

    return make
