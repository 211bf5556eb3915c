"""Two rewrites of the converted ONNX graph into the forms onnxruntime fuses into one kernel each; the
maths is the same and the build's check against the SavedModel still holds the result to 1e-4.

tf2onnx writes TensorFlow's exact GELU and Keras' LayerNormalization op by op (GELU with a negation
inside erfc; layer norm as mean, variance, rsqrt, scale and shift), which onnxruntime does not recognise:
on ConvNeXt tiny at batch 8 those element-wise ops took a third of its time (`benchmarks/bench_onnx.py`).
Each rewrite matches only its exact pattern, each intermediate read by that pattern alone."""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper


class _Graph:
    def __init__(self, graph):
        self.g = graph
        self.refresh()

    def refresh(self):
        self.nodes = list(self.g.node)  # these objects throughout: node identity is what the rewrites track
        self.prod = {o: n for n in self.nodes for o in n.output}
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.init = {i.name: i for i in self.g.initializer}
        self.rank = {v.name: len(v.type.tensor_type.shape.dim) for v in (*self.g.value_info, *self.g.input)
                     if v.type.tensor_type.HasField("shape")}

    def const(self, name):
        return numpy_helper.to_array(self.init[name]) if name in self.init else None

    def scalar(self, name):
        c = self.const(name)
        return float(c.ravel()[0]) if c is not None and c.size == 1 else None

    def only(self, tensor, op):
        """The producer of `tensor` if it is an `op` node whose output only this use reads."""
        n = self.prod.get(tensor)
        if n is None or n.op_type != op or len(self.consumers.get(n.output[0], [])) != 1:
            return None
        return n

    def add_const(self, name, array):
        self.g.initializer.append(numpy_helper.from_array(array, name))


def gelu(model) -> int:
    """`0.5x * (1 - erf(-x * 0.7071))` (TensorFlow's exact GELU, erfc written with Erf) as
    `0.5x * (1 + erf(x / sqrt(2)))`, the pattern onnxruntime fuses into one Gelu kernel."""
    graph = _Graph(model.graph)
    done, drop = 0, []
    for sub in graph.nodes:
        if sub.op_type != "Sub" or graph.scalar(sub.input[0]) != 1.0:
            continue
        erf = graph.only(sub.input[1], "Erf")
        mul = erf and graph.only(erf.input[0], "Mul")
        if not mul or graph.scalar(mul.input[1]) is None or abs(graph.scalar(mul.input[1]) - 2 ** -0.5) > 1e-7:
            continue
        neg = graph.only(mul.input[0], "Neg")
        if not neg:
            continue
        if not done:
            graph.add_const("hubpub_sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
        mul.op_type, mul.input[:] = "Div", [neg.input[0], "hubpub_sqrt2"]
        sub.op_type, sub.input[:] = "Add", [erf.output[0], sub.input[0]]
        drop.append(neg)
        done += 1
    for n in drop:
        graph.g.node.remove(n)
    return done


def layer_norm(model) -> int:
    """Keras' LayerNormalization over the last axis, as tf2onnx writes it (mean, variance, rsqrt, scale and
    shift as separate ops), as one LayerNormalization node."""
    graph = _Graph(model.graph)
    done, gone, replace = 0, set(), {}
    for out in graph.nodes:
        if out.op_type != "Add":
            continue
        y1 = graph.only(out.input[0], "Mul")
        b = graph.only(out.input[1], "Add")
        if not (y1 and b):
            continue
        m2 = graph.only(b.input[0], "Mul")
        beta = graph.const(b.input[1])
        if not m2 or beta is None:
            continue
        neg = graph.only(m2.input[0], "Neg")
        scale_name = m2.input[1]
        scale = graph.prod.get(scale_name)
        if not neg or scale is None or scale.op_type != "Mul" or y1.input[1] != scale_name:
            continue
        if len(graph.consumers.get(scale_name, [])) != 2:
            continue
        x = y1.input[0]
        rm1 = graph.prod.get(neg.input[0])
        rec = graph.only(scale.input[0], "Reciprocal")
        gamma = graph.const(scale.input[1])
        sqrt = rec and graph.only(rec.input[0], "Sqrt")
        eps_add = sqrt and graph.only(sqrt.input[0], "Add")
        eps = eps_add and graph.scalar(eps_add.input[1])
        rm2 = eps_add and graph.only(eps_add.input[0], "ReduceMean")
        sq = rm2 and graph.only(rm2.input[0], "Mul")
        if not (rm1 and rm1.op_type == "ReduceMean" and rec and gamma is not None and eps is not None and rm2 and sq):
            continue
        diff = graph.prod.get(sq.input[0])
        if not (sq.input[0] == sq.input[1] and diff is not None and diff.op_type == "Sub" and
                diff.input[:] == [x, rm1.output[0]] and len(graph.consumers[diff.output[0]]) == 2 and
                rm1.input[0] == x and len(graph.consumers[rm1.output[0]]) == 2):
            continue
        axes = [_axes(n) for n in (rm1, rm2)]
        rank = graph.rank.get(x)
        if rank is None or axes[0] != axes[1] or axes[0] not in ([rank - 1], [-1]):
            continue  # only over the last axis: LayerNormalization normalises every axis from `axis` on
        channels = gamma.size
        if beta.size != channels or any(d != 1 for d in gamma.shape[:-1]) or any(d != 1 for d in beta.shape[:-1]):
            continue
        name = f"hubpub_ln{done}"
        graph.add_const(name + "_scale", gamma.reshape(channels).astype(np.float32))
        graph.add_const(name + "_bias", beta.reshape(channels).astype(np.float32))
        replace[id(out)] = helper.make_node("LayerNormalization", [x, name + "_scale", name + "_bias"],
                                            [out.output[0]], axis=-1, epsilon=eps)
        gone.update(id(n) for n in (y1, b, m2, neg, scale, rec, sqrt, eps_add, rm2, sq, diff, rm1))
        done += 1
    nodes = [_copy(replace.get(id(n), n)) for n in graph.nodes if id(n) not in gone]
    del graph.g.node[:]
    graph.g.node.extend(nodes)
    return done


def _copy(node):
    copy = type(node)()
    copy.CopyFrom(node)
    return copy


def _axes(node) -> list[int]:
    return [int(a) for attr in node.attribute if attr.name == "axes" for a in helper.get_attribute_value(attr)]
