"""New weights into a live torch module in place: copied into its own tensors, or shared
(the caller's tensors served as they are). No re-instantiation, no disk."""

from __future__ import annotations

import torch

from ttrl.engines.base import NamedTensors
from ttrl.engines.weights import check_finite, check_named_tensors


def _servable(tensor: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether ``tensor`` can stand in for the weight ``target`` as it is (a shared update)."""
    return (
        tensor.device == target.device
        and tensor.dtype == target.dtype
        and tensor.is_contiguous()
        and not tensor.is_meta
    )


class LiveWeights:
    """The weights of ``model``, replaced in place by :meth:`swap`."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._shared: set[str] = set()  # weights that are the caller's tensors (share=True)

    def swap(self, named_tensors: NamedTensors, share: bool) -> tuple[int, int]:
        """Serve ``named_tensors`` (``state_dict`` names); returns how many tensors were
        given and how many of them are now shared.

        By default they are copied into the live tensors, every tensor checked before the
        first copy, so a refused update changes nothing. ``share=True`` serves the caller's
        tensors themselves wherever they already sit on the model's device in its dtype;
        such tensors are not scanned for NaN/inf (names and shapes are checked as always).
        Any later update that is not shared first gives the model its own copies again,
        so it never writes into the caller's tensors.

        Raises:
            WeightUpdateError: unknown name, wrong shape, integer-for-float, NaN/inf.
        """
        with torch.no_grad():
            live = self._by_name()
            expected = {name: (t.shape, t.dtype) for name, t in live.items()}
            tensors = check_named_tensors(expected, named_tensors)
            shared = {n for n, t in tensors.items() if share and _servable(t, live[n])}
            check_finite({n: t for n, t in tensors.items() if n not in shared})
            for name, tensor in tensors.items():
                if name in shared:
                    live[name].data = tensor.detach()
                    self._shared.add(name)
                    continue
                if name in self._shared:  # never write into the caller's tensor
                    live[name].data = torch.empty_like(live[name])
                    self._shared.discard(name)
                live[name].copy_(tensor)
            if not share:
                self._own(live)  # the shared weights this update did not name
        return len(tensors), len(shared)

    def moved(self) -> None:
        """The model was moved to another device: every weight has its own copy now."""
        self._shared.clear()

    def _by_name(self) -> dict[str, torch.Tensor]:
        """The model's ``state_dict`` names mapped to its Parameter / buffer objects (whose
        ``.data`` a shared update rebinds; ``state_dict()`` holds detached aliases)."""
        objects: dict[str, torch.Tensor] = dict(self.model.named_parameters(remove_duplicate=False))
        objects.update(self.model.named_buffers(remove_duplicate=False))
        return {name: objects.get(name, t) for name, t in self.model.state_dict().items()}

    def _own(self, live: dict[str, torch.Tensor]) -> None:
        """Give each weight still shared its own storage (a copy of its current value)."""
        for name in self._shared:
            live[name].data = live[name].data.clone()
        self._shared.clear()
