"""A plug-in method that knows nothing of the model: the image's edge energy (squared finite
differences summed over channels), a map any attribution method should beat on objects that are
not simply the busiest texture. It is registered only through the entry point."""

from __future__ import annotations

import torch.nn.functional as F

from bench.methods import AttributionMethod


class EdgeEnergy(AttributionMethod):
    name = "edge_energy"
    family = "baseline"
    defaults = {"power": 2.0}
    description = "plug-in test fixture: image edge energy (squared finite differences)"

    def attribute(self, model, inputs, targets, *, seeds=None):
        dx = F.pad(inputs[..., :, 1:] - inputs[..., :, :-1], (0, 1, 0, 0))
        dy = F.pad(inputs[..., 1:, :] - inputs[..., :-1, :], (0, 0, 0, 1))
        return (dx.abs() ** self.params["power"] + dy.abs() ** self.params["power"]).sum(dim=1)
