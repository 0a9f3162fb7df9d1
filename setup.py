"""The native kernel as a compiled part of the package (the metadata is in pyproject.toml).

``snntorch_async/engine/_native/async_kernel.c`` is built into the wheel (and in place by an
editable install) as ``snntorch_async/engine/_async_kernel.so``: a plain shared library that
``snntorch_async.engine.native`` loads with ``ctypes``. It uses no Python C-API, so it has no
module init and no Python tag: the wheel is ``py3-none-<platform>``. The flags, file name and
source digest come from ``snntorch_async/engine/kernel_build.py`` (shared with the loader's
compile-on-first-use fallback). The extension is optional: without a C compiler an install from
source still succeeds, and the loader then compiles on first use or runs the torch code.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

_spec = importlib.util.spec_from_file_location(
    "kernel_build", Path(__file__).parent / "snntorch_async" / "engine" / "kernel_build.py"
)
kb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kb)


class BuildKernel(build_ext):
    """``build_ext`` for a ctypes library: file name :data:`kernel_build.LIBRARY`, no exports."""

    def get_ext_filename(self, fullname: str) -> str:
        # called with the dotted name and with its last part alone (both are in ext_map)
        ext = self.ext_map.get(fullname)
        if ext is not None and ext.name == kb.EXTENSION:
            return os.path.join(*fullname.split(".")[:-1], kb.LIBRARY)
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext: Extension) -> list[str]:
        # no PyInit_<name>: the library is loaded with ctypes, never imported
        return [] if ext.name == kb.EXTENSION else super().get_export_symbols(ext)


class Py3Wheel(bdist_wheel):
    """The wheel's tag is ``py3-none-<platform>``: the library depends on the platform only."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        return "py3", "none", plat


kernel = Extension(
    kb.EXTENSION,
    sources=[kb.SOURCE_IN_REPO],
    define_macros=[
        (kb.DIGEST_MACRO, f'"{kb.source_digest(Path(__file__).parent / kb.SOURCE_IN_REPO)}"')
    ],
    extra_compile_args=list(kb.CFLAGS),
    extra_link_args=list(kb.LDFLAGS),
    optional=True,
)

setup(ext_modules=[kernel], cmdclass={"build_ext": BuildKernel, "bdist_wheel": Py3Wheel})
