#!/usr/bin/python3
"""PyTorch side of compiler_bench: the same model, with the same weights, in PyTorch.

Reads an ONNX file (a chain of Gemm/Conv/BatchNormalization/Relu/MaxPool/GlobalAveragePool/
Flatten/Softmax, what compiler_bench builds), makes the equivalent torch.nn.Sequential from its
initialisers, and times batch-1 calls on one thread: eager, and TorchScript (traced and frozen),
the two ways PyTorch models are served. Prints one JSON object:
  {"eager": {...}, "torchscript": {...}, "output": [...]}
with per-call latency in microseconds (p50, mean, min, calls).
"""
import argparse
import json
import time

import numpy as np
import onnx
import onnx.numpy_helper
import torch


def attribute(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def to_torch(model):
    weights = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
               for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        op = node.op_type
        if op == "Gemm":
            w = weights[node.input[1]]
            if not attribute(node, "transB", 0):
                w = w.t()
            linear = torch.nn.Linear(w.shape[1], w.shape[0])
            linear.weight.data = w.contiguous()
            linear.bias.data = weights[node.input[2]]
            layers.append(linear)
        elif op == "Conv":
            w = weights[node.input[1]]
            pads = attribute(node, "pads", [0, 0, 0, 0])
            conv = torch.nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                                   stride=tuple(attribute(node, "strides", [1, 1])),
                                   padding=(pads[0], pads[1]))
            conv.weight.data = w
            conv.bias.data = weights[node.input[2]]
            layers.append(conv)
        elif op == "BatchNormalization":
            scale, bias, mean, var = (weights[n] for n in node.input[1:5])
            bn = torch.nn.BatchNorm2d(scale.shape[0], eps=attribute(node, "epsilon", 1e-5))
            bn.weight.data, bn.bias.data = scale, bias
            bn.running_mean.data, bn.running_var.data = mean, var
            layers.append(bn)
        elif op == "Relu":
            layers.append(torch.nn.ReLU())
        elif op == "MaxPool":
            layers.append(torch.nn.MaxPool2d(tuple(attribute(node, "kernel_shape", [])),
                                             tuple(attribute(node, "strides", [1, 1]))))
        elif op == "GlobalAveragePool":
            layers.append(torch.nn.AdaptiveAvgPool2d(1))
        elif op == "Flatten":
            layers.append(torch.nn.Flatten())
        elif op == "Softmax":
            layers.append(torch.nn.Softmax(dim=attribute(node, "axis", -1)))
        else:
            raise SystemExit(f"torch_latency.py: no PyTorch equivalent for {op}")
    return torch.nn.Sequential(*layers).eval()


def measure(fn, x, seconds):
    for _ in range(50):
        fn(x)
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter_ns()
        fn(x)
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] / 1e3,
            "mean_us": sum(samples) / len(samples) / 1e3,
            "min_us": samples[0] / 1e3,
            "calls": len(samples)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True, help="raw float32 input, C order")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = onnx.load(args.model)
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = torch.from_numpy(np.fromfile(args.input, dtype=np.float32).reshape(dims))
    net = to_torch(model)
    with torch.inference_mode():
        output = net(x)
        scripted = torch.jit.freeze(torch.jit.trace(net, x))
        result = {"eager": measure(net, x, args.seconds),
                  "torchscript": measure(scripted, x, args.seconds),
                  "output": output.flatten().tolist()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
