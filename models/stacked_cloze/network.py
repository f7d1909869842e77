"""The cloze networks run as ONE network: every U-Net that a forward pass uses, stacked.

`SelfCompleteNetFull` runs up to ten small U-Nets (five raw, five flow) one after another,
`SelfCompleteNet4` up to six. Here the U-Nets a forward pass uses are one `UNetStack`
(stack.py): their weights stacked per layer, each U-Net with its own BatchNorm statistics.
The mathematics is the reference's: same weights, same per-U-Net BatchNorm statistics, same
outputs up to float rounding (grouped and separate convolutions sum in different orders).
How the U-Nets are run (together, one after another, on threads, on CUDA streams) is the job of
the network's `execution` (execution.py); by default it is chosen by device.

State dicts speak the reference's language: `state_dict()` returns the reference's per-U-Net
keys, in the reference's order and shapes, and `load_state_dict()` takes them (hooks map
between the stacked tensors and the reference keys), so files trained by the reference code
load here and files saved from here load in the reference code. U-Nets that a forward pass
never uses (those of positions outside `rawRange`) are kept as the reference's own modules,
untouched, as in the reference.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from models.selfcomplete import (FLOW_CHANNELS, RAW_CHANNELS, SelfCompleteNet4, SelfCompleteNetFull, _ClozeNet,
                                 _UNetNames)
from models.stacked_cloze.execution import Auto, Execution
from models.stacked_cloze.stack import UNET_PARTS, UNetStack


def _parts_of(names: _UNetNames) -> list[tuple[str, str]]:
    """(name in the stack, name in the reference network) of each part of one U-Net but its head."""
    return list(zip(UNET_PARTS, (names.inc, *names.downs, *names.ups)))


class StackedClozeNet(nn.Module):
    """A cloze network (`SelfCompleteNetFull` or `SelfCompleteNet4`) whose used U-Nets are stacked.

    Built from a reference network, whose weights it takes over; `forward` has the reference's
    contract. `channels_last` picks the memory format of the activations and stacked weights.
    `execution` (an execution.Execution; default `Auto()`: by device) runs the U-Nets; set it to
    run them another way, e.g. `net.execution = Grouped()`.
    """

    def __init__(self, reference: _ClozeNet, channels_last: bool = True) -> None:
        super().__init__()
        self.execution: Execution = Auto()
        self.rawRange = reference.rawRange
        self.tot_raw_num, self.tot_of_num = reference.tot_raw_num, reference.tot_of_num
        self.raw_of_offset, self.useFlow, self.padding = reference.raw_of_offset, reference.useFlow, reference.padding
        self.channels_last = channels_last

        # The U-Nets a forward pass uses: raw ones (positions in rawRange), then the flow ones.
        raw_slots: list[tuple[int, _UNetNames]] = []
        flow_slots: list[tuple[int, _UNetNames]] = []
        self.of_indices: list[int] = []
        for i in self.rawRange:
            raw_slots.append((i, reference._raw_unets[i]))
            of_index = i - self.raw_of_offset
            if self.useFlow and 0 <= of_index < self.tot_of_num:
                flow_slots.append((i, reference._flow_unet_for(of_index)))
                self.of_indices.append(of_index)
        used = [names.inc for _, names in raw_slots + flow_slots]
        if len(set(used)) != len(used):
            raise NotImplementedError("a U-Net serving two positions cannot be stacked")
        groups = len(raw_slots) + len(flow_slots)

        first_conv = getattr(reference, raw_slots[0][1].inc).conv.conv[0]
        in_channels, nf = first_conv.in_channels, first_conv.out_channels
        with torch.device("meta"):  # allocated below; draws nothing from the random generator
            stack = UNetStack(groups, in_channels, nf, len(raw_slots), len(flow_slots))
        self.stack = stack.to_empty(device=first_conv.weight.device)

        # Input channels of each U-Net: the cube without (padding=False) or with zeros at (padding=True)
        # its erased position; index tot_raw_num·3 is an extra zero channel.
        zero = self.tot_raw_num * RAW_CHANNELS
        index = []
        for i, _ in raw_slots + flow_slots:
            erased = range(i * RAW_CHANNELS, (i + 1) * RAW_CHANNELS)
            if self.padding:
                index += [zero if ch in erased else ch for ch in range(zero)]
            else:
                index += [ch for ch in range(zero) if ch not in erased]
        self.register_buffer("input_index", torch.tensor(index, dtype=torch.long), persistent=False)

        # Reference key → (stacked key, U-Net slot), and the reference's keys in order.
        reference_state = reference.state_dict()
        self._reference_keys = OrderedDict((k, tuple(v.shape)) for k, v in reference_state.items())
        self._to_stacked: dict[str, tuple[str, int]] = {}
        for slot, (_, names) in enumerate(raw_slots + flow_slots):
            for part, name in _parts_of(names):
                self._map_module(name, f"stack.{part}", slot)
        for slot, (_, names) in enumerate(raw_slots):
            self._map_module(names.outc, "stack.outc_raw", slot)
        for slot, (_, names) in enumerate(flow_slots):
            self._map_module(names.outc, "stack.outc_flow", slot)

        # Unused U-Nets stay the reference's modules, under the reference's names.
        mapped_modules = {k.split(".", 1)[0] for k in self._to_stacked}
        for name, module in reference.named_children():
            if name not in mapped_modules:
                self.add_module(name, module)

        with torch.no_grad():
            for key, part in self.map_to_reference(self.stack_state()).items():
                part.copy_(reference_state[key])
        if channels_last:  # weights too: oneDNN then needs no reorder of them in each call
            self.stack.to(memory_format=torch.channels_last)
        self.register_state_dict_post_hook(_state_dict_to_reference)
        self.register_load_state_dict_pre_hook(_state_dict_from_reference)

    def _map_module(self, name: str, stacked_prefix: str, slot: int) -> None:
        for key in self._reference_keys:
            if key.startswith(name + "."):
                self._to_stacked[key] = (stacked_prefix + key[len(name):], slot)

    def stack_state(self) -> dict[str, Tensor]:
        """The stacked parameters and buffers themselves (not detached), by their names in this module."""
        return {f"stack.{k}": v for k, v in (*self.stack.named_parameters(), *self.stack.named_buffers())}

    @staticmethod
    def _slice(tensor: Tensor, slot: int, reference_shape: tuple[int, ...]) -> Tensor:
        """U-Net `slot`'s part of a stacked tensor (a view): block `slot` of dim 0."""
        if not reference_shape:  # num_batches_tracked: one counter per U-Net
            return tensor[slot]
        block = reference_shape[0]
        return tensor[slot * block:(slot + 1) * block]

    def map_to_reference(self, values: dict[str, Tensor | None]) -> OrderedDict[str, Tensor | None]:
        """Tensors named as this module's parameters or buffers (e.g. {name: p.grad for name, p in
        named_parameters()}) as per-U-Net views under the reference's keys, in the reference's order.
        """
        out = OrderedDict()
        for key, shape in self._reference_keys.items():
            stacked_key, slot = self._to_stacked.get(key, (key, None))
            if stacked_key in values:
                value = values[stacked_key]
                out[key] = value if slot is None or value is None else self._slice(value, slot, shape)
        return out

    def _select_channels(self, x: Tensor, indices: list[Tensor]) -> list[Tensor]:
        """The cube's channels `indices[k]` for each k, the index tot_raw_num·3 an extra zero channel
        (padding), in the activations' memory format."""
        source = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1) if self.padding else x
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return [source.index_select(1, index).contiguous(memory_format=memory_format) for index in indices]

    def stacked_input(self, x: Tensor) -> Tensor:
        """The stack's input: U-Net g's input (below) in channel block g."""
        return self._select_channels(x, [self.input_index])[0]

    def unet_inputs(self, x: Tensor) -> list[Tensor]:
        """Each U-Net's input: the cube without (or with zeros at) its erased position."""
        return self._select_channels(x, list(self.input_index.split(len(self.input_index) // self.stack.groups)))

    def unet_targets(self, x: Tensor, x_of: Tensor) -> list[Tensor]:
        """What each U-Net completes: its erased raw patch (raw U-Nets), then its flow (flow U-Nets)."""
        c = RAW_CHANNELS
        return ([x[:, i * c:(i + 1) * c] for i in self.rawRange]
                + [x_of[:, j * FLOW_CHANNELS:(j + 1) * FLOW_CHANNELS] for j in self.of_indices])

    def forward(self, x: Tensor, x_of: Tensor) -> tuple[Tensor | list, Tensor, Tensor | list, Tensor]:
        """The reference's contract: (of_outputs, raw_outputs, of_targets, raw_targets)."""
        raw_outputs, of_outputs = self.execution.resolve(x.device, self.stack.groups).forward(self, x)
        n_raw = self.stack.n_raw
        targets = self.unet_targets(x, x_of)
        raw_targets = torch.cat(targets[:n_raw], dim=1)
        if of_outputs is None:
            return [], raw_outputs.contiguous(), [], raw_targets
        return of_outputs.contiguous(), raw_outputs.contiguous(), torch.cat(targets[n_raw:], dim=1), raw_targets


def _state_dict_to_reference(module: StackedClozeNet, destination: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict post-hook: replace the stacked entries by the reference's keys, in the reference's order.

    Each U-Net's part is copied out (compact, contiguous), so that saving writes it alone.
    """
    own = {key[len(prefix):]: destination.pop(key) for key in list(destination) if key.startswith(prefix)}
    for key, value in module.map_to_reference(own).items():
        if key in module._to_stacked:
            value = value.clone(memory_format=torch.contiguous_format)
        destination[prefix + key] = value
    if hasattr(destination, "_metadata"):
        for key in list(destination._metadata):
            if key == prefix + "stack" or key.startswith(prefix + "stack."):
                del destination._metadata[key]


def _state_dict_from_reference(module: StackedClozeNet, state_dict: dict, prefix: str, local_metadata: dict,
                               strict: bool, missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """load_state_dict pre-hook: gather the reference's per-U-Net entries into the stacked tensors.

    A state dict already in stacked form (keys `stack.…`) passes through unchanged.
    """
    pieces: dict[str, list[tuple[int, str]]] = {}
    for key, (stacked_key, slot) in module._to_stacked.items():
        pieces.setdefault(stacked_key, []).append((slot, key))
    for stacked_key, parts in pieces.items():
        keys = [prefix + key for _, key in sorted(parts)]
        if not all(k in state_dict for k in keys):
            continue  # reported: the stacked key missing, the pieces present unexpected
        values = [state_dict.pop(k) for k in keys]
        state_dict[prefix + stacked_key] = torch.stack(values) if values[0].dim() == 0 else torch.cat(values)


class _StackedReference(StackedClozeNet):
    """A reference cloze network (`reference`, built with its own arguments and initial weights), stacked."""

    reference: type[nn.Module]
    default_of_num: int

    def __init__(self, features_root: int = 32, tot_raw_num: int = 5, tot_of_num: int | None = None,
                 border_mode: str = "predict", rawRange: int | None = None, useFlow: bool = True,
                 padding: bool = True, channels_last: bool = True) -> None:
        of_num = self.default_of_num if tot_of_num is None else tot_of_num
        super().__init__(self.reference(features_root, tot_raw_num, of_num, border_mode, rawRange, useFlow, padding),
                         channels_last)


class StackedSelfCompleteNetFull(_StackedReference):
    """`SelfCompleteNetFull` (same arguments, same initial weights for the same seed), stacked."""

    reference, default_of_num = SelfCompleteNetFull, 5


class StackedSelfCompleteNet4(_StackedReference):
    """`SelfCompleteNet4` (same arguments, same initial weights for the same seed), stacked."""

    reference, default_of_num = SelfCompleteNet4, 1
