"""The emulated ARM64 phone beside the pipeline: an aarch64 userland built under a cache folder
(``userland``), Python run in it under qemu-user (``guest``), guest instruction counts (``count``),
bundles run there end to end (``run``), and desktop CPU profiles approximating phone classes
(``profiles``). The runtime imports nothing from here; the guest runs the runtime through a shim.
"""

from .count import InstructionCount, count_instructions, instruction_counting_status
from .errors import DeviceError
from .guest import DEFAULT_CPU, find_qemu, run_python
from .marker import is_prepared, userland_info
from .profiles import PROFILES, DeviceProfile, apply_profile, profile
from .userland import SUPPORTED_ARCHES, default_cache_dir, prepare
from .wheels import EXECUTORCH_AARCH64, EXECUTORCH_RUNTIME_API_DEPS, TORCH_AARCH64

__all__ = [
    "DEFAULT_CPU",
    "EXECUTORCH_AARCH64",
    "EXECUTORCH_RUNTIME_API_DEPS",
    "PROFILES",
    "SUPPORTED_ARCHES",
    "TORCH_AARCH64",
    "DeviceError",
    "DeviceProfile",
    "InstructionCount",
    "apply_profile",
    "count_instructions",
    "default_cache_dir",
    "find_qemu",
    "instruction_counting_status",
    "is_prepared",
    "prepare",
    "profile",
    "run_python",
    "userland_info",
]
