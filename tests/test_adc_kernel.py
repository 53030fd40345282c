"""The fused ADC of reads in code units (spicecross/surrogate/adc_kernel.py) against torch's
three passes (clip, round, multiply or fused multiply-add), which it replaced: bitwise."""
import pytest
import torch

from spicecross.surrogate.adc_kernel import codes_into
from spicecross.surrogate.converters import adc_codes_


def _torch_form(blocks, per_code, bits):
    out = None
    for y, c in zip(blocks, per_code):
        q = adc_codes_(y.clone(), bits)
        c = c.view((-1,) + (1,) * (y.dim() - 2))
        out = q * c if out is None else out.addcmul_(q, c)
    return out


@pytest.mark.parametrize("shape", [(7, 5, 9, 11), (13, 10)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_adc_equals_clip_round_and_multiply_add(shape, dtype):
    """Convolution blocks (N, K, H, W) and linear ones (N, K), codes saturating at both ends
    and currents on half-code boundaries (rounded half to even), several row tiles summed."""
    g = torch.Generator().manual_seed(3)
    bits = 6
    blocks = [(torch.randn(shape, generator=g, dtype=dtype) * 40) for _ in range(3)]
    blocks[1].view(-1)[:8] = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 99.0, -99.0, 31.5],
                                          dtype=dtype)
    per_code = [torch.rand(shape[1], generator=g, dtype=dtype) for _ in blocks]
    out = torch.empty(shape, dtype=dtype)
    for k, (y, c) in enumerate(zip(blocks, per_code)):
        codes_into(y.clone(), c, bits, out, k == 0)
    assert torch.equal(out, _torch_form(blocks, per_code, bits))


def test_fused_adc_takes_the_torch_form_for_non_contiguous_blocks():
    """A non-contiguous block (the torch form) followed by a contiguous one (the kernel,
    adding to the torch form's output) gives the same sums."""
    g = torch.Generator().manual_seed(4)
    blocks = [torch.randn(6, 4, 8, generator=g) * 20 for _ in range(2)]
    per_code = [torch.rand(4, generator=g) for _ in blocks]
    want = _torch_form(blocks, per_code, 5)
    strided = blocks[0].transpose(1, 2).contiguous().transpose(1, 2)
    assert torch.equal(strided, blocks[0]) and not strided.is_contiguous()
    out = torch.empty(6, 4, 8)
    codes_into(strided, per_code[0], 5, out, True)
    codes_into(blocks[1].clone(), per_code[1], 5, out, False)
    assert torch.equal(out, want)
