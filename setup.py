"""Build of ocirt's native extensions: csrc/*.c bound by Cython (ocirt/_native.pyx) and by cffi."""

from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

native = Extension(
    "ocirt._native",
    sources=["ocirt/_native.pyx", *sorted(glob("csrc/*.c"))],
    include_dirs=["csrc"],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

# The cffi backend: the same csrc/ behind cffi (see ocirt/native.py).
setup(ext_modules=cythonize([native], language_level=3), cffi_modules=["ocirt/_cffi_build.py:ffibuilder"])
