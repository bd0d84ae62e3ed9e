"""Build of ocirt's native parts: csrc/*.c bound by Cython (ocirt/_native.pyx)
and by cffi, and csrc/stub/stub.c, the static first process of pooled
containers (ocirt/ocirt-stub, package data)."""

import os
import shlex
import shutil
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

STUB = "ocirt-stub"


class build_py_without_build_scripts(build_py):
    """The wheel gets no build script: the cffi backend's is for this build only."""

    def find_package_modules(self, package, package_dir):
        return [m for m in super().find_package_modules(package, package_dir) if m[1] != "_cffi_build"]


class build_ext_and_stub(build_ext):
    """The extensions, then the stub: a static program (it runs inside
    containers, whose root filesystems have no libc of ours), linked with
    musl where musl-gcc is installed: a static glibc program spends about
    0.35 ms starting here (its CPU feature probes trap to the hypervisor),
    on every pooled job's path. OCIRT_STUB_CC overrides the choice."""

    def run(self):
        super().run()
        out = "ocirt" if self.inplace else os.path.join(self.build_lib, "ocirt")
        self.mkpath(out)
        cc = shlex.split(os.environ.get("OCIRT_STUB_CC") or ("musl-gcc" if shutil.which("musl-gcc") else os.environ.get("CC", "gcc")))
        self.spawn([*cc, "-static", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-o", os.path.join(out, STUB), "csrc/stub/stub.c"])

    def get_outputs(self):
        out = "ocirt" if self.inplace else os.path.join(self.build_lib, "ocirt")
        return [*super().get_outputs(), os.path.join(out, STUB)]


native = Extension(
    "ocirt._native",
    sources=["ocirt/_native.pyx", *sorted(glob("csrc/*.c"))],
    include_dirs=["csrc"],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

# The cffi backend: the same csrc/ behind cffi (see ocirt/native.py).
setup(
    ext_modules=cythonize([native], language_level=3),
    cffi_modules=["ocirt/_cffi_build.py:ffibuilder"],
    cmdclass={"build_py": build_py_without_build_scripts, "build_ext": build_ext_and_stub},
)
