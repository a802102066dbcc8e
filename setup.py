"""Build hook (the project is configured in pyproject.toml): the bone maps in ``presets/bones`` go into
the wheel as ``mtvcrafter/motion/bones``, where :mod:`mtvcrafter.motion.bone_maps` finds them once
installed. (In a checkout or an editable install it reads ``presets/bones`` directly.)"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithBoneMaps(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "mtvcrafter" / "motion" / "bones"
        self.mkpath(str(target))
        for path in sorted((HERE / "presets" / "bones").glob("*.json")):
            self.copy_file(str(path), str(target / path.name))


setup(cmdclass={"build_py": BuildWithBoneMaps})
