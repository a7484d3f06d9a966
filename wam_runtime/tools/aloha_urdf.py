"""The URDF of gym-aloha's bimanual ViperX 300 S transfer cube, for Pinocchio and the gate.

``python -m wam_runtime.tools.aloha_urdf MJCF -o URDF`` writes it from the package's own MJCF
(``bimanual_viperx_transfer_cube.xml``) with :func:`wam_runtime.tools.mjcf_urdf.mjcf_to_urdf`:
the 14 joints of the env action (per arm waist .. wrist_rotate in rad and the gripper,
normalised 0 closed .. 1 open, with the fingers as its mimic joints), the frames the
workspace checks use, and documented velocity limits (the MJCF has none). Exit code 2 with
the reason on an MJCF MuJoCo cannot load or one without these joints.
"""

import argparse
import os
import sys
import textwrap
from typing import List, Optional, Tuple

from wam_runtime.tools.mjcf_urdf import (
    distribution_of, EXIT_INVALID, EXIT_OK, Finger, Frame, Gripper, mjcf_to_urdf, MjcfError)

ALOHA_ARM_JOINTS = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle',
                    'wrist_rotate')
ALOHA_SIDES = ('left', 'right')
# The env's action order (gym_aloha/constants.py ACTIONS): per arm six joints and the
# gripper, left arm first.
ALOHA_JOINT_NAMES = tuple(f'{s}_{j}' for s in ALOHA_SIDES for j in ALOHA_ARM_JOINTS + ('gripper',))
ALOHA_JOINT_MAP = {f'{s}_{j}': f'vx300s_{s}/{j}' for s in ALOHA_SIDES for j in ALOHA_ARM_JOINTS}
# Interbotix's vx300s description (interbotix_xsarm_descriptions/urdf/vx300s.urdf.xacro)
# gives every arm joint <limit velocity="${pi}">: 3.14159 rad/s, the no-load speed of its
# XM540-W270 servos (30 rev/min at 12 V).
ALOHA_VELOCITY_RAD_S = 3.14159
# gym_aloha/constants.py: PUPPET_GRIPPER_POSITION_CLOSE/OPEN (m, left finger); tasks/sim.py
# before_step sets the left finger to UNNORMALIZE(g) and the right finger to its negative.
ALOHA_FINGER_CLOSE_M, ALOHA_FINGER_OPEN_M = 0.01844, 0.058
# The gripper servo (XM430-W350, 46 rev/min = 4.82 rad/s no load at 12 V) turns the real
# puppet gripper through PUPPET_GRIPPER_JOINT_OPEN - CLOSE = 1.4910 + 0.6213 = 2.1123 rad
# for the normalised range 0..1: 4.82 / 2.1123 = 2.28 per second.
ALOHA_GRIPPER_VELOCITY = 2.28
ALOHA_SOFT_MARGIN = 0.05         # rad, as the reference arm's URDF


def aloha_grippers() -> Tuple[Gripper, ...]:
    """Return the two ALOHA grippers: normalised 0 closed .. 1 open, fingers mimic it."""
    span = ALOHA_FINGER_OPEN_M - ALOHA_FINGER_CLOSE_M
    out = []
    for s in ALOHA_SIDES:
        fingers = (
            Finger(f'{s}_left_finger', f'vx300s_{s}/left_finger', span, ALOHA_FINGER_CLOSE_M),
            Finger(f'{s}_right_finger', f'vx300s_{s}/right_finger', -span,
                   -ALOHA_FINGER_CLOSE_M))
        out.append(Gripper(f'{s}_gripper', f'vx300s_{s}/gripper_link', fingers, 0.0, 1.0,
                           ALOHA_GRIPPER_VELOCITY,
                           'normalised, 0 closed .. 1 open, as the env action (not metres)'))
    return tuple(out)


def aloha_frames() -> Tuple[Frame, ...]:
    """Return the ALOHA frames for workspace checks: gripper centre and fingertips per arm.

    ``<side>_gripper_center`` is the MJCF site ``cali_<side>_site1`` (0.15 m along the
    gripper axis, between the fingertips); ``<side>_left/right_finger_tip`` the far end of
    each finger's mesh. The wrist is the link ``<side>_wrist_link``.
    """
    out = []
    for s in ALOHA_SIDES:
        out.append(Frame(f'{s}_gripper_center', site=f'cali_{s}_site1'))
        for finger in ('left', 'right'):
            out.append(Frame(f'{s}_{finger}_finger_tip',
                             geom_tip=f'vx300s_{s}/10_{finger}_gripper_finger'))
    return tuple(out)


def aloha_link_name(body: str) -> str:
    """Return the URDF link of an MJCF body (``vx300s_left/wrist_link``: ``left_wrist_link``)."""
    for s in ALOHA_SIDES:
        if body == f'vx300s_{s}':
            return f'{s}_base_link'
        if body.startswith(f'vx300s_{s}/'):
            return f'{s}_' + body[len(f'vx300s_{s}/'):]
    return body


ALOHA_COMMAND = ('python -m wam_runtime.tools.aloha_urdf "$(python -c "import os, gym_aloha; '
                 'print(os.path.dirname(gym_aloha.__file__))")/assets/'
                 'bimanual_viperx_transfer_cube.xml" -o config/aloha_transfer_cube.urdf')


def aloha_header(mjcf_path: str) -> str:
    """Return the header comment of the ALOHA URDF: source, regeneration, what it holds."""
    dist = distribution_of(mjcf_path)
    source = (f'{dist[2]} of {dist[0]} {dist[1]}' if dist
              else os.path.basename(mjcf_path))
    return '\n'.join([
        f'  Generated from {source}',
        '  by wam_runtime.tools.aloha_urdf; do not edit. Regenerate:',
        f'    {ALOHA_COMMAND}',
        '  (test/unit/tools/test_mjcf_urdf.py checks that this file equals the output).',
        '',
        '  The bimanual ViperX 300 S of the gym-aloha transfer-cube task as the safety gate',
        '  sees it. The base frame "world" is the MuJoCo world (table top z = 0). One link per',
        '  MJCF body between the world and the grippers, origins = body pos/quat, axes and',
        '  <limit lower upper> = the MJCF joints. Commanded joints, in the env action order:',
        *textwrap.wrap(', '.join(ALOHA_JOINT_NAMES) + '.', 88, initial_indent='  ',
                       subsequent_indent='  '),
        f'  Velocity: {ALOHA_VELOCITY_RAD_S} rad/s per arm joint (the MJCF has none; Interbotix',
        '  vx300s.urdf.xacro gives velocity="${pi}", the XM540-W270 no-load speed). Soft limits',
        f'  {ALOHA_SOFT_MARGIN} rad inside the MJCF range. Effort: the MJCF actuator forcerange',
        '  where it has one, else 0 (not limited in the MJCF; the gate does not use it).',
        '  Grippers: <side>_gripper is the env action itself, normalised 0 closed .. 1 open',
        '  (NOT metres, although the joint is prismatic and the gate labels it m); velocity',
        f'  {ALOHA_GRIPPER_VELOCITY}/s (XM430-W350 no-load 4.82 rad/s over the 2.1123 rad puppet',
        '  gripper travel). The fingers are mimic joints: left finger = 0.03956 * g + 0.01844 m,',
        '  right finger = its negative (gym_aloha/constants.py PUPPET_GRIPPER_POSITION_*,',
        '  tasks/sim.py before_step); MuJoCo stops them at the MJCF range 0.021..0.057 m,',
        '  g ~ 0.066..0.975. Frames: <side>_gripper_center (MJCF site cali_<side>_site1,',
        '  between the fingertips), <side>_{left,right}_finger_tip, <side>_wrist_link.',
        '  No visuals, collisions or inertials.',
    ])


def aloha_urdf(mjcf_path: str) -> str:
    """Return the URDF of gym-aloha's bimanual transfer-cube model at ``mjcf_path``."""
    velocities = {name: ALOHA_VELOCITY_RAD_S for name in ALOHA_JOINT_MAP}
    return mjcf_to_urdf(mjcf_path, ALOHA_JOINT_MAP, velocities, aloha_grippers(),
                        aloha_frames(), ALOHA_SOFT_MARGIN, 'aloha_transfer_cube',
                        aloha_link_name, aloha_header(mjcf_path))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the generator."""
    p = argparse.ArgumentParser(
        prog='python -m wam_runtime.tools.aloha_urdf',
        description="Write the URDF (limits and kinematics for the safety gate) of gym-aloha's "
        'bimanual ViperX transfer-cube MJCF.')
    p.add_argument('mjcf', help='bimanual_viperx_transfer_cube.xml of the gym-aloha package')
    p.add_argument('-o', '--out', help='URDF file to write (default: standard output)')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: generate the URDF; exit code 2 with the reason on a bad MJCF."""
    args = build_parser().parse_args(argv)
    try:
        text = aloha_urdf(args.mjcf)
    except MjcfError as exc:
        print(f'aloha_urdf: error: {exc}', file=sys.stderr)
        return EXIT_INVALID
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
