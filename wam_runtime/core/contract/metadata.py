"""Where a model carries its contract: one ONNX metadata entry, and the one writer of it."""

import json
from typing import Any, Mapping, Union

from wam_runtime.core.contract.spec import ModelContract

METADATA_KEY = 'wam_runtime.contract'


def contract_json(contract: Union[ModelContract, Mapping[str, Any]]) -> str:
    """Return the metadata text of ``contract``: JSON with sorted keys.

    A :class:`ModelContract` is written in its canonical form (every field, defaults
    included); a mapping exactly as given, without validation.
    """
    if isinstance(contract, ModelContract):
        return contract.to_json()
    return json.dumps(dict(contract), sort_keys=True)


def write_contract(model: Any, contract: Union[ModelContract, Mapping[str, Any]]) -> str:
    """Store ``contract`` in the metadata of an ``onnx.ModelProto``; return the JSON text.

    Only ``model.metadata_props`` is touched: an earlier contract entry is replaced, other
    entries are kept. A mapping is not validated (tests write broken contracts on purpose);
    callers that ship a model parse it first.
    """
    text = contract_json(contract)
    props = model.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = text
    return text
