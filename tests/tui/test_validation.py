"""A pin is checked before it is sent: level, a name of that level, a PEP 440 version or
specifier, and, when the feed is known, a name and exact version the feed has."""

from __future__ import annotations

import pytest

from tests.tui.fake import AVAILABLE
from tui.validation import PinInput, pin_problems


@pytest.mark.parametrize("pin", [
    PinInput("capability", "core/auth", "1.0.1"),
    PinInput("capability", "core/auth", "~=1.0.0"),
    PinInput("capability", "core/auth", ">=1.0,<2"),
    PinInput("suite", "core", "~=1.2.0"),
    PinInput("suite", "core", "1.2.9"),  # suite versions are not listed by the API: not checked
    PinInput("platform", "platform", "2.6.0"),
    PinInput("platform", "platform", "==2.*"),
])
def test_good_pins_pass(pin):
    assert pin_problems(pin, AVAILABLE) == []


@pytest.mark.parametrize(("pin", "problem"), [
    (PinInput("release", "core", "1.0"), "level must be one of platform, suite, capability"),
    (PinInput("platform", "core", "2.6.0"), 'a platform pin is named "platform"'),
    (PinInput("suite", "Core!", "1.0"), "a suite name is lower-case letters"),
    (PinInput("capability", "auth", "1.0"), "a capability is named suite/capability"),
    (PinInput("capability", "core/", "1.0"), "a capability is named suite/capability"),
    (PinInput("suite", "billing", "1.0"), "the feed has no suite billing (it has analytics, core, search)"),
    (PinInput("capability", "core/nope", "1.0"), "the feed has no capability core/nope"),
    (PinInput("capability", "core/auth", ""), "version: a version (1.2.0) or a specifier (~=1.2.0) is needed"),
    (PinInput("capability", "core/auth", "latest"), "version: 'latest' is neither a PEP 440 version nor a specifier"),
    (PinInput("capability", "core/auth", "~=1"), "version: '~=1' is neither"),
    (PinInput("capability", "core/auth", "1.0.9"), "version: the feed has no core/auth 1.0.9 (it has 1.0.1, 1.0.0"),
    (PinInput("platform", "platform", "9.0"), "version: the feed has no platform 9.0"),
])
def test_bad_pins_say_what_is_wrong(pin, problem):
    problems = pin_problems(pin, AVAILABLE)
    assert any(found.startswith(problem) for found in problems), problems


def test_without_a_feed_only_the_form_is_checked():
    assert pin_problems(PinInput("capability", "core/nope", "1.0.9"), None) == []
    assert pin_problems(PinInput("capability", "core/nope", "1.0.9"), {}) == []


def test_an_equal_version_written_differently_is_the_feeds():
    assert pin_problems(PinInput("capability", "core/auth", "1.0.1.0"), AVAILABLE) == []
