"""ConvNeXt V2 ("Co-designing and Scaling ConvNets with Masked Autoencoders", Woo et al. 2023)."""

from __future__ import annotations

from hubpub.families.base import Converter, DocText, Family, lazy
from hubpub.families.convnext.config import official_shapes
from hubpub.families.convnext_v2 import config, rules

FAMILY = Family(
    name="convnext_v2",
    config=config.ConvNeXtV2,
    docs=DocText(
        title="ConvNeXt V2",
        paper="[ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders]"
              "(https://arxiv.org/abs/2301.00808) (Woo et al., CVPR 2023)",
        references=(
            "Sanghyun Woo, Shoubhik Debnath, Ronghang Hu, Xinlei Chen, Zhuang Liu, In So Kweon, Saining Xie. "
            "[ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders]"
            "(https://arxiv.org/abs/2301.00808). CVPR 2023.",
        ),
        code="[facebookresearch/ConvNeXt-V2](https://github.com/facebookresearch/ConvNeXt-V2)",
        network_architecture=None,  # tfhub.dev's tags/network_architecture.yaml has no ConvNeXt V2 id
        features="the globally pooled and layer-normalised features, before the classifier",
    ),
    build=lazy("hubpub.families.convnext_v2.model", "build_model"),
    converter=Converter(rules=rules.rules_for, official_shapes=official_shapes, to_official=rules.to_official,
                        infer=config.infer),
    reference=lazy("hubpub.families.convnext_v2.reference", "load"),
    taps=lazy("hubpub.families.convnext_v2.model", "tap_layer_names"),
)
