"""Static validation of launch files: read with ``ast``, never imported or executed.

A launch file is evaluated the way ``ros2 launch`` would with a given set of launch
arguments (``evaluate``, ``substitutions``) into a :class:`LaunchPlan` (``plan``): every
node with its fully qualified name, parameter sources and remaps, every process.
:func:`check_plan` then checks it:

- only launch API present in both Jazzy and Kilted is imported; every argument has a
  description, every ``LaunchConfiguration`` is declared in its file (``evaluate``);
- executables, paths and parameters (``checks``): console scripts, existing share paths,
  declared parameters with their types, sections that match the node's namespace, values
  that build with the node's own configuration builder, a valid model contract;
- topics (``topics``): endpoints that share a name in the code still share it after
  namespaces and remaps, one message type per topic, bridge entries connected.

``report`` prints a plan and gives a node's ``--ros-args``; ``wam-runtime check-launch`` is
the command line over :func:`validate_launch` (``tools.check_launch``).
"""

from typing import Mapping, Optional

from wam_runtime.core.interfaces import NODE_TOPICS, SAFETY_OUTPUTS
from wam_runtime.tools.launch_check.checks import (
    check_executables, check_parameters, check_paths, console_scripts)
from wam_runtime.tools.launch_check.evaluate import evaluate_launch, PORTABLE_API
from wam_runtime.tools.launch_check.plan import (
    ArgDecl, LaunchPlan, NodeDecl, PACKAGE, ProcessDecl, remap_topic, resolve_topic,
    TopicEndpoint, UNKNOWN)
from wam_runtime.tools.launch_check.report import format_plan, launch_files, ros_arguments
from wam_runtime.tools.launch_check.topics import check_topics

__all__ = [
    'ArgDecl', 'check_plan', 'console_scripts', 'evaluate_launch', 'format_plan',
    'launch_files', 'LaunchPlan', 'NODE_TOPICS', 'NodeDecl', 'PACKAGE', 'PORTABLE_API',
    'ProcessDecl', 'remap_topic', 'resolve_topic', 'ros_arguments', 'SAFETY_OUTPUTS',
    'TopicEndpoint', 'UNKNOWN', 'validate_launch',
]


def check_plan(plan: LaunchPlan, share_root: str) -> LaunchPlan:
    """Run every check on an evaluated plan; findings are appended to ``plan.findings``."""
    check_executables(plan, console_scripts(share_root))
    check_paths(plan, share_root)
    merged, contract = check_parameters(plan)
    check_topics(plan, merged, contract)
    return plan


def validate_launch(path: str, share_root: str,
                    arguments: Optional[Mapping[str, str]] = None) -> LaunchPlan:
    """Evaluate and check one launch file; see ``plan.findings``."""
    return check_plan(evaluate_launch(path, share_root, arguments), share_root)
