"""Fixtures of the doctor tests: one ready instance per module (simulated Vast + a real host)."""

from tests.doctor.boxkit import box

__all__ = ["box"]
