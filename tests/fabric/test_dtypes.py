"""Element-type handling: bfloat16 rounding matches torch bit for bit (NaN: any NaN); views alias the caller's memory."""

from __future__ import annotations

import numpy as np
import pytest

from fireflyfs.fabric.hfreduce import dtypes


def test_bfloat16_rounding_matches_torch_including_ties_nan_and_inf():
    import torch

    rng = np.random.default_rng(3)
    values = np.concatenate([
        rng.standard_normal(10000).astype(np.float32) * 1e3,
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1e-40], dtype=np.float32),
        # exact ties between two bfloat16 values: round to even both ways
        (np.arange(64, dtype=np.uint32) << 16 | 0x8000).view(np.float32),
    ])
    ours = np.empty(len(values), dtype=np.uint16)
    dtypes.round_into(ours, values.copy(), dtypes.ELEMENT_TYPES["bfloat16"])
    theirs = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(values)
    assert np.array_equal(ours[~nan], theirs[~nan])
    # NaN stays NaN (torch's NaN payload differs by platform; any NaN is fine)
    assert all((bits & 0x7F80) == 0x7F80 and bits & 0x7F for bits in ours[nan])
    ours[nan] = theirs[nan]
    back = dtypes.to_accumulate(ours, dtypes.ELEMENT_TYPES["bfloat16"])
    torch_back = torch.from_numpy(theirs.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    assert np.array_equal(back.view(np.uint32), torch_back.view(np.uint32))


def test_views_alias_numpy_and_torch_buffers():
    import torch

    array = np.zeros(8, dtype=np.float16)
    view, element_type, original = dtypes.storage_view(array)
    view[3] = 2
    assert element_type.name == "float16" and original is array and array[3] == 2
    tensor = torch.zeros(2, 4, dtype=torch.bfloat16)
    view, element_type, original = dtypes.storage_view(tensor)
    assert element_type.name == "bfloat16" and view.dtype == np.uint16 and len(view) == 8
    view[5] = 0x3F80                       # 1.0 in bfloat16
    assert tensor[1, 1].item() == 1.0


def test_refuses_what_it_cannot_reduce_in_place():
    with pytest.raises(TypeError):
        dtypes.storage_view(np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError):
        dtypes.storage_view([1.0, 2.0])
    readonly = np.zeros(4, dtype=np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        dtypes.storage_view(readonly)
