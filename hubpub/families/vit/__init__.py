"""Vision Transformers (Dosovitskiy et al. 2021) and DeiT (Touvron et al. 2021), from timm's checkpoints."""

from __future__ import annotations

from hubpub.families.base import Converter, DocText, Family, lazy
from hubpub.families.vit import config, rules

FAMILY = Family(
    name="vit",
    config=config.parse,
    docs=DocText(
        title="Vision Transformer",
        paper="[An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale]"
              "(https://arxiv.org/abs/2010.11929) (Dosovitskiy et al., ICLR 2021)",
        references=(
            "Alexey Dosovitskiy, Lucas Beyer, Alexander Kolesnikov, Dirk Weissenborn, Xiaohua Zhai, Thomas "
            "Unterthiner, Mostafa Dehghani, Matthias Minderer, Georg Heigold, Sylvain Gelly, Jakob Uszkoreit, "
            "Neil Houlsby. [An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale]"
            "(https://arxiv.org/abs/2010.11929). ICLR 2021.",
            "Hugo Touvron, Matthieu Cord, Matthijs Douze, Francisco Massa, Alexandre Sablayrolles, Hervé Jégou. "
            "[Training data-efficient image transformers & distillation through attention]"
            "(https://arxiv.org/abs/2012.12877). ICML 2021.",
            "Andreas Steiner, Alexander Kolesnikov, Xiaohua Zhai, Ross Wightman, Jakob Uszkoreit, Lucas Beyer. "
            "[How to train your ViT? Data, Augmentation, and Regularization in Vision Transformers]"
            "(https://arxiv.org/abs/2106.10270). TMLR 2022.",
        ),
        code="[huggingface/pytorch-image-models](https://github.com/huggingface/pytorch-image-models) "
             "(timm's `vision_transformer.py` and `deit.py`)",
        network_architecture="vit",
        features="the class token after the final LayerNorm (averaged with the distillation token for "
                 "distilled DeiT; the LayerNorm of the averaged patch tokens for average pooling), before "
                 "the classifier",
    ),
    build=lazy("hubpub.families.vit.model", "build_model"),
    converter=Converter(rules=rules.rules_for, official_shapes=config.official_shapes,
                        to_official=rules.to_official, infer=config.infer, join=rules.join_qkv),
    reference=lazy("hubpub.families.vit.reference", "load_reference"),
    taps=lazy("hubpub.families.vit.model", "tap_layer_names"),
)
