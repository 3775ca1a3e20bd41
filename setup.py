"""Build hook for the one C extension; everything else is declared in pyproject.toml.

``rbac._native`` is optional: without a C compiler (or Python headers) the build skips it and
rbac answers every decision in pure Python, identically, only slower at large policy sizes.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rbac._native",
            ["rbac/_native.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
