// Shape and data-movement ops: reshape, transpose, broadcast_to, slice, concat, pad.
#include <fmt/format.h>

#include <cstring>
#include <numeric>

#include "metagrad/ops.h"
#include "ops/broadcast.h"
#include "ops/eltwise_math.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

namespace {

std::vector<int64_t> dense_strides(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t k = 1;
  for (size_t i = s.size(); i-- > 0;) st[i] = k, k *= s[i];
  return st;
}

std::unique_ptr<Kernel> copy_kernel(const KernelCtx& ctx) {
  const void* src = ctx.in[0];
  void* dst = ctx.out[0];
  size_t bytes = ctx.out_type().bytes();
  return std::make_unique<LoopKernel>([=] { std::memmove(dst, src, bytes); }, "copy");
}

// Copies contiguous runs of a strided view with memcpy. For slices (and transposes that keep the
// last axis) oneDNN's reorder is its generic `simple:any` kernel, whose thread dispatch costs
// more than the copy at the sizes this engine sees.
class RunCopyKernel final : public Kernel {
 public:
  RunCopyKernel(const char* src, char* dst, Shape outer, std::vector<int64_t> outer_bytes, size_t run_bytes)
      : src_(src), dst_(dst), outer_(std::move(outer)), step_(std::move(outer_bytes)), run_(run_bytes) {}
  void run(dnnl::stream&) override {
    const size_t rank = outer_.size();
    int64_t idx[kMaxRank] = {}, off = 0;
    for (char* d = dst_;; d += run_) {
      std::memcpy(d, src_ + off, run_);
      size_t k = rank;
      while (k-- > 0) {
        off += step_[k];
        if (++idx[k] < outer_[k]) break;
        off -= step_[k] * outer_[k];
        idx[k] = 0;
      }
      if (k == size_t(-1)) return;
    }
  }
  std::string impl() const override { return "loop:memcpy"; }

 private:
  const char* src_;
  char* dst_;
  Shape outer_;
  std::vector<int64_t> step_;
  size_t run_;
};

// Copies a strided view of the input (dims in output order, element strides, element offset)
// into the dense output: memcpy runs when the innermost axis is contiguous, else a oneDNN reorder.
std::unique_ptr<Kernel> strided_copy_kernel(const KernelCtx& ctx, const Shape& dims, const std::vector<int64_t>& strides,
                                            int64_t offset) {
  if (dims.empty()) return copy_kernel(ctx);
  if (num_elements(dims) == 0) return std::make_unique<LoopKernel>([] {}, "empty");
  // Drop size-1 axes and merge axes the view walks contiguously.
  Shape cd;
  std::vector<int64_t> cs;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 1) continue;
    if (!cd.empty() && cs.back() == strides[i] * dims[i]) {
      cd.back() *= dims[i];
      cs.back() = strides[i];
    } else {
      cd.push_back(dims[i]);
      cs.push_back(strides[i]);
    }
  }
  // Short runs on large views copy faster through the reorder's vector code.
  const bool runs = cd.empty() || (cs.back() == 1 && cd.size() <= kMaxRank + 1 &&
                                   (cd.back() >= 8 || num_elements(dims) <= 4096));
  if (runs) {
    const size_t run = size_t(cd.empty() ? 1 : cd.back()) * 4;
    if (!cd.empty()) cd.pop_back(), cs.pop_back();
    for (int64_t& s : cs) s *= 4;
    const char* src = static_cast<const char*>(ctx.in[0]) + offset * 4;
    return std::make_unique<RunCopyKernel>(src, static_cast<char*>(ctx.out[0]), cd, cs, run);
  }
  auto dt = ctx.out_type().dtype == DType::f32 ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::s32;
  dnnl::memory::desc src(to_dims(dims), dt, dnnl::memory::dims(strides.begin(), strides.end()));
  auto dst = dense_desc(dims, ctx.out_type().dtype);
  dnnl::reorder::primitive_desc pd(ctx.engine, src, ctx.engine, dst, dnnl_attr());
  void* base = static_cast<char*>(ctx.in[0]) + offset * 4;
  return std::make_unique<DnnlKernel>(
      dnnl::reorder(pd), pd,
      std::vector<DnnlKernel::Arg>{{DNNL_ARG_FROM, src, base}, {DNNL_ARG_TO, dst, ctx.out[0]}}, ctx.engine, ctx.workspace);
}

// ---- reshape ----
std::vector<TensorType> reshape_rule(const std::vector<TensorType>& in, const Attrs& a) {
  Shape s = attr_ints(a, "shape");
  for (int64_t d : s)
    if (d < 0) throw ShapeError("reshape target " + shape_str(s) + " has a negative dimension");
  if (num_elements(s) != in[0].numel())
    throw ShapeError(fmt::format("cannot reshape {} ({} elements) to {} ({} elements)", shape_str(in[0].shape),
                                 in[0].numel(), shape_str(s), num_elements(s)));
  return {{in[0].dtype, s}};
}

// ---- transpose ----
std::vector<TensorType> transpose_rule(const std::vector<TensorType>& in, const Attrs& a) {
  const auto& perm = attr_ints(a, "perm");
  const Shape& s = in[0].shape;
  if (perm.size() != s.size()) throw ShapeError(fmt::format("perm has {} axes for shape {}", perm.size(), shape_str(s)));
  std::vector<int64_t> seen(perm);
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < seen.size(); ++i)
    if (seen[i] != int64_t(i)) throw ShapeError("perm is not a permutation");
  Shape out;
  for (int64_t p : perm) out.push_back(s[size_t(p)]);
  return {{in[0].dtype, out}};
}

std::vector<int64_t> inverse_perm(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[size_t(perm[i])] = int64_t(i);
  return inv;
}

// ---- broadcast_to ----
std::vector<TensorType> broadcast_to_rule(const std::vector<TensorType>& in, const Attrs& a) {
  Shape target = attr_ints(a, "shape");
  if (broadcast_shapes(in[0].shape, target) != target)
    throw ShapeError(fmt::format("cannot broadcast {} to {}", shape_str(in[0].shape), shape_str(target)));
  return {{in[0].dtype, target}};
}

// ---- slice ----
std::vector<TensorType> slice_rule(const std::vector<TensorType>& in, const Attrs& a) {
  const auto &b = attr_ints(a, "begin"), &e = attr_ints(a, "end");
  const Shape& s = in[0].shape;
  if (b.size() != s.size() || e.size() != s.size())
    throw ShapeError(fmt::format("slice needs begin/end for every axis of {}", shape_str(s)));
  Shape out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (b[i] < 0 || e[i] > s[i] || b[i] > e[i])
      throw ShapeError(fmt::format("slice [{}, {}) out of range on axis {} of {}", b[i], e[i], i, shape_str(s)));
    out.push_back(e[i] - b[i]);
  }
  return {{in[0].dtype, out}};
}

// ---- concat ----
std::vector<TensorType> concat_rule(const std::vector<TensorType>& in, const Attrs& a) {
  int64_t axis = normalize_axis(attr_int(a, "axis"), in[0].shape.size());
  Shape out = in[0].shape;
  out[size_t(axis)] = 0;
  for (const auto& t : in) {
    Shape x = t.shape;
    if (x.size() != out.size() || t.dtype != in[0].dtype)
      throw ShapeError(fmt::format("concat of {} and {}", type_str(in[0]), type_str(t)));
    out[size_t(axis)] += x[size_t(axis)];
    x[size_t(axis)] = in[0].shape[size_t(axis)];
    if (x != in[0].shape) throw ShapeError(fmt::format("concat of {} and {} along axis {}", shape_str(in[0].shape), shape_str(t.shape), axis));
  }
  return {{in[0].dtype, out}};
}

// ---- pad ----
std::vector<TensorType> pad_rule(const std::vector<TensorType>& in, const Attrs& a) {
  const auto &b = attr_ints(a, "before"), &e = attr_ints(a, "after");
  const Shape& s = in[0].shape;
  if (b.size() != s.size() || e.size() != s.size())
    throw ShapeError(fmt::format("pad needs before/after for every axis of {}", shape_str(s)));
  Shape out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (b[i] < 0 || e[i] < 0) throw ShapeError("negative padding");
    out.push_back(s[i] + b[i] + e[i]);
  }
  return {{in[0].dtype, out}};
}

// The window of a big tensor that starts at `begin` and has a small tensor's shape, as offsets
// precomputed once (kernels build it at compile time).
// The window is copied one innermost row at a time: rows are contiguous in both tensors.
struct Window {
  Shape rows;                                 // the small shape without its last axis
  std::vector<std::vector<int64_t>> strides;  // {small dense strides, big dense strides} over `rows`
  int64_t row = 1;                            // elements per row (1 for scalars)
  int64_t base = 0;
};
Window make_window(const Shape& small, const Shape& big, const std::vector<int64_t>& begin) {
  Window w{small, {dense_strides(small), dense_strides(big)}, 1, 0};
  for (size_t i = 0; i < big.size(); ++i) w.base += begin[i] * w.strides[1][i];
  if (!small.empty()) {
    w.row = small.back();
    w.rows.pop_back();
    for (auto& st : w.strides) st.pop_back();
  }
  return w;
}
// Copies small into the window when `into_big`, else the window into small.
template <class T>
void window_copy(const Window& w, T* small, T* big, bool into_big) {
  for_each_broadcast_n(w.rows, w.strides, [&](int64_t, const int64_t* off) {
    T* s = small + off[0];
    T* b = big + w.base + off[1];
    if (into_big) std::copy(s, s + w.row, b);
    else std::copy(b, b + w.row, s);
  });
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  Shape s = shape;
  int64_t known = 1, unknown = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (unknown >= 0) throw ShapeError("reshape: at most one dimension may be -1 in " + shape_str(shape));
      unknown = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (unknown >= 0) {
    if (known == 0 || x.numel() % known != 0)
      throw ShapeError(fmt::format("op reshape: cannot reshape {} to {}", shape_str(x.shape()), shape_str(shape)));
    s[size_t(unknown)] = x.numel() / known;
  }
  return apply("reshape", {x}, {{"shape", s}});
}
Tensor transpose(const Tensor& x, std::vector<int64_t> perm) { return apply("transpose", {x}, {{"perm", perm}}); }
Tensor transpose_last2(const Tensor& x) {
  std::vector<int64_t> perm(size_t(x.rank()));
  std::iota(perm.begin(), perm.end(), 0);
  if (perm.size() < 2) throw ShapeError("transpose_last2 needs rank >= 2, got " + shape_str(x.shape()));
  std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
  return transpose(x, perm);
}
Tensor broadcast_to(const Tensor& x, const Shape& shape) { return apply("broadcast_to", {x}, {{"shape", shape}}); }
Tensor slice(const Tensor& x, std::vector<int64_t> begin, std::vector<int64_t> end) {
  return apply("slice", {x}, {{"begin", begin}, {"end", end}});
}
Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  if (xs.empty()) throw ShapeError("concat of nothing");
  return apply("concat", xs, {{"axis", normalize_axis(axis, size_t(xs[0].rank()))}});
}
Tensor pad(const Tensor& x, std::vector<int64_t> before, std::vector<int64_t> after) {
  return apply("pad", {x}, {{"before", before}, {"after", after}});
}

void register_shape_ops(OpRegistry& r) {
  {
    OpDef d;
    d.name = "reshape";
    d.attrs = {{"shape", AttrKind::Ints, std::nullopt}};
    d.shape = reshape_rule;
    d.grad = [](const GradCtx& c) { return std::vector<Tensor>{reshape(c.cotangents[0], c.inputs[0].shape())}; };
    d.reference = [](const Node&, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      out[0].data = in[0]->data;
    };
    d.kernel = copy_kernel;
    d.tests = {tcase({{2, 6}}, {{"shape", Shape{3, 4}}}), tcase({{2, 3, 4}}, {{"shape", Shape{24}}}),
               tcase({{1}}, {{"shape", Shape{}}})};
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "transpose";
    d.attrs = {{"perm", AttrKind::Ints, std::nullopt}};
    d.shape = transpose_rule;
    d.grad = [](const GradCtx& c) {
      return std::vector<Tensor>{transpose(c.cotangents[0], inverse_perm(attr_ints(c.attrs, "perm")))};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      const auto& perm = attr_ints(n.attrs, "perm");
      auto st = dense_strides(in[0]->shape);
      std::vector<int64_t> view;
      for (int64_t p : perm) view.push_back(st[size_t(p)]);
      for_each_broadcast_n(out[0].shape, {view}, [&](int64_t i, const int64_t* off) { out[0].data[size_t(i)] = in[0]->data[size_t(off[0])]; });
    };
    d.kernel = [](const KernelCtx& ctx) {
      const auto& perm = attr_ints(ctx.node.attrs, "perm");
      auto st = dense_strides(ctx.in_types[0].shape);
      std::vector<int64_t> view;
      for (int64_t p : perm) view.push_back(st[size_t(p)]);
      return strided_copy_kernel(ctx, ctx.out_type().shape, view, 0);
    };
    d.tests = {tcase({{2, 3}}, {{"perm", std::vector<int64_t>{1, 0}}}),
               tcase({{2, 3, 4}}, {{"perm", std::vector<int64_t>{2, 0, 1}}}),
               tcase({{2, 3, 4, 5}}, {{"perm", std::vector<int64_t>{0, 3, 1, 2}}}),
               tcase({{2, 3, 4, 5}}, {{"perm", std::vector<int64_t>{1, 0, 2, 3}}})};
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "broadcast_to";
    d.attrs = {{"shape", AttrKind::Ints, std::nullopt}};
    d.shape = broadcast_to_rule;
    d.grad = [](const GradCtx& c) { return std::vector<Tensor>{sum_to_shape(c.cotangents[0], c.inputs[0].shape())}; };
    d.reference = [](const Node&, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      ref_broadcast(in, out[0], [](const double* x) { return x[0]; });
    };
    d.kernel = [](const KernelCtx& ctx) { return loop_eltwise_kernel(ctx, eltwise::identity); };
    d.tests = {tcase({{3, 1}}, {{"shape", Shape{3, 4}}}), tcase({{}}, {{"shape", Shape{2, 3}}}),
               tcase({{4}}, {{"shape", Shape{2, 3, 4}}}), tcase({{2, 1, 3}}, {{"shape", Shape{2, 5, 3}}})};
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "slice";
    d.attrs = {{"begin", AttrKind::Ints, std::nullopt}, {"end", AttrKind::Ints, std::nullopt}};
    d.shape = slice_rule;
    d.grad = [](const GradCtx& c) {
      const auto& b = attr_ints(c.attrs, "begin");
      const auto& e = attr_ints(c.attrs, "end");
      std::vector<int64_t> after;
      for (size_t i = 0; i < b.size(); ++i) after.push_back(c.inputs[0].shape()[i] - e[i]);
      return std::vector<Tensor>{pad(c.cotangents[0], b, after)};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      auto w = make_window(out[0].shape, in[0]->shape, attr_ints(n.attrs, "begin"));
      window_copy(w, out[0].data.data(), const_cast<double*>(in[0]->data.data()), false);
    };
    d.kernel = [](const KernelCtx& ctx) {
      const auto& b = attr_ints(ctx.node.attrs, "begin");
      auto st = dense_strides(ctx.in_types[0].shape);
      int64_t off = 0;
      for (size_t i = 0; i < b.size(); ++i) off += b[i] * st[i];
      return strided_copy_kernel(ctx, ctx.out_type().shape, st, off);
    };
    auto sl = [](std::vector<int64_t> b, std::vector<int64_t> e) { return Attrs{{"begin", b}, {"end", e}}; };
    d.tests = {tcase({{4, 5}}, sl({1, 0}, {3, 5})), tcase({{3, 4, 5}}, sl({0, 1, 2}, {2, 4, 4})),
               tcase({{6}}, sl({2}, {6})),                 tcase({{2, 3, 4, 5}}, sl({1, 0, 1, 0}, {2, 3, 3, 5}))};
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "concat";
    d.num_inputs = -1;
    d.attrs = {{"axis", AttrKind::Int, std::nullopt}};
    d.shape = concat_rule;
    d.grad = [](const GradCtx& c) {
      int64_t axis = axis_attr(c.attrs, size_t(c.inputs[0].rank()));
      std::vector<Tensor> out;
      int64_t at = 0;
      for (const Tensor& x : c.inputs) {
        std::vector<int64_t> b(size_t(x.rank()), 0), e(x.shape().begin(), x.shape().end());
        b[size_t(axis)] = at;
        e[size_t(axis)] = at + x.shape()[size_t(axis)];
        at = e[size_t(axis)];
        out.push_back(slice(c.cotangents[0], b, e));
      }
      return out;
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      int64_t axis = axis_attr(n.attrs, out[0].shape.size()), at = 0;
      for (const RefTensor* x : in) {
        std::vector<int64_t> b(x->shape.size(), 0);
        b[size_t(axis)] = at;
        at += x->shape[size_t(axis)];
        window_copy(make_window(x->shape, out[0].shape, b), const_cast<double*>(x->data.data()), out[0].data.data(), true);
      }
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      int axis = int(axis_attr(ctx.node.attrs, ctx.out_type().shape.size()));
      std::vector<dnnl::memory::desc> srcs;
      std::vector<DnnlKernel::Arg> args;
      for (size_t i = 0; i < ctx.in.size(); ++i) {
        srcs.push_back(dense_desc(ctx.in_types[i].shape, ctx.in_types[i].dtype));
        args.push_back({DNNL_ARG_MULTIPLE_SRC + int(i), srcs.back(), ctx.in[i]});
      }
      auto dst = dense_desc(ctx.out_type().shape, ctx.out_type().dtype);
      dnnl::concat::primitive_desc pd(dst, axis, srcs, ctx.engine, dnnl_attr());
      args.push_back({DNNL_ARG_DST, dst, ctx.out[0]});
      return std::make_unique<DnnlKernel>(dnnl::concat(pd), pd, args, ctx.engine, ctx.workspace);
    };
    d.tests = {tcase({{2, 3}, {4, 3}}, {{"axis", int64_t(0)}}), tcase({{2, 3}, {2, 1}, {2, 2}}, {{"axis", int64_t(1)}}),
               tcase({{2, 2, 3}, {2, 1, 3}}, {{"axis", int64_t(1)}}), tcase({{2, 3}, {2, 2}}, {{"axis", int64_t(-1)}})};
    r.add(std::move(d));
  }
  {
    OpDef d;
    d.name = "pad";
    d.attrs = {{"before", AttrKind::Ints, std::nullopt}, {"after", AttrKind::Ints, std::nullopt}};
    d.shape = pad_rule;
    d.grad = [](const GradCtx& c) {
      const auto& b = attr_ints(c.attrs, "before");
      std::vector<int64_t> e;
      for (size_t i = 0; i < b.size(); ++i) e.push_back(b[i] + c.inputs[0].shape()[i]);
      return std::vector<Tensor>{slice(c.cotangents[0], b, e)};
    };
    d.reference = [](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
      std::fill(out[0].data.begin(), out[0].data.end(), 0.0);
      auto w = make_window(in[0]->shape, out[0].shape, attr_ints(n.attrs, "before"));
      window_copy(w, const_cast<double*>(in[0]->data.data()), out[0].data.data(), true);
    };
    d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
      float* x = static_cast<float*>(ctx.in[0]);  // only read: window_copy into the output
      float* y = ctx.out_f32();
      auto w = make_window(ctx.in_types[0].shape, ctx.out_type().shape, attr_ints(ctx.node.attrs, "before"));
      int64_t n = ctx.out_type().numel();
      return std::make_unique<LoopKernel>([=] {
        std::fill(y, y + n, 0.f);
        window_copy(w, x, y, true);
      });
    };
    auto pd = [](std::vector<int64_t> b, std::vector<int64_t> a) { return Attrs{{"before", b}, {"after", a}}; };
    d.tests = {tcase({{2, 3}}, pd({1, 0}, {0, 2})), tcase({{2, 3, 4}}, pd({0, 1, 1}, {1, 1, 0}))};
    r.add(std::move(d));
  }
}

}  // namespace metagrad
