"""The cloze networks' used U-Nets as one stacked network, apart from the ways it is run.

network.py    StackedClozeNet: the stacked weights, the reference's state-dict keys, the reference's forward contract
stack.py      UNetStack: the stacked U-Net modules (grouped convolutions, per-U-Net BatchNorm statistics)
execution.py  how the U-Nets run: Grouped, Sequential, Threads, Streams, Prepacked, Auto (the default, by device)
prepacked.py  the grouped stack frozen for CPU inference (folded BatchNorm, fused ReLU, prepacked weights)
one_unet.py   one U-Net as functions on its views of the stacked tensors (sequential, threads, streams)
threads.py    the worker threads and autograd across them (threads)
upsample.py   the decoder's transposed convolution with a faster CPU weight gradient (a custom autograd op)
"""
from models.stacked_cloze.execution import (Auto, Execution, Grouped, Prepacked, Sequential, Streams, Threads,
                                            fused_forward_backward)
from models.stacked_cloze.network import StackedClozeNet, StackedSelfCompleteNet4, StackedSelfCompleteNetFull

__all__ = ["StackedClozeNet", "StackedSelfCompleteNetFull", "StackedSelfCompleteNet4", "Execution", "Auto",
           "Grouped", "Prepacked", "Sequential", "Streams", "Threads", "fused_forward_backward"]
