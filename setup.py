"""Build of ocirt's native extension: csrc/*.c bound by ocirt/_native.pyx."""

from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

native = Extension(
    "ocirt._native",
    sources=["ocirt/_native.pyx", *sorted(glob("csrc/*.c"))],
    include_dirs=["csrc"],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

setup(ext_modules=cythonize([native], language_level=3))
