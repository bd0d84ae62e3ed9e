"""Build of ocirt's native extensions: csrc/*.c bound by Cython (ocirt/_native.pyx) and by cffi."""

from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class build_py_without_build_scripts(build_py):
    """The wheel gets no build script: the cffi backend's is for this build only."""

    def find_package_modules(self, package, package_dir):
        return [m for m in super().find_package_modules(package, package_dir) if m[1] != "_cffi_build"]


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
    cmdclass={"build_py": build_py_without_build_scripts},
)
