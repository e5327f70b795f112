"""Float timm weights from Google's quantised MobileNet V2 TFLite model.

``mobilenet_v2_1.0_224_quant.tflite`` (Apache-2.0, under 4 MiB) is the smallest ImageNet-trained
network we can ship; there is no fp32 torchvision/timm checkpoint that small. Its uint8 weights,
dequantised, drop straight into timm's ``mobilenetv2_100`` because the two are the same network:

* batch norm is already folded into each convolution, so every timm BatchNorm becomes an exact
  identity plus the folded conv bias (timm's convs have no bias of their own);
* TensorFlow pads "SAME" (asymmetrically on stride 2), which is timm's ``pad_type='same'``;
* the head has 1001 classes, index 0 being "background" (labels in ``imagenet_labels.txt``
  next to the ``.tflite``), and the input is scaled to [-1, 1], not by ImageNet mean/std.

The layers are matched by order, and each pair is checked (kind, weight shape, stride, padding,
dilation, fused activation) so that any other ``.tflite`` is refused instead of silently misloaded.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from medimg.atomic import atomic_path
from medimg.errors import MedimgError

ARCHITECTURE = "mobilenetv2_100"
NUM_CLASSES = 1001  # 1000 ImageNet classes after index 0, "background"
TFLITE_NAME = "mobilenet_v2_1.0_224_quant.tflite"
TIMM_KWARGS = dict(pad_type="same")  # TensorFlow's SAME padding; timm's default symmetric padding shifts stride-2 layers

_FIX = f"pass Google's {TFLITE_NAME} (see imagenet_mobilenet_tflite/SOURCE.md in the data directory)"


def tflite_mobilenet_pretrained_cfg() -> dict:
    """timm ``pretrained_cfg`` overlay describing the converted weights (preprocessing, head, provenance)."""
    return dict(
        # No remote source: with these cleared, timm can only load the ``file`` the caller adds.
        url=None,
        hf_hub_id=None,
        tag="tflite_quant_in1k",
        input_size=(3, 224, 224),
        interpolation="bilinear",  # what TensorFlow's slim preprocessing used
        crop_pct=0.875,
        crop_mode="center",
        mean=(0.5, 0.5, 0.5),  # (x - 0.5) / 0.5 maps a 0..1 image to the model's [-1, 1]
        std=(0.5, 0.5, 0.5),
        num_classes=NUM_CLASSES,
        first_conv="conv_stem",
        classifier="classifier",
        license="apache-2.0",
        origin_url="https://github.com/google-coral/test_data",
        description=f"{TFLITE_NAME} dequantised to float32 by medimg.models.tflite_import",
        notes=(
            "1001 classes: index 0 is 'background', 1..1000 are ImageNet-1k in the usual order; "
            "names are in imagenet_labels.txt next to the .tflite",
        ),
    )


def import_mobilenet_v2_tflite(tflite_path, out_path, *, force: bool = False) -> Path:
    """Convert ``tflite_path`` to a timm ``mobilenetv2_100`` (1001 classes) ``.safetensors`` at ``out_path``.

    The file is written atomically; an existing ``out_path`` is kept unless ``force``. Load the result
    with :func:`create_tflite_mobilenet`.
    """
    tflite_path, out_path = Path(tflite_path), Path(out_path)
    if out_path.suffix != ".safetensors":
        raise MedimgError(f"output {out_path} must end in .safetensors: timm chooses its loader by the extension")
    if out_path.exists() and not force:
        raise MedimgError(f"{out_path} already exists: delete it, choose another output path or pass force=True")
    raw = _read_bytes(tflite_path)
    state_dict = _convert(_parse_tflite(raw, tflite_path), tflite_path)
    metadata = {"format": "pt", "source": tflite_path.name, "source_sha256": hashlib.sha256(raw).hexdigest()}

    with atomic_path(out_path) as tmp:
        save_file(state_dict, str(tmp), metadata=metadata)
    return out_path


def create_tflite_mobilenet(weights_path, num_classes: int = NUM_CLASSES, **kwargs) -> nn.Module:
    """timm ``mobilenetv2_100`` loaded, through timm's own pretrained path, from converted weights.

    With ``num_classes`` other than 1001, timm keeps the backbone and leaves a freshly initialised
    classifier. ``kwargs`` go to :func:`timm.create_model`.
    """
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise MedimgError(
            f"weights file {weights_path} does not exist: "
            f"make it with import_mobilenet_v2_tflite({TFLITE_NAME!r}, {str(weights_path)!r})"
        )
    return timm.create_model(
        ARCHITECTURE,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(weights_path), **tflite_mobilenet_pretrained_cfg()),
        num_classes=num_classes,
        **TIMM_KWARGS,
        **kwargs,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MedimgError(f"TFLite file {path} does not exist: {_FIX}") from None
    except OSError as err:
        raise MedimgError(f"TFLite file {path} cannot be read ({err.strerror}): {_FIX}") from None


def _wrong_file(path: Path, why: str) -> MedimgError:
    return MedimgError(f"{path} is not {TFLITE_NAME} ({why}): {_FIX}")


def _schema():
    # Imported here so that medimg works without ai-edge-litert until a TFLite file is converted.
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise MedimgError("reading TFLite files needs ai-edge-litert: pip install ai-edge-litert") from None
    return schema_py_generated


def _parse_tflite(raw: bytes, path: Path):
    schema = _schema()
    if len(raw) < 8 or not schema.Model.ModelBufferHasIdentifier(raw, 0):
        raise _wrong_file(path, "no TFLite file identifier")
    try:
        return schema.ModelT.InitFromPackedBuf(raw, 0)
    except Exception:  # flatbuffers has no error type: a damaged buffer fails wherever decoding trips
        raise _wrong_file(path, "damaged or truncated flatbuffer") from None


def _convert(model, path: Path) -> dict[str, torch.Tensor]:
    """State dict for ``timm.create_model(ARCHITECTURE, num_classes=NUM_CLASSES, pad_type='same')``."""
    schema = _schema()
    if len(model.subgraphs) != 1:
        raise _wrong_file(path, f"{len(model.subgraphs)} subgraphs, expected 1")
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        # Newer files keep the code in builtinCode, older ones only in the deprecated int8 field.
        ops.append((max(code.builtinCode, code.deprecatedBuiltinCode), op))
    convs = [(c, op) for c, op in ops if c in (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D)]
    adds = sum(c == schema.BuiltinOperator.ADD for c, _ in ops)

    net = timm.create_model(ARCHITECTURE, num_classes=NUM_CLASSES, pad_type="same")
    modules = list(net.named_modules())
    # timm registers each conv just before its BatchNormAct2d, in forward order, so zip pairs them.
    layers = list(zip(
        [(n, m) for n, m in modules if isinstance(m, nn.Conv2d)],
        [(n, m) for n, m in modules if isinstance(m, nn.BatchNorm2d)],
    ))
    skips = sum(getattr(m, "has_skip", False) for _, m in modules)
    if len(convs) != len(layers) + 1 or adds != skips:  # + 1: the logits are a 1x1 conv
        raise _wrong_file(
            path, f"{len(convs)} convolutions and {adds} residual adds, MobileNet V2 has {len(layers) + 1} and {skips}"
        )

    fused = {schema.ActivationFunctionType.RELU6: "relu6", schema.ActivationFunctionType.NONE: "none"}
    state_dict = {}
    for (code, op), ((conv_name, conv), (bn_name, bn)) in zip(convs, layers):
        depthwise = code == schema.BuiltinOperator.DEPTHWISE_CONV_2D
        weight = _dequantised(model, graph, op.inputs[1], path)
        # TFLite stores conv weights OHWI and depthwise weights 1HWC; torch wants OIHW and C1HW.
        weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
        opts = op.builtinOptions
        found = (
            depthwise, weight.shape, (opts.strideH, opts.strideW), opts.padding,
            (opts.dilationHFactor, opts.dilationWFactor), fused.get(opts.fusedActivationFunction, "other"),
        )
        expected = (
            conv.groups > 1, tuple(conv.weight.shape), conv.stride,
            schema.Padding.SAME,  # pad_type='same' makes every timm conv TensorFlow-SAME
            conv.dilation, "relu6" if isinstance(bn.act, nn.ReLU6) else "none",
        )
        if found != expected:
            raise _wrong_file(path, f"layer {conv_name}: file has {found}, MobileNet V2 needs {expected}")
        state_dict[f"{conv_name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        # Identity batch norm carrying the folded bias: (x - 0) / sqrt((1 - eps) + eps) * 1 + bias.
        # 1 - eps rounds so that adding eps back gives exactly 1.0 in float32, so the BN is exact.
        channels = bn.num_features
        state_dict[f"{bn_name}.weight"] = torch.ones(channels)
        state_dict[f"{bn_name}.bias"] = torch.from_numpy(_dequantised(model, graph, op.inputs[2], path))
        state_dict[f"{bn_name}.running_mean"] = torch.zeros(channels)
        state_dict[f"{bn_name}.running_var"] = torch.full((channels,), 1.0 - bn.eps)
        state_dict[f"{bn_name}.num_batches_tracked"] = torch.tensor(0)

    _, logits = convs[-1]
    weight = _dequantised(model, graph, logits.inputs[1], path)
    if weight.shape != (NUM_CLASSES, 1, 1, net.num_features):
        raise _wrong_file(path, f"logits weight {weight.shape}, expected {(NUM_CLASSES, 1, 1, net.num_features)}")
    state_dict["classifier.weight"] = torch.from_numpy(np.ascontiguousarray(weight.reshape(NUM_CLASSES, -1)))
    state_dict["classifier.bias"] = torch.from_numpy(_dequantised(model, graph, logits.inputs[2], path))
    # Strict load: proves the keys and shapes are exactly those of a plain timm model.
    net.load_state_dict(state_dict, strict=True)
    return _calibrate_batch_norm(net)


def _calibrate_batch_norm(net: nn.Module) -> dict[str, torch.Tensor]:
    """Give the folded, identity batch norms real statistics without changing the network.

    An identity BN is exact in eval mode, but fine-tuning runs BN in train mode, where it
    normalises each batch and would wreck the folded network. So each BN gets the mean and
    variance of its input on natural photographs (random crops of scikit-image's sample
    photos, standing in for ImageNet) and the affine terms that undo them:
    gamma = sqrt(var + eps), beta = bias + mean. In eval mode that is still exactly x + bias
    (up to rounding); in train mode it behaves like any ImageNet-pretrained BN network.
    """
    stats = {}

    def record(name):
        def hook(module, inputs, _):
            x = inputs[0].double()
            stats[name] = (x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False))
        return hook

    bns = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [m.register_forward_hook(record(n)) for n, m in bns]
    net.eval()
    with torch.inference_mode():
        net(_calibration_images())
    for h in handles:
        h.remove()
    with torch.no_grad():
        for name, bn in bns:
            mean, var = stats[name]
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())
            bn.bias.add_(mean.float())
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def _calibration_images(n_crops: int = 12, size: int = 224, seed: int = 0) -> torch.Tensor:
    """Random crops of scikit-image's colour photographs, scaled to the model's [-1, 1]."""
    from PIL import Image
    from skimage import data as photos

    rng = np.random.default_rng(seed)
    crops = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field", "immunohistochemistry"):
        img = Image.fromarray(getattr(photos, name)()).convert("RGB")
        for _ in range(n_crops):
            side = int(min(img.size) * rng.uniform(0.4, 1.0))
            x0, y0 = rng.integers(0, img.size[0] - side + 1), rng.integers(0, img.size[1] - side + 1)
            crops.append(np.asarray(img.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)))
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x


def _dequantised(model, graph, index: int, path: Path) -> np.ndarray:
    """Float32 value of a quantised constant: (q - zero_point) * scale, per tensor or per channel."""
    if index < 0:  # -1 marks an absent optional input
        raise _wrong_file(path, "a convolution has no bias")
    schema = _schema()
    dtypes = {schema.TensorType.UINT8: np.uint8, schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32}
    tensor = graph.tensors[index]
    data, quant = model.buffers[tensor.buffer].data, tensor.quantization
    if data is None or tensor.type not in dtypes or quant is None or quant.scale is None:
        raise _wrong_file(path, f"{tensor.name.decode()} is not a quantised constant")
    values = np.asarray(data, dtype=np.uint8).view(dtypes[tensor.type]).reshape(tensor.shape)
    # A per-tensor scale has one entry; per-channel scales lie along quantizedDimension.
    axis_shape = [1] * values.ndim
    axis_shape[quant.quantizedDimension] = -1
    scale = np.asarray(quant.scale, dtype=np.float64).reshape(axis_shape)
    zero_point = np.asarray(quant.zeroPoint, dtype=np.float64).reshape(axis_shape) if quant.zeroPoint is not None else 0.0
    # In float64 so that large int32 biases are scaled exactly and rounded to float32 only once.
    return ((values - zero_point) * scale).astype(np.float32)
