// fused_elementwise: a chain of elementwise ops run as one kernel that streams each block of
// the output through every op while it is in cache. Produced by passes/fuse_elementwise.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <sstream>

#include "graph/error.h"
#include "graph/op_def.h"
#include "ops/broadcast.h"
#include "ops/families.h"
#include "runtime/kernel.h"

namespace metagrad {

namespace {

constexpr int64_t kBlock = 512;

std::vector<std::string> split_ops(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

// A decoded program: instruction j applies ops[j] to args (>= 0: external input, < 0: the
// result of instruction -arg-1).
struct Program {
  std::vector<const OpDef*> ops;
  std::vector<std::vector<int64_t>> args;
  std::vector<double> params;
};

Program decode(const Attrs& attrs, size_t n_inputs) {
  Program p;
  auto names = split_ops(attr_string(attrs, "ops"));
  const auto& flat = attr_ints(attrs, "args");
  p.params = attr_floats(attrs, "params");
  if (names.empty() || p.params.size() != names.size())
    throw ShapeError("fused_elementwise: 'ops' and 'params' must have one entry per instruction");
  size_t at = 0;
  for (size_t j = 0; j < names.size(); ++j) {
    const OpDef& op = OpRegistry::get().at(names[j]);
    if (!op.eltwise_f32 || op.num_inputs < 1)
      throw ShapeError(fmt::format("fused_elementwise: op {} cannot be fused", names[j]));
    if (at + size_t(op.num_inputs) > flat.size()) throw ShapeError("fused_elementwise: 'args' too short");
    std::vector<int64_t> a(flat.begin() + long(at), flat.begin() + long(at) + op.num_inputs);
    for (int64_t v : a)
      if (v >= int64_t(n_inputs) || (v < 0 && -v - 1 >= int64_t(j)))
        throw ShapeError(fmt::format("fused_elementwise: instruction {} refers to a missing value {}", j, v));
    at += size_t(op.num_inputs);
    p.ops.push_back(&op);
    p.args.push_back(std::move(a));
  }
  if (at != flat.size()) throw ShapeError("fused_elementwise: 'args' too long");
  return p;
}

std::vector<TensorType> fused_shape(const std::vector<TensorType>& in, const Attrs& attrs) {
  Shape out = attr_ints(attrs, "shape");
  for (const auto& t : in) {
    if (t.dtype != DType::f32) throw ShapeError("fused_elementwise inputs must be f32");
    if (broadcast_shapes(t.shape, out) != out)
      throw ShapeError(fmt::format("input {} does not broadcast to {}", shape_str(t.shape), shape_str(out)));
  }
  decode(attrs, in.size());
  return {{DType::f32, out}};
}

Node instruction_node(const Program& p, size_t j) {
  Node n;
  n.kind = NodeKind::Op;
  n.op = p.ops[j];
  if (!n.op->eltwise_param.empty()) n.attrs[n.op->eltwise_param] = p.params[j];
  return n;
}

void fused_reference(const Node& node, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
  Program p = decode(node.attrs, in.size());
  std::vector<RefTensor> results(p.ops.size());
  for (size_t j = 0; j < p.ops.size(); ++j) {
    std::vector<const RefTensor*> args;
    for (int64_t a : p.args[j]) args.push_back(a >= 0 ? in[size_t(a)] : &results[size_t(-a - 1)]);
    std::vector<RefTensor> r(1);
    r[0].shape = out[0].shape;
    r[0].data.assign(out[0].data.size(), 0.0);
    p.ops[j]->reference(instruction_node(p, j), args, r);
    results[j] = std::move(r[0]);
  }
  out[0] = std::move(results.back());
}

class FusedKernel final : public Kernel {
 public:
  explicit FusedKernel(const KernelCtx& ctx) : out_(ctx.out_f32()) {
    Program p = decode(ctx.node.attrs, ctx.in.size());
    shape_ = ctx.out_type().shape;
    total_ = num_elements(shape_);
    const size_t n_ext = ctx.in.size(), n_ins = p.ops.size();
    // Large kernels split their blocks over the OpenMP threads oneDNN also runs on; each thread
    // has its own block registers.
    threads_ = total_ >= kParallelMin ? std::max(1, omp_get_max_threads()) : 1;
    regs_per_thread_ = (n_ext + n_ins) * size_t(kBlock);
    regs_.assign(size_t(threads_) * regs_per_thread_, 0.0f);
    for (size_t e = 0; e < n_ext; ++e) {
      Shape iter = shape_;
      std::vector<std::vector<int64_t>> st{broadcast_strides(ctx.in_types[e].shape, shape_), broadcast_strides(shape_, shape_)};
      coalesce_axes(iter, st);
      Ext x{ctx.in_f32(e), Ext::Full, st[0], iter};
      if (ctx.in_types[e].numel() == 1) x.kind = Ext::Scalar;
      else if (ctx.in_types[e].shape != shape_) x.kind = Ext::Gather;
      ext_.push_back(std::move(x));
    }
    for (size_t j = 0; j < n_ins; ++j) {
      Instr ins{p.ops[j]->eltwise_f32, float(p.params[j]), int(p.args[j].size())};
      code_.push_back(ins);
      arg_refs_.push_back(p.args[j]);
    }
    cur_.assign(size_t(threads_) * n_ext, nullptr);
    names_ = attr_string(ctx.node.attrs, "ops");
  }

  void run(dnnl::stream&) override {
    const int64_t blocks = (total_ + kBlock - 1) / kBlock;
    if (threads_ == 1) {
      for (int64_t b = 0; b < blocks; ++b) run_block(b, 0);
      return;
    }
#pragma omp parallel num_threads(threads_)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t per = (blocks + nt - 1) / nt;
      for (int64_t b = t * per; b < std::min(blocks, (t + 1) * per); ++b) run_block(b, t);
    }
  }

  void run_block(int64_t block, int thread) {
    const size_t n_ext = ext_.size();
    const int64_t start = block * kBlock, n = std::min(kBlock, total_ - start);
    float* regs = regs_.data() + size_t(thread) * regs_per_thread_;
    const float** cur = cur_.data() + size_t(thread) * n_ext;
    for (size_t e = 0; e < n_ext; ++e) {
      const Ext& x = ext_[e];
      float* buf = regs + e * kBlock;
      if (x.kind == Ext::Full) cur[e] = x.base + start;
      else if (x.kind == Ext::Scalar) std::fill(buf, buf + n, x.base[0]), cur[e] = buf;
      else gather_broadcast(x.base, x.strides, x.iter, start, n, buf), cur[e] = buf;
    }
    for (size_t j = 0; j < code_.size(); ++j) {
      const float* args[3] = {nullptr, nullptr, nullptr};
      for (int k = 0; k < code_[j].nargs; ++k) {
        int64_t a = arg_refs_[j][size_t(k)];
        args[k] = a >= 0 ? cur[size_t(a)] : regs + (n_ext + size_t(-a - 1)) * kBlock;
      }
      float* dst = j + 1 == code_.size() ? out_ + start : regs + (n_ext + j) * kBlock;
      code_[j].fn(n, args, dst, code_[j].param);
    }
  }
  std::string impl() const override { return "fused:" + names_; }

 private:
  struct Ext {
    const float* base;
    enum Kind { Full, Scalar, Gather } kind;
    std::vector<int64_t> strides;  // element strides of the input over `iter`
    Shape iter;                    // the output shape with axes coalesced
  };
  struct Instr {
    EltwiseFn fn;
    float param;
    int nargs;
  };
  float* out_;
  Shape shape_;
  int64_t total_ = 0;
  static constexpr int64_t kParallelMin = 1 << 16;
  int threads_ = 1;
  size_t regs_per_thread_ = 0;
  std::vector<float> regs_;
  std::vector<const float*> cur_;  // per thread: each external operand's current block
  std::vector<Ext> ext_;
  std::vector<Instr> code_;
  std::vector<std::vector<int64_t>> arg_refs_;
  std::string names_;
};

}  // namespace

void register_fused_ops(OpRegistry& r) {
  OpDef d;
  d.name = "fused_elementwise";
  d.num_inputs = -1;
  d.attrs = {{"ops", AttrKind::String, std::nullopt},
             {"args", AttrKind::Ints, std::nullopt},
             {"params", AttrKind::Floats, std::nullopt},
             {"shape", AttrKind::Ints, std::nullopt}};
  d.shape = fused_shape;
  // Fusion runs on graphs about to execute, after every derivative has been taken.
  d.grad_kind = GradKind::Undefined;
  d.reference = fused_reference;
  d.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> { return std::make_unique<FusedKernel>(ctx); };
  d.elementwise = true;
  d.inplace = true;  // each block is read before the same block of the output is written
  auto t = [](Shape a, Shape b, Shape c, std::string ops, std::vector<int64_t> args, std::vector<double> params,
              Shape out) {
    OpTestCase tc;
    tc.inputs = {{DType::f32, a}, {DType::f32, b}, {DType::f32, c}};
    tc.attrs = {{"ops", ops}, {"args", args}, {"params", params}, {"shape", out}};
    return tc;
  };
  // relu(a * b + c) with a broadcast row, a scalar and a full operand; and a block-crossing size.
  d.tests.push_back(t({3, 4}, {4}, {}, "mul,add,relu", {0, 1, -1, 2, -2}, {0, 0, 0}, {3, 4}));
  d.tests.push_back(t({700}, {1}, {700}, "sub,square,mul", {0, 2, -1, -2, 1}, {0, 0, 0}, {700}));
  d.tests.push_back(t({2, 1, 5}, {3, 1}, {2, 3, 5}, "add,tanh,mul", {0, 1, -1, -2, 2}, {0, 0, 0}, {2, 3, 5}));
  // Large enough to split its blocks over threads (kernel against reference only: finite
  // differences over 70k elements would dominate the suite).
  OpTestCase big = t({2, 64, 1, 550}, {64, 1, 1}, {}, "mul,add,relu", {0, 1, -1, 2, -2}, {0, 0, 0}, {2, 64, 1, 550});
  big.differentiable = {false, false, false};
  d.tests.push_back(big);
  r.add(std::move(d));
}

}  // namespace metagrad
