"""The op boundary: one typed Python function per custom op (DESIGN §2, §4).

Loops and modules call these functions; each dispatches to the fastest available backend for the
tensors' device, overridable with `backend=` or VAENAS_BACKEND.
"""

from vaenas.ops.batch_norm import segmented_batch_norm
from vaenas.ops.gated import draw_other_path, gated_mixed_op, rescale_updated_logits
from vaenas.ops.grouped import route, route_sum
from vaenas.ops.nb101_enumerate import NB101Cells, nb101_enumerate, nb101_hash
from vaenas.ops.sliced_conv import sliced_conv2d
from vaenas.ops.vae_decode import DecodeConstraints, DecoderWeights, vae_decode

__all__ = [
    "DecodeConstraints", "DecoderWeights", "NB101Cells", "draw_other_path", "gated_mixed_op", "nb101_enumerate",
    "nb101_hash", "rescale_updated_logits", "route", "route_sum", "segmented_batch_norm", "sliced_conv2d", "vae_decode",
]
