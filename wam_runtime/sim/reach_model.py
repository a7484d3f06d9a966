"""The reference world-action model: network, deployed graph and its I/O contract.

Model: a 64x64 RGB image goes through 4 conv layers and a spatial softmax (32 keypoints,
64-dim embedding); an MLP on the embedding and the joint positions predicts 16 future joint
steps at 20 Hz as changes from the current joint positions. A world-model head predicts the
embedding of the next observation (0.05 s later) from the embedding, the joint positions
and the first (executed) action, against the detached embedding of the next image.

The exported graph takes ``image_scene`` [1,3,64,64] (pixels * 1/255, RGB, no mean/std) and
``joint_positions`` [1,6] (rad), and returns ``actions`` [1,16,6] as absolute joint targets,
``embedding`` [1,64] and ``predicted_next_embedding`` [1,64]. State and action
normalisation live inside the graph, so the contract declares identity normalisation.

torch is imported only by this module and ``wam_runtime.sim.train``; the runtime never
needs it.
"""

from typing import Any, Dict, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from wam_runtime.sim import dataset
from wam_runtime.sim.world import JOINT_NAMES

MODEL_NAME = 'reference_reach'
IMAGE_SIZE = dataset.IMAGE_SIZE
HORIZON = 16
DT_S = 0.05
N_JOINTS = len(JOINT_NAMES)
PIXEL_SCALE = 1.0 / 255.0
DEFAULT_CHANNELS = 16


def build_contract(name: str = MODEL_NAME) -> Dict[str, Any]:
    """Return the I/O contract of the exported graph (stored in the ONNX metadata)."""
    joints = list(JOINT_NAMES)
    return {
        'format_version': 1,
        'name': name,
        'cameras': [{
            'name': 'scene', 'input': 'image_scene', 'height': IMAGE_SIZE, 'width': IMAGE_SIZE,
            'encoding': 'rgb8', 'layout': 'NCHW', 'dtype': 'float32', 'resize': 'stretch',
            'scale': PIXEL_SCALE, 'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0]}],
        'state': {'input': 'joint_positions', 'joint_names': joints,
                  'mean': [0.0] * N_JOINTS, 'std': [1.0] * N_JOINTS},
        'action': {'output': 'actions', 'horizon': HORIZON, 'dt_s': DT_S,
                   'joint_names': joints, 'mode': 'absolute',
                   'mean': [0.0] * N_JOINTS, 'std': [1.0] * N_JOINTS},
        'world_model': {'embedding_output': 'embedding',
                        'predicted_embedding_output': 'predicted_next_embedding',
                        'prediction_dt_s': DT_S},
    }


# --------------------------------------------------------------------------- model

class SpatialSoftmax(nn.Module):
    """Per-channel softmax over the image plane, returning expected (x, y) in [-1, 1].

    Each channel has a learnable log-temperature, so a keypoint can sharpen quickly.
    """

    def __init__(self, channels: int, height: int, width: int) -> None:
        """Precompute the coordinate grids for a ``height`` x ``width`` feature map."""
        super().__init__()
        self.log_gain = nn.Parameter(torch.zeros(1, channels, 1))
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, height),
                                torch.linspace(-1.0, 1.0, width), indexing='ij')
        self.register_buffer('grid_x', xs.reshape(1, 1, -1))
        self.register_buffer('grid_y', ys.reshape(1, 1, -1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) features to (B, 2C) keypoints ordered x_0..x_C-1, y_0..y_C-1."""
        b, c = features.shape[0], features.shape[1]
        attention = F.softmax(features.reshape(b, c, -1) * self.log_gain.exp(), dim=-1)
        x = (attention * self.grid_x).sum(dim=-1)
        y = (attention * self.grid_y).sum(dim=-1)
        return torch.cat([x, y], dim=1)


class ReachPolicy(nn.Module):
    """Image + joint positions -> normalised action deltas, embedding, next-embedding guess."""

    def __init__(self, channels: int = DEFAULT_CHANNELS, hidden: int = 256,
                 wm_hidden: int = 128) -> None:
        """Build the encoder, the action MLP and the world-model head."""
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, channels, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            SpatialSoftmax(channels, IMAGE_SIZE // 2, IMAGE_SIZE // 2))
        self.embedding_dim = 2 * channels
        # Keypoints of a small object span a small part of [-1, 1]; standardising them helps
        # the MLP resolve centimetres. (Folded into a constant affine map on export.)
        self.embedding_norm = nn.BatchNorm1d(self.embedding_dim)
        self.action_head = nn.Sequential(
            nn.Linear(self.embedding_dim + N_JOINTS, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, HORIZON * N_JOINTS))
        self.world_model = nn.Sequential(
            nn.Linear(self.embedding_dim + 2 * N_JOINTS, wm_hidden), nn.ReLU(),
            nn.Linear(wm_hidden, self.embedding_dim))

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Embed a batch of images scaled to [0, 1] (B, 3, 64, 64) -> (B, E)."""
        return self.encoder(image)

    def act(self, embedding: torch.Tensor, q_norm: torch.Tensor) -> torch.Tensor:
        """Normalised action deltas (B, HORIZON, N_JOINTS)."""
        out = self.action_head(torch.cat([self.embedding_norm(embedding), q_norm], dim=1))
        return out.reshape(-1, HORIZON, N_JOINTS)

    def predict_next(self, embedding: torch.Tensor, q_norm: torch.Tensor,
                     first_action_norm: torch.Tensor) -> torch.Tensor:
        """Predicted embedding of the observation 0.05 s later."""
        return self.world_model(torch.cat([embedding, q_norm, first_action_norm], dim=1))


class ExportWrapper(nn.Module):
    """The deployed graph: raw inputs in, absolute targets and embeddings out."""

    def __init__(self, policy: ReachPolicy, norm: Dict[str, np.ndarray]) -> None:
        """Bake the state/action normalisation constants into the graph."""
        super().__init__()
        self.policy = policy
        for key in ('q_mean', 'q_std', 'a_mean', 'a_std'):
            self.register_buffer(key, torch.as_tensor(norm[key], dtype=torch.float32))

    def forward(self, image_scene: torch.Tensor,
                joint_positions: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return (actions, embedding, predicted_next_embedding)."""
        q_norm = (joint_positions - self.q_mean) / self.q_std
        embedding = self.policy.encode(image_scene)
        delta_norm = self.policy.act(embedding, q_norm)
        actions = joint_positions.unsqueeze(1) + delta_norm * self.a_std + self.a_mean
        first_norm = delta_norm[:, 0, :]
        predicted = self.policy.predict_next(embedding, q_norm, first_norm)
        return actions, embedding, predicted
