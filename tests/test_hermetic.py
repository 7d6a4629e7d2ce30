"""The tests ignore the user's own setup (tests/rig/hermetic.py): CI runs them with a hostile
`.env` in the repository root and hostile SSH_*/GATEWAY_* variables to prove it."""

from __future__ import annotations

import os
from pathlib import Path

from lfgate.config import Settings, load_settings
from tests.rig.hermetic import box_home, is_user_setting

ROOT = Path(__file__).resolve().parent.parent


def test_no_user_setting_is_in_the_environment():
    assert [key for key in os.environ if is_user_setting(key)] == []


def test_home_and_working_directory_are_empty_and_not_the_users():
    # Made empty for this session (tests/rig/hermetic.py): tools other tests run (pip) may
    # write there since, so what counts is whose it is and what of the user's it holds.
    home = Path(os.environ["HOME"])
    assert home != box_home() and home.parent.name.startswith("lfgate-hermetic-")
    assert not (home / ".ssh").exists() and not (home / ".env").exists()
    assert Path.cwd() != ROOT and not Path(".env").exists()


def test_settings_made_here_are_the_defaults_and_what_the_test_says():
    """Whatever the repository's .env or the shell says, a test's settings are its own."""
    settings = load_settings(base_model_path="/m")
    defaults = Settings.model_construct(base_model_path="/m")
    for name in Settings.model_fields:
        assert getattr(settings, name) == getattr(defaults, name), name


def test_property_tests_never_fail_on_the_machines_load():
    """Hypothesis's timing checks are off for every property test (tests/conftest.py):
    a too-slow draw or example is the machine's load under two workers, not a finding."""
    from hypothesis import HealthCheck, settings

    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check
    # A test's own @settings(max_examples=...) keeps them off.
    assert HealthCheck.too_slow in settings(max_examples=5).suppress_health_check
    assert settings(max_examples=5).deadline is None
