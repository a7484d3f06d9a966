"""A URDF for Pinocchio and the safety gate, generated from a MuJoCo model (MJCF).

``mjcf_to_urdf`` compiles the MJCF with MuJoCo (so
``<include>`` files, defaults and ``euler`` angles are resolved exactly as the simulator
resolves them) and writes one URDF link per body on the path from the world to the commanded
joints and the named frames: the joint origin is the body's ``pos``/``quat`` relative to its
parent (MuJoCo joints must sit at the body origin, ``pos="0 0 0"``), the axis the MJCF joint
axis, ``<limit lower upper>`` the MJCF range. An MJCF has no velocity limits: they are
arguments (documented values). ``<safety_controller>`` soft limits sit ``soft_margin``
inside the range. Visuals, collisions and inertials are left out: the URDF is for
kinematics and limits.

A gripper whose fingers follow one commanded value affinely (``finger = multiplier *
command + offset``) becomes a prismatic joint in the command's own units on a link that
carries nothing, and one mimic joint per finger, so joint limits are checked in the
action's units and forward kinematics moves the fingers with the command.

A model MuJoCo cannot load, or one without the mapped joints, raises :class:`MjcfError`.
:mod:`wam_runtime.tools.aloha_urdf` applies it to gym-aloha's bimanual transfer cube.
"""

from dataclasses import dataclass
import glob
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from xml.sax.saxutils import quoteattr

import mujoco
import numpy as np

EXIT_OK, EXIT_INVALID = 0, 2
# urdfdom (Pinocchio's URDF parser) refuses a <safety_controller> without k_velocity; the
# gains are ros_control's soft-limit gains (the reference arm's values), unused by the gate.
SOFT_GAINS = 'k_position="20" k_velocity="10"'


class MjcfError(ValueError):
    """The MJCF cannot be loaded or does not fit the joint map; the message says why."""


@dataclass(frozen=True)
class Finger:
    """One MJCF finger joint that follows a gripper command: ``multiplier * cmd + offset``."""

    name: str           # URDF joint name
    mjcf_joint: str
    multiplier: float
    offset: float


@dataclass(frozen=True)
class Gripper:
    """A gripper the gate commands as one value in its own units (not metres)."""

    name: str           # URDF joint name, the gate's joint
    body: str           # MJCF body the fingers hang from
    fingers: Tuple[Finger, ...]
    lower: float
    upper: float
    velocity: float     # command units per second
    unit: str           # what the value means, for the URDF comment


@dataclass(frozen=True)
class Frame:
    """A named fixed frame: at an MJCF site, or at the far (+x) end of a geom's extent."""

    name: str
    site: Optional[str] = None
    geom_tip: Optional[str] = None


# ------------------------------------------------------------------ generator
def _num(x: float) -> str:
    """Return ``x`` with 15 significant digits (exact for values read from decimal text)."""
    v = float(x)
    return '0' if v == 0 else f'{v:.15g}'


def _comment(text: str) -> str:
    """Return ``text`` fit for an XML comment (which may not hold ``--``)."""
    return text.replace('--', '- -')


def _vec(values: Sequence[float]) -> str:
    return ' '.join(_num(v) for v in values)


def quat_to_rpy(quat: Sequence[float]) -> Tuple[float, float, float]:
    """Return URDF roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll)) of a MuJoCo quaternion."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    r = mat.reshape(3, 3)
    cp = math.hypot(r[0, 0], r[1, 0])
    pitch = math.atan2(-r[2, 0], cp)
    if cp > 1e-9:
        return math.atan2(r[2, 1], r[2, 2]), pitch, math.atan2(r[1, 0], r[0, 0])
    return 0.0, pitch, math.atan2(-r[0, 1], r[1, 1])     # gimbal lock: roll folded into yaw


def _origin(pos: Sequence[float], quat: Sequence[float]) -> str:
    return f'<origin xyz="{_vec(pos)}" rpy="{_vec(quat_to_rpy(quat))}"/>'


def load_mjcf(mjcf_path: str) -> mujoco.MjModel:
    """Compile an MJCF with MuJoCo; raise MjcfError naming the file and MuJoCo's reason."""
    if not os.path.isfile(mjcf_path):
        raise MjcfError(f'{mjcf_path}: no such file')
    try:
        return mujoco.MjModel.from_xml_path(mjcf_path)
    except ValueError as exc:
        raise MjcfError(f'{mjcf_path}: MuJoCo cannot load it ({str(exc).strip()})') from None


def _id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str, what: str) -> int:
    i = mujoco.mj_name2id(model, kind, name)
    if i < 0:
        raise MjcfError(f'the MJCF has no {what} {name!r}')
    return i


def geom_tip(model: mujoco.MjModel, geom: int) -> np.ndarray:
    """Return the far end of a geom in its body frame: max x, centre y and z, to 0.1 mm.

    Mesh geoms use their vertices, other geoms their bounding box. Rounded so that the
    value does not depend on MuJoCo's float32 mesh processing.
    """
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.geom_quat[geom])
    rot = rot.reshape(3, 3)
    mesh = model.geom_dataid[geom]
    if int(model.geom_type[geom]) == int(mujoco.mjtGeom.mjGEOM_MESH) and mesh >= 0:
        start, n = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
        local = model.mesh_vert[start:start + n].astype(np.float64)
    else:
        c, h = model.geom_aabb[geom][:3], model.geom_aabb[geom][3:]
        local = np.array([c + h * (2 * np.array(s) - 1) for s in np.ndindex(2, 2, 2)])
    pts = model.geom_pos[geom] + local @ rot.T
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.round(np.array([hi[0], (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2]), 4) + 0.0


def _effort(model: mujoco.MjModel, joint: int) -> float:
    """Return the force limit of the actuator on ``joint`` (0: none in the MJCF)."""
    for a in range(model.nu):
        if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT) and \
                model.actuator_trnid[a][0] == joint and model.actuator_forcelimited[a]:
            return float(np.max(np.abs(model.actuator_forcerange[a])))
    return 0.0


def _joint_kind(model: mujoco.MjModel, joint: int, name: str) -> str:
    typ = int(model.jnt_type[joint])
    if typ not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
        raise MjcfError(f'MJCF joint {name!r} is neither a hinge nor a slide joint')
    if np.any(model.jnt_pos[joint] != 0):
        raise MjcfError(f'MJCF joint {name!r} is not at its body origin (pos '
                        f'{model.jnt_pos[joint].tolist()}); not supported')
    if not model.jnt_limited[joint]:
        raise MjcfError(f'MJCF joint {name!r} has no range')
    return 'revolute' if typ == int(mujoco.mjtJoint.mjJNT_HINGE) else 'prismatic'


def distribution_of(path: str) -> Optional[Tuple[str, str, str]]:
    """Return (distribution, version, path inside it) of a file in an installed package.

    Looks for ``<pkg>-<version>.dist-info`` next to a parent folder of ``path`` (a
    site-packages or an unpacked wheel); None when there is none.
    """
    here = os.path.dirname(os.path.abspath(path))
    while os.path.dirname(here) != here:
        parent = os.path.dirname(here)
        for info in sorted(glob.glob(os.path.join(parent, os.path.basename(here)
                                                  + '-*.dist-info'))):
            name, version = os.path.basename(info)[:-len('.dist-info')].rsplit('-', 1)
            meta = os.path.join(info, 'METADATA')
            if os.path.isfile(meta):
                with open(meta, encoding='utf-8') as f:
                    for line in f:
                        if line.startswith('Name:'):
                            name = line.split(':', 1)[1].strip()
                        elif line.startswith('Version:'):
                            version = line.split(':', 1)[1].strip()
            return name, version, os.path.relpath(os.path.abspath(path), parent)
        here = parent
    return None


def mjcf_to_urdf(mjcf_path: str, joint_map: Mapping[str, str],
                 velocities: Mapping[str, float], grippers: Sequence[Gripper] = (),
                 frames: Sequence[Frame] = (), soft_margin: float = 0.0,
                 robot_name: str = 'robot', link_name=lambda body: body,
                 header: str = '') -> str:
    """Return the URDF text of the MJCF's bodies that the mapped joints and frames need.

    ``joint_map``: URDF joint name -> MJCF hinge or slide joint (the gate's joints);
    ``velocities``: per ``joint_map`` entry, the velocity limit (rad/s or m/s; the MJCF has
    none); ``grippers``: commanded joints whose fingers are MJCF joints that follow them
    affinely; ``frames``: extra named fixed frames; ``soft_margin``: the soft limits'
    distance inside the range (joint units); ``link_name``: URDF link of an MJCF body;
    ``header``: the text of the comment at the top. Raises MjcfError for unknown names,
    an unmapped joint on the path, or a joint the URDF cannot express.
    """
    model = load_mjcf(mjcf_path)
    jnt, bod = mujoco.mjtObj.mjOBJ_JOINT, mujoco.mjtObj.mjOBJ_BODY
    urdf_joint: Dict[int, Tuple[str, Optional[Finger], Optional[Gripper]]] = {}
    for name, mj in joint_map.items():
        if name not in velocities:
            raise MjcfError(f'no velocity limit for joint {name!r}')
        urdf_joint[_id(model, jnt, mj, 'joint')] = (name, None, None)
    gripper_of_body: Dict[int, Gripper] = {}
    for g in grippers:
        gripper_of_body[_id(model, bod, g.body, 'body')] = g
        for f in g.fingers:
            urdf_joint[_id(model, jnt, f.mjcf_joint, 'joint')] = (f.name, f, g)
    frame_at: Dict[int, List[Tuple[str, np.ndarray, np.ndarray, str]]] = {}
    for fr in frames:
        if fr.site is not None:
            s = _id(model, mujoco.mjtObj.mjOBJ_SITE, fr.site, 'site')
            body, pos, quat = model.site_bodyid[s], model.site_pos[s], model.site_quat[s]
            why = f'MJCF site {fr.site}'
        elif fr.geom_tip is not None:
            g = _id(model, mujoco.mjtObj.mjOBJ_GEOM, fr.geom_tip, 'geom')
            body, pos, quat = model.geom_bodyid[g], geom_tip(model, g), np.array([1., 0, 0, 0])
            why = f'far (+x) end of MJCF geom {fr.geom_tip}, centre of its y and z extent'
        else:
            raise MjcfError(f'frame {fr.name!r}: give a site or a geom')
        frame_at.setdefault(int(body), []).append((fr.name, pos, quat, why))
    needed = set()
    for b in [model.jnt_bodyid[j] for j in urdf_joint] + list(gripper_of_body) + list(frame_at):
        b = int(b)
        while b > 0:
            needed.add(b)
            b = int(model.body_parentid[b])
    lines = ['<?xml version="1.0"?>']
    if header:
        lines.append('<!--\n' + _comment(header) + '\n-->')
    lines.append(f'<robot name={quoteattr(robot_name)}>')
    lines.append(f'  <link name={quoteattr(link_name(model.body(0).name))}/>')
    for b in sorted(needed):          # MuJoCo numbers bodies parents first
        body = model.body(b).name
        link = link_name(body)
        parent = link_name(model.body(int(model.body_parentid[b])).name)
        lines.append('')
        lines.append(f'  <link name={quoteattr(link)}/>')
        njnt, adr = model.body_jntnum[b], model.body_jntadr[b]
        origin = _origin(model.body_pos[b], model.body_quat[b])
        if njnt == 0:
            lines.append(f'  <joint name={quoteattr(link + "_fixed")} type="fixed">')
            lines.append(f'    <parent link={quoteattr(parent)}/> <child link={quoteattr(link)}/>')
            lines.append(f'    {origin}')
            lines.append('  </joint>')
        elif njnt > 1:
            raise MjcfError(f'MJCF body {body!r} has {njnt} joints; one at most')
        elif adr not in urdf_joint:
            raise MjcfError(f'MJCF joint {model.joint(adr).name!r} (body {body!r}) is on the '
                            'path of the commanded joints but not mapped')
        else:
            lines += _movable(model, adr, urdf_joint[adr], link, parent, origin, velocities,
                              soft_margin)
        g = gripper_of_body.get(b)
        if g is not None:
            lines += _gripper(g, link)
        for name, pos, quat, why in frame_at.get(b, []):
            lines.append(f'  <!-- {_comment(name)}: {_comment(why)} -->')
            lines.append(f'  <link name={quoteattr(name)}/>')
            lines.append(f'  <joint name={quoteattr(name + "_fixed")} type="fixed">')
            lines.append(f'    <parent link={quoteattr(link)}/> <child link={quoteattr(name)}/>')
            lines.append(f'    {_origin(pos, quat)}')
            lines.append('  </joint>')
    lines.append('</robot>')
    return '\n'.join(lines) + '\n'


def _movable(model: mujoco.MjModel, j: int, spec, link: str, parent: str, origin: str,
             velocities: Mapping[str, float], soft_margin: float) -> List[str]:
    name, finger, gripper = spec
    mj = model.joint(j).name
    kind = _joint_kind(model, j, mj)
    lo, hi = (float(v) for v in model.jnt_range[j])
    if finger is not None:
        velocity = abs(finger.multiplier) * gripper.velocity
        note = (f'MJCF joint {mj} ({kind}), range from the MJCF; follows {gripper.name}: '
                f'{_num(finger.multiplier)} * {gripper.name} + {_num(finger.offset)} m')
    else:
        velocity = velocities[name]
        note = f'MJCF joint {mj} ({kind}), range from the MJCF'
    out = [f'  <!-- {_comment(note)} -->',
           f'  <joint name={quoteattr(name)} type="{kind}">',
           f'    <parent link={quoteattr(parent)}/> <child link={quoteattr(link)}/>',
           f'    {origin}',
           f'    <axis xyz="{_vec(model.jnt_axis[j])}"/>',
           f'    <limit lower="{_num(lo)}" upper="{_num(hi)}" velocity="{_num(velocity)}" '
           f'effort="{_num(_effort(model, j))}"/>']
    if finger is not None:
        out.append(f'    <mimic joint={quoteattr(gripper.name)} '
                   f'multiplier="{_num(finger.multiplier)}" offset="{_num(finger.offset)}"/>')
    else:
        if not lo + soft_margin < hi - soft_margin:
            raise MjcfError(f'soft_margin {soft_margin} closes the range of {mj!r}')
        out.append(f'    <safety_controller soft_lower_limit="{_num(lo + soft_margin)}" '
                   f'soft_upper_limit="{_num(hi - soft_margin)}" {SOFT_GAINS}/>')
    out.append('  </joint>')
    return out


def _gripper(g: Gripper, link: str) -> List[str]:
    child = g.name + '_command'
    return [f'  <!-- {_comment(g.name)}: the gripper command, {_comment(g.unit)}. A prismatic '
            'joint for the gate (which reports its unit as m); its link carries nothing, '
            'the fingers mimic it. Soft limits = limits: every value in them is a valid '
            'command. -->',
            f'  <link name={quoteattr(child)}/>',
            f'  <joint name={quoteattr(g.name)} type="prismatic">',
            f'    <parent link={quoteattr(link)}/> <child link={quoteattr(child)}/>',
            '    <origin xyz="0 0 0" rpy="0 0 0"/>',
            '    <axis xyz="1 0 0"/>',
            f'    <limit lower="{_num(g.lower)}" upper="{_num(g.upper)}" '
            f'velocity="{_num(g.velocity)}" effort="0"/>',
            f'    <safety_controller soft_lower_limit="{_num(g.lower)}" '
            f'soft_upper_limit="{_num(g.upper)}" {SOFT_GAINS}/>',
            '  </joint>']
