"""ament_python setup for wam_runtime."""

from glob import glob
import os
import re

from setuptools import find_packages, setup

package_name = 'wam_runtime'


def _version() -> str:
    """Read the version from package.xml so that the two can never drift."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, 'package.xml'), encoding='utf-8') as f:
        match = re.search(r'<version>([^<]+)</version>', f.read())
    if match is None:
        raise RuntimeError('package.xml has no <version> element')
    return match.group(1).strip()


setup(
    name=package_name,
    version=_version(),
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    package_data={package_name: ['sim/assets/*.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')
         + glob('config/*.urdf')),
        ('share/' + package_name + '/config/controllers', glob('config/controllers/*.yaml')),
        ('share/' + package_name + '/config/nodes', glob('config/nodes/*.yaml')),
        ('share/' + package_name + '/config/security', glob('config/security/*.xml')
         + glob('config/security/*.xsd')),
        ('share/' + package_name + '/config/examples', glob('config/examples/*')),
        ('share/' + package_name + '/models', glob('models/*.onnx') + glob('models/*.md')),
    ],
    install_requires=['setuptools'],
    # colcon test runs pytest only for packages that declare it (else unittest: 0 tests).
    extras_require={'test': ['pytest']},
    zip_safe=True,
    maintainer='wam_runtime maintainers',
    maintainer_email='maintainers@wam-runtime.dev',
    description='ONNX world-action policy runtime for ROS 2 with a fail-closed safety gate.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'policy_node = wam_runtime.ros.policy_node:main',
            'recorder_node = wam_runtime.ros.recorder_node:main',
            'safety_controller = wam_runtime.ros.safety_controller:main',
            'synthetic_camera = wam_runtime.ros.synthetic_camera:main',
            'sim_node = wam_runtime.sim.sim_node:main',
            'wam-runtime = wam_runtime.cli:main',
        ],
    },
)
