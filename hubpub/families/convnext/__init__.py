"""ConvNeXt ("A ConvNet for the 2020s", Liu et al. 2022): hierarchical and isotropic models."""

from __future__ import annotations

from hubpub.families.base import Converter, DocText, Family, lazy
from hubpub.families.convnext import config, rules

FAMILY = Family(
    name="convnext",
    config=config.parse,
    docs=DocText(
        title="ConvNeXt",
        paper="[A ConvNet for the 2020s](https://arxiv.org/abs/2201.03545) (Liu et al., CVPR 2022)",
        references=(
            "Zhuang Liu, Hanzi Mao, Chao-Yuan Wu, Christoph Feichtenhofer, Trevor Darrell, Saining Xie. "
            "[A ConvNet for the 2020s](https://arxiv.org/abs/2201.03545). CVPR 2022.",
        ),
        code="[facebookresearch/ConvNeXt](https://github.com/facebookresearch/ConvNeXt)",
        network_architecture="convnext",
        features="the globally pooled and layer-normalised features, before the classifier",
    ),
    build=lazy("hubpub.families.convnext.model", "build_model"),
    converter=Converter(rules=rules.rules_for, official_shapes=config.official_shapes,
                        to_official=rules.to_official, infer=config.infer),
    reference=lazy("hubpub.families.convnext.reference", "load_reference"),
    taps=lazy("hubpub.families.convnext.model", "tap_layer_names"),
)
