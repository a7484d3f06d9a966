"""ros2_control controller files checked against the safety controller's joint order.

The forward command controller reads the safety controller's Float64MultiArray in its own
``joints`` order, so a reordered list moves every joint to another's command; the
trajectory controller maps by name. Both must command ``position``.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from wam_runtime.core.param_files import load_param_file, section_node
from wam_runtime.core.params import ConfigError
from wam_runtime.tools.params_check import Finding


@dataclass(frozen=True)
class ControllerSpec:
    """One ros2_control controller: name, type and joints (in the YAML's order)."""

    name: str
    type: str  # noqa: A003 - the ros2_control parameter name
    joints: Tuple[str, ...]
    interfaces: Tuple[str, ...]

    @property
    def command_topic(self) -> Optional[str]:
        """The topic the controller takes commands on (None for broadcasters)."""
        if self.type in FORWARD_TYPES:
            return f'/{self.name}/commands'
        if self.type == JTC_TYPE:
            return f'/{self.name}/joint_trajectory'
        return None


FORWARD_TYPES = ('forward_command_controller/ForwardCommandController',
                 'position_controllers/JointGroupPositionController')
JTC_TYPE = 'joint_trajectory_controller/JointTrajectoryController'


def load_controllers(path: str) -> Tuple[Dict[str, ControllerSpec], List[Finding]]:
    """Read a ros2_control controller YAML: the controllers the manager loads, by name."""
    findings: List[Finding] = []
    try:
        sections = load_param_file(path)
    except ConfigError as exc:
        return {}, [Finding('error', path, str(exc))]
    by_node = {section_node(k): v for k, v in sections.items()}
    manager = by_node.get('controller_manager')
    if manager is None:
        return {}, [Finding('error', path, 'no controller_manager section')]
    rate = manager.get('update_rate')
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        findings.append(Finding('error', f'{path}: controller_manager',
                                f'update_rate: expected a positive integer (Hz), got {rate!r}'))
    controllers = {}
    for key, value in manager.items():
        if not key.endswith('.type'):
            continue
        name = key[:-len('.type')]
        params = by_node.get(name, {})
        interfaces = params.get('interface_name') or params.get('command_interfaces') or []
        controllers[name] = ControllerSpec(
            name, str(value), tuple(params.get('joints') or ()),
            tuple([interfaces] if isinstance(interfaces, str) else interfaces))
    return controllers, findings


def check_controllers(path: str, joint_names: Sequence[str]) -> List[Finding]:
    """Check a controller YAML against the safety controller's ``joint_names``.

    The forward command controller reads a Float64MultiArray in its ``joints`` order, which
    must be exactly ``joint_names`` (same joints, same order); the trajectory controller
    maps by name, so the same set is enough. Both must command ``position``.
    """
    controllers, findings = load_controllers(path)
    commanding = [c for c in controllers.values() if c.command_topic]
    if not commanding and not findings:
        findings.append(Finding('error', path, 'no forward_command or joint_trajectory '
                                               'controller declared'))
    for c in commanding:
        where = f'{path}: {c.name}'
        if not c.joints:
            findings.append(Finding('error', where, 'joints: missing'))
        elif c.type in FORWARD_TYPES and list(c.joints) != list(joint_names):
            findings.append(Finding('error', where, f'joints: {list(c.joints)} must equal the '
                                                    f'safety controller joint_names '
                                                    f'{list(joint_names)} in the same order '
                                                    '(Float64MultiArray is positional)'))
        elif set(c.joints) != set(joint_names):
            findings.append(Finding('error', where, f'joints: {sorted(c.joints)} differ from '
                                                    f'joint_names {sorted(joint_names)}'))
        if c.type in FORWARD_TYPES[:1] and c.interfaces != ('position',):
            findings.append(Finding('error', where, f'interface_name: {list(c.interfaces)}, '
                                                    "expected 'position'"))
        if c.type == JTC_TYPE and 'position' not in c.interfaces:
            findings.append(Finding('error', where, 'command_interfaces: must include '
                                                    'position'))
    return findings
