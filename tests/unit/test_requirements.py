"""The locks pin what their inputs name, so that a lock compiled from an older input is caught."""

import re

import pytest

from dsocr import paths

REQUIREMENTS = paths.REPO_ROOT / "requirements"


def pins(path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\[\]-]+)==(\S+)", path.read_text(), re.M))


@pytest.mark.parametrize(
    "source, locks", [("cpu.in", ["cpu.lock"]), ("gpu.in", ["gpu-py3.11.lock", "gpu-py3.12.lock"])]
)
def test_each_lock_pins_its_inputs(source, locks):
    wanted = pins(REQUIREMENTS / source) | pins(REQUIREMENTS / "common.txt")
    wanted = {name.split("[")[0]: version for name, version in wanted.items()}
    overrides = pins(REQUIREMENTS / "overrides.txt")
    for lock in locks:
        locked = pins(REQUIREMENTS / lock)
        for name, version in wanted.items():
            assert locked.get(name) == overrides.get(name, version), f"{lock}: {name}"
