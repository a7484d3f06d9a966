"""The worlds sim_node can run, and what each reports at the end of an episode.

``make_world(name, ...)`` builds one by name: ``reference`` (:class:`ReachWorld`, the 6-DoF
reaching arm) or ``aloha_transfer_cube`` (gym-aloha's bimanual transfer-cube task,
:mod:`wam_runtime.sim.aloha_world`, imported only when asked for). :class:`Episode` follows
one episode of either and returns its outcome: ``seed``, ``success``, ``time_s`` (simulated
seconds from the reset to success or timeout) and the world's own fields:

- reference: ``min_distance_m`` and ``final_distance_m``, tool tip to goal point (m);
  success is the tool tip within ``success_radius_m`` of the goal.
- aloha_transfer_cube: ``reward`` (the package's at the end, 0-4), ``best_reward`` (the
  highest reached in the episode) and ``max_reward`` (4); success is the package's reward
  reaching its maximum (the left gripper holds the cube in the air after the hand-over).
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from wam_runtime.sim.world import ReachWorld


@dataclass(frozen=True)
class WorldSpec:
    """One world sim_node can run: its defaults and how to build and score it."""

    name: str
    description: str
    camera_size: Tuple[int, int]        # default (width, height)
    camera_names: Tuple[str, ...]       # cameras published by default
    build: Callable[..., Any]           # (width, height, camera_names, seed) -> world
    score: Callable[[Any], Any]         # world -> score with update() and fields()


class ReachScore:
    """Outcome fields of the reference world: closest and final tool-to-goal distance."""

    def __init__(self, world: ReachWorld) -> None:
        """Start from the distance at reset."""
        self._world = world
        self._min = world.distance_to_target()

    def update(self) -> None:
        """Take in the current state."""
        self._min = min(self._min, self._world.distance_to_target())

    def fields(self) -> Dict[str, Any]:
        """Return ``min_distance_m`` and ``final_distance_m`` (m)."""
        return {'min_distance_m': round(self._min, 5),
                'final_distance_m': round(self._world.distance_to_target(), 5)}


class AlohaScore:
    """Outcome fields of the ALOHA world: final and best reward of the package."""

    def __init__(self, world: Any) -> None:
        """Start from the reward at reset."""
        self._world = world
        self._best = int(world.reward)

    def update(self) -> None:
        """Take in the current reward."""
        self._best = max(self._best, int(self._world.reward))

    def fields(self) -> Dict[str, Any]:
        """Return ``reward``, ``best_reward`` and ``max_reward``."""
        return {'reward': int(self._world.reward), 'best_reward': self._best,
                'max_reward': int(self._world.max_reward)}


def _build_reference(width: int, height: int, camera_names: Sequence[str],
                     seed: int) -> ReachWorld:
    world = ReachWorld(width, height, seed)
    _check_cameras(camera_names, world.camera_names)
    return world


def _build_aloha(width: int, height: int, camera_names: Sequence[str], seed: int) -> Any:
    from wam_runtime.sim.aloha_world import AlohaTransferCubeWorld
    return AlohaTransferCubeWorld(width, height, seed, camera_names=camera_names)


def _check_cameras(requested: Sequence[str], available: Sequence[str]) -> None:
    requested = list(requested)
    unknown = [c for c in requested if c not in available]
    if not requested or unknown or len(set(requested)) != len(requested):
        raise ValueError(f'camera_names must be distinct names among {list(available)}, '
                         f'got {requested}')


WORLDS = {
    'reference': WorldSpec(
        'reference', 'the 6-DoF reaching arm and a red cube', (128, 128), ('scene',),
        _build_reference, ReachScore),
    'aloha_transfer_cube': WorldSpec(
        'aloha_transfer_cube', "gym-aloha's bimanual transfer-cube task, 14 joints",
        (640, 480), ('top',), _build_aloha, AlohaScore),
}


def world_spec(name: str) -> WorldSpec:
    """Return the spec of world ``name``; ValueError naming ``world`` for an unknown one."""
    if name not in WORLDS:
        raise ValueError(f'world: must be one of {list(WORLDS)}, got {name!r}')
    return WORLDS[name]


def make_world(name: str, camera_width: int = 0, camera_height: int = 0,
               camera_names: Optional[Sequence[str]] = None, seed: int = 0) -> Any:
    """Build world ``name`` reset to ``seed``; 0 or None take the world's default.

    ``camera_names``: the cameras to be rendered (checked against the world's). Raises
    ValueError naming the argument for a bad value.
    """
    spec = world_spec(name)
    width = camera_width or spec.camera_size[0]
    height = camera_height or spec.camera_size[1]
    cameras = tuple(camera_names) if camera_names else spec.camera_names
    return spec.build(width, height, cameras, seed)


class Episode:
    """One episode of a world: follows it from the reset, ends at success or timeout."""

    def __init__(self, world: Any, seed: int, timeout_s: float,
                 score: Callable[[Any], Any]) -> None:
        """Start at the world's current time (call right after ``world.reset(seed)``)."""
        self.world = world
        self.seed = int(seed)
        self.timeout_s = float(timeout_s)
        self.start_s = world.time_s
        self._score = score(world)

    def update(self) -> Optional[Dict[str, Any]]:
        """Take in the current state; return the outcome once the episode ends, else None."""
        self._score.update()
        elapsed = self.world.time_s - self.start_s
        success = bool(self.world.is_success())
        if not success and elapsed < self.timeout_s:
            return None
        return {'seed': self.seed, 'success': success, 'time_s': round(elapsed, 4),
                **self._score.fields()}
