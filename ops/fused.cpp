// fused_elementwise: a chain of elementwise ops run as one kernel that streams each block of
// the output through every op while it is in cache. Produced by passes/fuse_elementwise.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <sstream>

#include "graph/op_def.h"
#include "metagrad/error.h"
#include "ops/broadcast.h"
#include "ops/families.h"
#include "ops/op_helpers.h"
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

// The iteration shape every operand broadcasts to (the output shape of fused_elementwise).
Shape iteration_shape(const std::vector<TensorType>& in, const Attrs& attrs) {
  Shape out = attr_ints(attrs, "shape");
  for (const auto& t : in) {
    if (t.dtype != DType::f32) throw ShapeError("fused_elementwise inputs must be f32");
    if (broadcast_shapes(t.shape, out) != out)
      throw ShapeError(fmt::format("input {} does not broadcast to {}", shape_str(t.shape), shape_str(out)));
  }
  decode(attrs, in.size());
  return out;
}

std::vector<TensorType> fused_shape(const std::vector<TensorType>& in, const Attrs& attrs) {
  return {{DType::f32, iteration_shape(in, attrs)}};
}

std::vector<TensorType> fused_reduce_shape(const std::vector<TensorType>& in, const Attrs& attrs) {
  Shape it = iteration_shape(in, attrs);
  auto axes = canonical_axes(attr_ints(attrs, "axes"), it.size());
  return {{DType::f32, reduced_shape(it, axes, attr_int(attrs, "keepdims") != 0)}};
}

Node instruction_node(const Program& p, size_t j) {
  Node n;
  n.kind = NodeKind::Op;
  n.op = p.ops[j];
  if (!n.op->eltwise_param.empty()) n.attrs[n.op->eltwise_param] = p.params[j];
  return n;
}

// The program's result over the iteration shape.
RefTensor run_program_reference(const Node& node, const std::vector<const RefTensor*>& in) {
  Program p = decode(node.attrs, in.size());
  const Shape shape = attr_ints(node.attrs, "shape");
  std::vector<RefTensor> results(p.ops.size());
  for (size_t j = 0; j < p.ops.size(); ++j) {
    std::vector<const RefTensor*> args;
    for (int64_t a : p.args[j]) args.push_back(a >= 0 ? in[size_t(a)] : &results[size_t(-a - 1)]);
    std::vector<RefTensor> r(1);
    r[0].shape = shape;
    r[0].data.assign(size_t(num_elements(shape)), 0.0);
    p.ops[j]->reference(instruction_node(p, j), args, r);
    results[j] = std::move(r[0]);
  }
  return std::move(results.back());
}

void fused_reference(const Node& node, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
  out[0] = run_program_reference(node, in);
}

void fused_reduce_reference(const Node& node, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
  RefTensor full = run_program_reference(node, in);
  reduce_reference(full, canonical_axes(attr_ints(node.attrs, "axes"), full.shape.size()), attr_int(node.attrs, "mean") != 0, out[0]);
}

// The program compiled for the kernels: external operands (full, scalar or gathered broadcast)
// and instructions, evaluated one block of the iteration space at a time in per-thread registers.
class BlockProgram {
 public:
  static constexpr int64_t kParallelMin = 1 << 16;

  BlockProgram(const KernelCtx& ctx, const Shape& shape) : shape_(shape), total_(num_elements(shape)) {
    Program p = decode(ctx.node.attrs, ctx.in.size());
    const size_t n_ext = ctx.in.size(), n_ins = p.ops.size();
    // Large kernels split their blocks over the OpenMP threads oneDNN also runs on; each thread
    // has its own block registers.
    threads_ = total_ >= kParallelMin ? std::max(1, omp_get_max_threads()) : 1;
    regs_per_thread_ = (n_ext + n_ins) * size_t(kBlock);
    // The block registers live in the executable's shared workspace: kernels run one at a time,
    // and hundreds of fused kernels each owning theirs cost tens of MiB of resident memory.
    ctx.workspace.request(size_t(threads_) * regs_per_thread_ * sizeof(float),
                          [this](char* base) { regs_ = reinterpret_cast<float*>(base); });
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

  int64_t total() const { return total_; }
  int64_t blocks() const { return (total_ + kBlock - 1) / kBlock; }
  int threads() const { return threads_; }
  const std::string& names() const { return names_; }

  // Evaluates elements [block * kBlock, + n) into dst (n = the block's length).
  void eval_block(int64_t block, int thread, float* dst) {
    const size_t n_ext = ext_.size();
    const int64_t start = block * kBlock, n = std::min(kBlock, total_ - start);
    float* regs = regs_ + size_t(thread) * regs_per_thread_;
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
      float* out = j + 1 == code_.size() ? dst : regs + (n_ext + j) * kBlock;
      code_[j].fn(n, args, out, code_[j].param);
    }
  }

  // Runs body(first_block, end_block, thread) over the blocks, split over the threads.
  template <class F>
  void for_blocks(F&& body) {
    if (threads_ == 1) return body(int64_t(0), blocks(), 0);
#pragma omp parallel num_threads(threads_)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t per = (blocks() + nt - 1) / nt;
      body(std::min(blocks(), t * per), std::min(blocks(), (t + 1) * per), t);
    }
  }

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
  Shape shape_;
  int64_t total_ = 0;
  int threads_ = 1;
  size_t regs_per_thread_ = 0;
  float* regs_ = nullptr;  // in the workspace: [thread][operand or instruction][kBlock]
  std::vector<const float*> cur_;  // per thread: each external operand's current block
  std::vector<Ext> ext_;
  std::vector<Instr> code_;
  std::vector<std::vector<int64_t>> arg_refs_;
  std::string names_;
};

class FusedKernel final : public Kernel {
 public:
  explicit FusedKernel(const KernelCtx& ctx) : out_(ctx.out_f32()), program_(ctx, ctx.out_type().shape) {}

  void run(dnnl::stream&) override {
    program_.for_blocks([this](int64_t first, int64_t end, int thread) {
      for (int64_t b = first; b < end; ++b) program_.eval_block(b, thread, out_ + b * kBlock);
    });
  }
  std::string impl() const override { return "fused:" + program_.names(); }

 private:
  float* out_;
  BlockProgram program_;
};

// The program's values are summed into the output as each block is made, never stored: per
// thread in double accumulators, runs that map to one output element summed in one go.
class FusedReduceKernel final : public Kernel {
 public:
  explicit FusedReduceKernel(const KernelCtx& ctx)
      : out_(ctx.out_f32()), program_(ctx, attr_ints(ctx.node.attrs, "shape")) {
    const Shape shape = attr_ints(ctx.node.attrs, "shape");
    auto axes = canonical_axes(attr_ints(ctx.node.attrs, "axes"), shape.size());
    n_out_ = ctx.out_type().numel();
    scale_ = attr_int(ctx.node.attrs, "mean") != 0 ? double(n_out_) / double(std::max<int64_t>(1, program_.total())) : 1.0;
    iter_ = shape;
    std::vector<std::vector<int64_t>> st{broadcast_strides(keep_shape(shape, axes), shape), broadcast_strides(shape, shape)};
    coalesce_axes(iter_, st);
    out_strides_ = st[0];
    acc_.assign(size_t(program_.threads()) * size_t(n_out_), 0.0);
    block_.assign(size_t(program_.threads()) * size_t(kBlock), 0.0f);
  }

  void run(dnnl::stream&) override {
    std::fill(acc_.begin(), acc_.end(), 0.0);
    program_.for_blocks([this](int64_t first, int64_t end, int thread) {
      float* buf = block_.data() + size_t(thread) * size_t(kBlock);
      double* acc = acc_.data() + size_t(thread) * size_t(n_out_);
      for (int64_t b = first; b < end; ++b) {
        program_.eval_block(b, thread, buf);
        accumulate(b * kBlock, std::min(kBlock, program_.total() - b * kBlock), buf, acc);
      }
    });
    for (int64_t o = 0; o < n_out_; ++o) {
      double total = 0;
      for (int t = 0; t < program_.threads(); ++t) total += acc_[size_t(t) * size_t(n_out_) + size_t(o)];
      out_[o] = float(total * scale_);
    }
  }
  std::string impl() const override { return "fused-reduce:" + program_.names(); }

 private:
  // Adds values of elements [start, start + n) to their output elements.
  void accumulate(int64_t start, int64_t n, const float* v, double* acc) const {
    const size_t rank = iter_.size(), inner = rank - 1;
    int64_t idx[kMaxRank] = {};
    for (size_t k = rank, rest = size_t(start); k-- > 0;) {
      idx[k] = int64_t(rest % size_t(iter_[k]));
      rest /= size_t(iter_[k]);
    }
    for (int64_t i = 0; i < n;) {
      int64_t o = 0;
      for (size_t k = 0; k < rank; ++k) o += idx[k] * out_strides_[k];
      const int64_t run = std::min(iter_[inner] - idx[inner], n - i);
      if (out_strides_[inner] == 0) {
        acc[o] += sum_run(v + i, run);
      } else {
        for (int64_t j = 0; j < run; ++j) acc[o + j * out_strides_[inner]] += v[i + j];
      }
      i += run;
      idx[inner] += run;
      for (size_t k = inner; k > 0 && idx[k] == iter_[k]; --k) idx[k] = 0, ++idx[k - 1];
    }
  }

  float* out_;
  BlockProgram program_;
  int64_t n_out_ = 0;
  double scale_ = 1.0;
  Shape iter_;                     // the iteration shape with axes coalesced
  std::vector<int64_t> out_strides_;  // output element strides over iter_ (0 on reduced axes)
  std::vector<double> acc_;        // per thread, one accumulator per output element
  std::vector<float> block_;       // per thread, one block of program values
};

// A test case of fused_elementwise (or, with `axes`, fused_reduce): a program over inputs of
// the given shapes, every instruction's param 0.
struct FusedCase {
  std::vector<Shape> inputs;
  std::string ops;
  std::vector<int64_t> args;
  Shape shape;                  // the iteration shape
  std::vector<int64_t> axes = {};  // fused_reduce only
  bool keepdims = false, mean = false;
};

OpTestCase fused_case(const FusedCase& f) {
  OpTestCase tc;
  for (const Shape& s : f.inputs) tc.inputs.push_back({DType::f32, s});
  tc.attrs = {{"ops", f.ops},
              {"args", f.args},
              {"params", std::vector<double>(split_ops(f.ops).size(), 0.0)},
              {"shape", f.shape}};
  if (!f.axes.empty()) {
    tc.attrs["axes"] = f.axes;
    tc.attrs["keepdims"] = int64_t(f.keepdims);
    tc.attrs["mean"] = int64_t(f.mean);
  }
  return tc;
}

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
  // relu(a * b + c) with a broadcast row, a scalar and a full operand; and a block-crossing size.
  d.tests.push_back(fused_case({.inputs = {{3, 4}, {4}, {}}, .ops = "mul,add,relu", .args = {0, 1, -1, 2, -2}, .shape = {3, 4}}));
  d.tests.push_back(fused_case({.inputs = {{700}, {1}, {700}}, .ops = "sub,square,mul", .args = {0, 2, -1, -2, 1}, .shape = {700}}));
  d.tests.push_back(
      fused_case({.inputs = {{2, 1, 5}, {3, 1}, {2, 3, 5}}, .ops = "add,tanh,mul", .args = {0, 1, -1, -2, 2}, .shape = {2, 3, 5}}));
  // Large enough to split its blocks over threads (kernel against reference only: finite
  // differences over 70k elements would dominate the suite).
  OpTestCase big = fused_case(
      {.inputs = {{2, 64, 1, 550}, {64, 1, 1}, {}}, .ops = "mul,add,relu", .args = {0, 1, -1, 2, -2}, .shape = {2, 64, 1, 550}});
  big.differentiable = {false, false, false};
  d.tests.push_back(big);
  // The accurate transcendental steps (ops/accurate_math.h) over a wide range: softplus(a * b) - log(c).
  OpTestCase wide = fused_case(
      {.inputs = {{4, 5}, {5}, {4, 5}}, .ops = "mul,softplus,log,sub", .args = {0, 1, -1, 2, -2, -3}, .shape = {4, 5}});
  wide.lo = 0.5, wide.hi = 8.0;
  d.tests.push_back(wide);
  r.add(std::move(d));

  OpDef red;
  red.name = "fused_reduce";
  red.num_inputs = -1;
  red.attrs = {{"ops", AttrKind::String, std::nullopt},
               {"args", AttrKind::Ints, std::nullopt},
               {"params", AttrKind::Floats, std::nullopt},
               {"shape", AttrKind::Ints, std::nullopt},
               {"axes", AttrKind::Ints, std::nullopt},
               {"keepdims", AttrKind::Int, AttrValue(int64_t(0))},
               {"mean", AttrKind::Int, AttrValue(int64_t(0))}};
  red.shape = fused_reduce_shape;
  red.grad_kind = GradKind::Undefined;
  red.reference = fused_reduce_reference;
  red.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> { return std::make_unique<FusedReduceKernel>(ctx); };
  // batch norm's sum(dy * x_hat) over all but channels; a mean over the inner axis; a middle axis.
  red.tests.push_back(fused_case({.inputs = {{3, 4, 5, 6}, {1, 4, 1, 1}},
                                  .ops = "mul,square",
                                  .args = {0, 1, -1},
                                  .shape = {3, 4, 5, 6},
                                  .axes = {0, 2, 3}}));
  red.tests.push_back(fused_case(
      {.inputs = {{3, 40}, {40}}, .ops = "sub,tanh", .args = {0, 1, -1}, .shape = {3, 40}, .axes = {1}, .keepdims = true, .mean = true}));
  red.tests.push_back(fused_case({.inputs = {{2, 3, 5}, {2, 1, 5}}, .ops = "mul", .args = {0, 1}, .shape = {2, 3, 5}, .axes = {1}}));
  // Large: blocks split over threads, runs crossing block edges (kernel against reference only).
  OpTestCase big_red = fused_case({.inputs = {{2, 64, 1, 550}, {64, 1, 1}},
                                   .ops = "mul,neg",
                                   .args = {0, 1, -1},
                                   .shape = {2, 64, 1, 550},
                                   .axes = {0, 2, 3},
                                   .keepdims = true});
  big_red.differentiable = {false, false};
  red.tests.push_back(big_red);
  r.add(std::move(red));
}

}  // namespace metagrad
