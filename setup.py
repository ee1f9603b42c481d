"""Build of the reclnet package.

The architecture's parts stay top-level folders (train/, export/, runtime/) and
are mapped here to the import names reclnet.train, reclnet.export and
reclnet.runtime. The Cython extension over the C post-processing core in csrc/
is built here too.
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent

package_dir = {
    "reclnet": "reclnet",
    "reclnet.train": "train",
    "reclnet.export": "export",
    "reclnet.runtime": "runtime",
    "reclnet.benchmarks": "benchmarks",
}


def find_subpackages() -> list[str]:
    """Every folder with an __init__.py below the mapped folders, by import name."""
    packages = []
    for name, folder in package_dir.items():
        root = HERE / folder
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root)
            parts = [] if str(rel) == "." else list(rel.parts)
            packages.append(".".join([name, *parts]))
    return packages


def extensions() -> list[Extension]:
    """The Cython binding of the C core, when its sources exist."""
    pyx = HERE / "runtime" / "postproc" / "_core.pyx"
    if not pyx.exists():
        return []
    import numpy
    from Cython.Build import cythonize

    csources = sorted(str(p.relative_to(HERE)) for p in (HERE / "csrc" / "src").glob("*.c"))
    ext = Extension(
        "reclnet.runtime.postproc._core",
        sources=["runtime/postproc/_core.pyx", *csources],
        include_dirs=["csrc/include", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3", "-std=c99"],
        # Rebuild when these change; listing them also ships them in the sdist.
        depends=[
            "runtime/postproc/_core.pyx",
            "runtime/postproc/_core.pxd",
            "csrc/include/reclnet/postproc.h",
            "csrc/include/reclnet/postproc_defaults.h",
            *sorted(str(p.relative_to(HERE)) for p in (HERE / "csrc" / "src").glob("*.h")),
        ],
    )
    # include_path: the .pyx cimports runtime/postproc/_core.pxd by its folder path.
    return cythonize([ext], language_level=3, include_path=[str(HERE)])


class build_py_with_header(build_py):
    """Also ships the C core's public header as reclnet/runtime/postproc/include/reclnet/postproc.h.

    reclnet.runtime.get_include() returns that directory in installed packages (and
    csrc/include in editable ones), so other extensions can compile against the core.
    """

    def run(self) -> None:
        super().run()
        header = HERE / "csrc" / "include" / "reclnet" / "postproc.h"
        target = Path(self.build_lib) / "reclnet" / "runtime" / "postproc" / "include" / "reclnet"
        self.mkpath(str(target))
        self.copy_file(str(header), str(target / "postproc.h"))


setup(
    cmdclass={"build_py": build_py_with_header},
    package_dir=package_dir,
    packages=find_subpackages(),
    ext_modules=extensions(),
)
