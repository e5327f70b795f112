"""The models stage: timm backbones and their offline weights (ImageNet from Google's TFLite MobileNet and
EfficientNet-Lite0, self-supervised checkpoints as safetensors), the classifier head and parameter groups.

May import the shared modules and :mod:`medimg.data` (content fingerprints); knows of datasets only their
channels and class count.
"""
