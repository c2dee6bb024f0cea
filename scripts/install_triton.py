"""Make `tritonserver` with the Python backend runnable from this virtualenv.

On a machine without Triton (no NGC image) the server comes from the PyPI
wheel `nvidia-pytriton`, which ships the binary, the Python backend and its
stubs. They do not run as shipped; this writes:

- `<venv>/triton/backends/python/`: the backend library, its utils module and
  the stub built for the running Python version;
- `<venv>/bin/tritonserver`: a launcher that sets the environment the server
  and its stubs need (see docs in the launcher) and passes the backend
  directory, so that `tritonserver --model-repository model_repository` works
  with the virtualenv active.

When a real `tritonserver` is already on PATH (the NGC image) nothing is done.
Run with the virtualenv's Python. Idempotent.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import sysconfig
from pathlib import Path

LAUNCHER_MARK = "# dsocr tritonserver launcher"


def venv_dir() -> Path:
    return Path(sys.prefix)


def system_tritonserver() -> str | None:
    """A tritonserver on PATH that is not our own launcher."""
    launcher = venv_dir() / "bin" / "tritonserver"
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "tritonserver"
        if candidate.is_file() and os.access(candidate, os.X_OK) and candidate.resolve() != launcher.resolve():
            return str(candidate)
    return None


def wheel_root() -> Path:
    # Found, not imported: the pytriton library needs dependencies that are
    # deliberately not installed (only its server binary is used).
    site_packages = Path(sysconfig.get_paths()["purelib"])
    root = site_packages / "pytriton" / "tritonserver"
    if not root.is_dir():
        sys.exit("install_triton: nvidia-pytriton is not installed in this virtualenv")
    return root


def lay_out_python_backend(server_root: Path, backends: Path) -> None:
    python_backend = backends / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    sources = {
        "libtriton_python.so": server_root / "backends/python/libtriton_python.so",
        "triton_python_backend_utils.py": server_root / "backends/python/triton_python_backend_utils.py",
        # The backend looks for the stub next to itself; the wheel keeps one
        # per Python version elsewhere.
        "triton_python_backend_stub": server_root / f"python_backend_stubs/{version}/triton_python_backend_stub",
    }
    for name, source in sources.items():
        if not source.exists():
            sys.exit(f"install_triton: {source} missing from nvidia-pytriton")
        shutil.copy2(source, python_backend / name)


def launcher_script(server_root: Path, backends: Path) -> str:
    libs = server_root.parent.parent / "nvidia_pytriton.libs"
    python_libdir = sysconfig.get_config_var("LIBDIR")
    venv_bin = venv_dir() / "bin"
    return f"""#!/usr/bin/env bash
{LAUNCHER_MARK} (written by scripts/install_triton.py)
# - this Python's own libpython first: otherwise the stub binds an older
#   system libpython and compiled extension modules fail to load;
# - the wheel's bundled libraries (libcudart, ...) for server and stubs;
# - the virtualenv's python3 first on PATH: the stub takes its Python
#   environment (site-packages) from it.
export LD_LIBRARY_PATH="{python_libdir}:{libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
export PATH="{venv_bin}:$PATH"
exec "{server_root}/bin/tritonserver" --backend-directory="{backends}" "$@"
"""


def main() -> None:
    found = system_tritonserver()
    if found:
        print(f"install_triton: using {found}")
        return
    server_root = wheel_root()
    backends = venv_dir() / "triton" / "backends"
    lay_out_python_backend(server_root, backends)
    launcher = venv_dir() / "bin" / "tritonserver"
    launcher.write_text(launcher_script(server_root, backends))
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"install_triton: {launcher} -> {server_root / 'bin/tritonserver'}")


if __name__ == "__main__":
    main()
