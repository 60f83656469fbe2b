"""Device choice (cuda, then mps, then cpu), seeding, and DataLoader settings that work in notebooks."""

from __future__ import annotations

import os
import platform
import random
import sys

import numpy as np
import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """cuda if available, then Apple mps, then cpu; ``prefer`` or $COURSE_DEVICE overrides."""
    wanted = prefer or os.environ.get("COURSE_DEVICE")
    if wanted:
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"COURSE_DEVICE={wanted} but torch sees no CUDA device; unset it to use the CPU.")
        if device.type == "mps" and not _mps_available():
            raise RuntimeError(f"COURSE_DEVICE={wanted} but MPS is not available; unset it to use the CPU.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def loader_kwargs(device: torch.device | str | None = None) -> dict:
    """DataLoader settings safe inside Jupyter on Linux, macOS and Windows.

    Worker processes cannot unpickle datasets defined in a notebook on macOS/Windows (spawn start
    method), so data loads in the main process; pinned memory only helps when copying to CUDA.
    """
    device = torch.device(device) if device is not None else pick_device()
    return {"num_workers": 0, "pin_memory": device.type == "cuda"}


def machine_record(note: str = "", device: torch.device | str | None = None) -> dict:
    """Where a measurement ran (OS, CPU, torch threads, load, versions, device): one record for every tool.

    ``device`` is the device the measurement used (default: the one pick_device() would choose)."""
    import torchvision

    device = torch.device(device) if device is not None else pick_device()
    record = {
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
    }
    if note:
        record["note"] = note
    return record


def describe_machine(record: dict) -> str:
    """A machine record in one line a person reads, e.g. 'Linux x86_64, 2 CPU cores, 1 torch thread, cpu, load 0.8'."""
    parts = [
        record.get("platform", "?"),
        f"{record.get('cpu_count', '?')} CPU cores",
        f"{record.get('torch_threads', '?')} torch thread(s)",
        str(record.get("device", "?")),
    ]
    if record.get("gpu") not in (None, "none"):
        parts.append(record["gpu"])
    if record.get("load_average"):
        parts.append(f"load average {record['load_average'][0]:.1f}")
    if record.get("note"):
        parts.append(record["note"])
    return ", ".join(parts)


def environment_report() -> dict:
    """Versions and hardware, for the set-up check in lesson 00: machine_record's facts, and the CUDA build."""
    record = machine_record()
    report = {key: record[key] for key in ("python", "platform", "torch", "torchvision", "device")}
    report["cpu_threads"] = record["torch_threads"]
    report["cuda_build"] = torch.version.cuda or "none"
    if record["gpu"] != "none":
        report["gpu"] = record["gpu"]
    report["executable"] = sys.executable
    return report
