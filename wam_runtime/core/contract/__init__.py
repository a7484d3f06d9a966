"""The model I/O contract carried in ONNX metadata (key ``wam_runtime.contract``).

``spec``: the contract as frozen dataclasses and ContractError; ``parse``: JSON to a
contract and configuration overrides, errors naming the field; ``check``: the contract
against a model's real graph inputs and outputs; ``metadata``: the metadata key and the one
function that writes a contract into a model.
"""

from wam_runtime.core.contract.check import FLOAT_TYPES, ORT_TYPES, validate_against_io
from wam_runtime.core.contract.metadata import contract_json, METADATA_KEY, write_contract
from wam_runtime.core.contract.parse import apply_overrides, parse_contract
from wam_runtime.core.contract.spec import (
    ACTION_MODES, ActionSpec, CameraSpec, COLOUR_ENCODINGS, ContractError, DEPTH_ENCODINGS,
    FORMAT_VERSION, IMAGE_ENCODINGS, INTERPOLATIONS, LAYOUTS, ModelContract, PrefixSpec,
    RESIZE_MODES, StateSpec, TENSOR_DTYPES, WorldModelSpec)

__all__ = [
    'ACTION_MODES', 'ActionSpec', 'apply_overrides', 'CameraSpec', 'COLOUR_ENCODINGS',
    'contract_json', 'ContractError', 'DEPTH_ENCODINGS', 'FLOAT_TYPES', 'FORMAT_VERSION',
    'IMAGE_ENCODINGS', 'INTERPOLATIONS', 'LAYOUTS', 'METADATA_KEY', 'ModelContract',
    'ORT_TYPES', 'parse_contract', 'PrefixSpec', 'RESIZE_MODES', 'StateSpec', 'TENSOR_DTYPES',
    'validate_against_io', 'WorldModelSpec', 'write_contract',
]
