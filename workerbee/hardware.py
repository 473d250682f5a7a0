"""What this machine offers, in the units the connect message uses (reference §2).

Measured again on every (re)connect, unlike the original which cached it for the
life of the process, so the coordinator sees current free RAM and disk.
"""

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIB = 2**20


@dataclass(frozen=True)
class Gpu:
    name: str | None
    uuid: str | None
    memory: float | None  # total framebuffer, MiB
    clock: int | None
    clock_unit: str | None = "MHz"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uuid": self.uuid, "memory": self.memory, "clock": self.clock, "clock_unit": self.clock_unit}


@dataclass(frozen=True)
class HardwareReport:
    cpu_count: int
    ram_bytes: int  # available system RAM (the wire field `vram`)
    disk_space_mib: int  # free space of the models folder
    nv_driver_version: str | None = None
    nv_gpus: tuple[Gpu, ...] = ()


def available_ram() -> int:
    try:
        import psutil
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.virtual_memory().available)


def free_disk_mib(folder: Path) -> int:
    """Free space where models are stored (the original measured the working directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free // MIB


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvidia_gpus() -> tuple[str | None, tuple[Gpu, ...]]:
    """NVIDIA driver version and GPUs via NVML, or (None, ()) without the library or a GPU."""
    try:
        import pynvml
    except ImportError:
        return None, ()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None, ()
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append(
                Gpu(
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    memory=pynvml.nvmlDeviceGetMemoryInfo(handle).total / MIB,
                    clock=int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_GRAPHICS)),
                )
            )
        return _text(pynvml.nvmlSystemGetDriverVersion()), tuple(gpus)
    except pynvml.NVMLError as exc:
        log.warning("NVML is present but failed (%s); reporting no GPUs", exc)
        return None, ()
    finally:
        pynvml.nvmlShutdown()


def measure(models_dir: Path) -> HardwareReport:
    driver, gpus = nvidia_gpus()
    return HardwareReport(
        cpu_count=os.cpu_count() or 1,
        ram_bytes=available_ram(),
        disk_space_mib=free_disk_mib(models_dir),
        nv_driver_version=driver,
        nv_gpus=gpus,
    )
