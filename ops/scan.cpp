// The loop op `scan`: its signature rule, the f64 reference, the loop kernel (the body compiled
// once as an executable of its own, run trip-count times) and the builder. Its derivative is in
// ops/scan_grad.cpp.
#include "ops/scan.h"

#include <fmt/format.h>

#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/param_store.h"
#include "metagrad/scan.h"
#include "ops/families.h"
#include "ops/scan_carry.h"
#include "runtime/kernel.h"

namespace metagrad {

ScanSig scan_sig(const Attrs& a, size_t num_inputs, const Graph& body) {
  ScanSig s;
  s.length = attr_int(a, "length");
  s.nc = size_t(attr_int(a, "num_carry"));
  s.nx = size_t(attr_int(a, "num_xs"));
  s.reverse = attr_int(a, "reverse") != 0;
  s.save = attr_int(a, "save_carries") != 0;
  s.save_every = attr_int(a, "save_every");
  s.checkpoint = attr_int(a, "checkpoint");
  s.slots = attr_int(a, "slots");
  s.na = size_t(std::max<int64_t>(0, attr_int(a, "num_advance")));
  if (s.length < 1) throw ShapeError(fmt::format("scan: length {} must be at least 1", s.length));
  if (attr_int(a, "num_carry") < 0 || attr_int(a, "num_xs") < 0 || s.nc + s.nx > num_inputs)
    throw ShapeError(fmt::format("scan: num_carry {} and num_xs {} do not fit {} inputs", s.nc, s.nx, num_inputs));
  s.nk = num_inputs - s.nc - s.nx;
  if (s.save_every < 1 || (s.save_every > 1 && !s.save))
    throw ShapeError(fmt::format("scan: save_every {} needs save_carries and must be at least 1", s.save_every));
  if (s.na > s.nx || (s.na > 0) != (s.checkpoint == 1 || s.checkpoint == 2) || (s.na > 0 && s.slots < 1))
    throw ShapeError(fmt::format("scan: checkpoint {} with {} slots and num_advance {} (of {} slices) is not a checkpointed loop",
                                 s.checkpoint, s.slots, s.na, s.nx));
  if (body.outputs().size() < s.nc + s.na)
    throw ShapeError(fmt::format("scan: the body has {} outputs, fewer than its {} carries and {} advance outputs",
                                 body.outputs().size(), s.nc, s.na));
  s.ny = body.outputs().size() - s.nc - s.na;
  for (const Node& n : body.nodes())
    if (n.kind == NodeKind::Input) s.body_inputs.push_back(n.id);
  return s;
}

int64_t scan_saved_rows(int64_t length, int64_t every) { return (length + every - 1) / every; }

// Row order is the store-all output's (loop index t); the kept iterations are the segment starts
// in the order the loop runs them (j = 0, k, 2k, ...), which for a reverse loop are t = length-1-j.
int64_t scan_saved_row(const ScanSig& s, int64_t t) {
  const int64_t j = s.reverse ? s.length - 1 - t : t;
  if (j % s.save_every != 0) return -1;
  return s.reverse ? scan_saved_rows(s.length, s.save_every) - 1 - j / s.save_every : j / s.save_every;
}

int64_t scan_checkpoint_row(const ScanSig& s, int64_t seg) {
  if (s.checkpoint != 1) return 0;  // revolve: its one checkpoint, the initial carries, unstacked
  return s.reverse ? seg : scan_saved_rows(s.length, s.slots) - 1 - seg;
}

std::vector<std::string> scan_invariant_names(const Graph& body, const ScanSig& s) {
  std::vector<std::string> names;
  for (size_t i = s.nc + s.nx; i < s.body_inputs.size(); ++i) names.push_back(body.node(s.body_inputs[i]).name);
  return names;
}

namespace {

// The leading dimension of a checkpointed loop's advance slices (every-k: the forward's segment
// starts), or 0 when they are unstacked (revolve: the forward's initial carries).
int64_t checkpoint_rows(const ScanSig& s) { return s.checkpoint == 1 ? scan_saved_rows(s.length, s.slots) : 0; }

std::vector<TensorType> scan_shape(const std::vector<TensorType>& in, const Attrs& a, const Graph& body) {
  ScanSig s = scan_sig(a, in.size(), body);
  if (s.body_inputs.size() != in.size())
    throw ShapeError(fmt::format("scan: the body has {} inputs, the loop passes {} ({} carries, {} slices, {} invariants)",
                                 s.body_inputs.size(), in.size(), s.nc, s.nx, s.nk));
  for (const Node& n : body.nodes())
    if (n.kind == NodeKind::Parameter)
      throw ShapeError(fmt::format("scan: the body holds parameter \"{}\"; pass it as a loop invariant", n.name));
  if (!body.updates().empty()) throw ShapeError("scan: the body has updates");
  for (size_t i = 0; i < in.size(); ++i) {
    TensorType want = in[i];
    const char* what = i < s.nc ? "carry" : i < s.nc + s.nx ? "slice" : "invariant";
    const int64_t rows = i >= s.nc + s.na ? s.length : checkpoint_rows(s);
    if (i >= s.nc && i < s.nc + s.nx && rows > 0) {
      if (want.shape.empty() || want.shape[0] != rows)
        throw ShapeError(fmt::format("scan: stacked input {} is {}, its leading dimension must be {} {}", i - s.nc,
                                     type_str(want), i >= s.nc + s.na ? "the length" : "the checkpoint count", rows));
      want.shape.erase(want.shape.begin());
    }
    const TensorType& got = body.node(s.body_inputs[i]).type();
    if (got != want)
      throw ShapeError(fmt::format("scan: body input {} ({} \"{}\") is {}, the loop passes {}", i, what,
                                   body.node(s.body_inputs[i]).name, type_str(got), type_str(want)));
  }
  for (size_t k = 0; k < s.na; ++k) {
    const TensorType& got = body.type(body.outputs()[s.nc + s.ny + k].value);
    const TensorType& carry = body.node(s.body_inputs[s.nc + k]).type();
    if (got != carry)
      throw ShapeError(fmt::format("scan: advance output {} is {}, but the carry it recomputes is {}", k, type_str(got),
                                   type_str(carry)));
  }
  std::vector<TensorType> out;
  for (size_t i = 0; i < s.nc; ++i) {
    const TensorType& got = body.type(body.outputs()[i].value);
    if (got != in[i])
      throw ShapeError(fmt::format("scan: body output {} (\"{}\") is {}, but carry {} is {}", i, body.outputs()[i].name,
                                   type_str(got), i, type_str(in[i])));
    out.push_back(got);
  }
  for (size_t k = 0; k < s.ny; ++k) {
    TensorType t = body.type(body.outputs()[s.nc + k].value);
    t.shape.insert(t.shape.begin(), s.length);
    out.push_back(t);
  }
  if (s.save)
    for (size_t i = 0; i < s.nc; ++i) {
      TensorType t = in[i];
      t.shape.insert(t.shape.begin(), scan_saved_rows(s.length, s.save_every));
      out.push_back(t);
    }
  return out;
}

// f64 reference: the body's own reference evaluation, once per iteration.
void scan_reference(const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
  const Graph& body = *n.body;
  ScanSig s = scan_sig(n.attrs, in.size(), body);
  std::vector<Value> fetch;
  for (const auto& o : body.outputs()) fetch.push_back(o.value);
  RefValues feeds;
  for (size_t i = 0; i < in.size(); ++i)
    if (i < s.nc || i >= s.nc + s.nx) feeds[body.node(s.body_inputs[i]).name] = *in[i];
  auto slice = [&](size_t i, int64_t t) {
    RefTensor& x = feeds[body.node(s.body_inputs[i]).name];
    x.shape = body.node(s.body_inputs[i]).type().shape;
    const size_t m = size_t(num_elements(x.shape));
    x.data.assign(in[i]->data.begin() + ptrdiff_t(size_t(t) * m), in[i]->data.begin() + ptrdiff_t(size_t(t + 1) * m));
  };
  // A checkpointed loop: the forward carries it reads, every one of them (the reference need not
  // save memory), by the advance outputs from its checkpoints (every-k: each segment from its
  // saved start; revolve: all from the initial carries); forward step j is at t = j when this
  // loop runs in reverse, and the forward ran the other way.
  std::vector<std::vector<RefTensor>> states;
  if (s.na > 0) {
    std::vector<Value> adv;
    for (size_t k = 0; k < s.na; ++k) adv.push_back(body.outputs()[s.nc + s.ny + k].value);
    const int64_t rows = checkpoint_rows(s);
    auto checkpoint = [&](int64_t seg) {
      std::vector<RefTensor> c;
      for (size_t k = 0; k < s.na; ++k) {
        if (rows == 0) {
          c.push_back(*in[s.nc + k]);
          continue;
        }
        RefTensor r;
        r.shape = body.node(s.body_inputs[s.nc + k]).type().shape;
        const size_t m = size_t(num_elements(r.shape)), row = size_t(scan_checkpoint_row(s, seg));
        r.data.assign(in[s.nc + k]->data.begin() + ptrdiff_t(row * m), in[s.nc + k]->data.begin() + ptrdiff_t((row + 1) * m));
        c.push_back(std::move(r));
      }
      return c;
    };
    std::vector<RefTensor> cur = checkpoint(0);
    for (int64_t j = 0; j < s.length; ++j) {
      if (rows > 0 && j > 0 && j % s.slots == 0) cur = checkpoint(j / s.slots);
      states.push_back(cur);
      if (j + 1 == s.length) break;
      const int64_t t = s.reverse ? j : s.length - 1 - j;
      for (size_t k = 0; k < s.na; ++k) feeds[body.node(s.body_inputs[s.nc + k]).name] = cur[k];
      for (size_t i = s.nc + s.na; i < s.nc + s.nx; ++i) slice(i, t);
      cur = reference_eval(body, adv, feeds);
    }
  }
  for (int64_t step = 0; step < s.length; ++step) {
    const int64_t t = s.reverse ? s.length - 1 - step : step;
    for (size_t k = 0; k < s.na; ++k) feeds[body.node(s.body_inputs[s.nc + k]).name] = states[size_t(s.length - 1 - step)][k];
    for (size_t i = s.nc + s.na; i < s.nc + s.nx; ++i) {
      slice(i, t);
    }
    const int64_t row = s.save ? scan_saved_row(s, t) : -1;
    if (row >= 0)
      for (size_t i = 0; i < s.nc; ++i) {
        const auto& c = feeds[body.node(s.body_inputs[i]).name].data;
        std::copy(c.begin(), c.end(), out[s.nc + s.ny + i].data.begin() + ptrdiff_t(size_t(row) * c.size()));
      }
    std::vector<RefTensor> r = reference_eval(body, fetch, feeds);
    for (size_t k = 0; k < s.ny; ++k) {
      const auto& y = r[s.nc + k].data;
      std::copy(y.begin(), y.end(), out[s.nc + k].data.begin() + ptrdiff_t(size_t(t) * y.size()));
    }
    for (size_t i = 0; i < s.nc; ++i) feeds[body.node(s.body_inputs[i]).name].data = std::move(r[i].data);
  }
  for (size_t i = 0; i < s.nc; ++i) out[i].data = feeds[body.node(s.body_inputs[i]).name].data;
}

// The loop kernel. The body is compiled once, at the loop's compile time, into an executable of
// its own (loop_body_options: the invariants read in place, its plan in the kernel's region of
// the arena after the carry staging); a run feeds the initial carries, then per iteration feeds
// the slices and runs the body, the carry passed from its outputs back to its inputs
// (ops/scan_carry.h).
class ScanKernel final : public Kernel {
 public:
  explicit ScanKernel(const KernelCtx& ctx)
      : sig_(scan_sig(ctx.node.attrs, ctx.in.size(), *ctx.node.body)),
        region_(static_cast<char*>(ctx.scratch), ctx.scratch_bytes),
        carry_(ctx, sig_, false, region_),
        body_(std::make_unique<Executable>(*ctx.node.body, store_, std::vector<std::string>{}, options(ctx))) {
    carry_.attach(ctx, *body_);
  }

  void run(dnnl::stream&) override {
    for (int64_t step = 0; step < sig_.length; ++step) {
      const size_t t = size_t(sig_.reverse ? sig_.length - 1 - step : step);
      carry_.feeds().feed_slices(sig_.nc, t);
      carry_.step(t, step == 0);
    }
    carry_.finish();
  }
  std::string impl() const override { return fmt::format("scan:{}x{}", sig_.length, body_->kernel_count()); }

 private:
  CompileOptions options(const KernelCtx& ctx) const {
    CompileOptions o = loop_body_options(ctx, sig_, region_);
    carry_.bind_carries(o);
    return o;
  }

  ScanSig sig_;
  ParamStore store_;  // the body has no parameters; Executable wants a store
  Region region_;
  LoopCarry carry_;
  std::unique_ptr<Executable> body_;
};

// A node of a test body, built from the registry under construction: the builder functions
// would ask OpRegistry::get(), which is being initialised by this very registration.
Value test_op(Graph& b, const OpRegistry& r, const std::string& name, std::vector<Value> ins) {
  Node n;
  n.op = r.find(name);
  n.attrs = normalize_attrs(*n.op, {});
  std::vector<TensorType> types;
  for (Value v : ins) types.push_back(b.type(v));
  n.outputs = n.op->shape(types, n.attrs);
  n.inputs = std::move(ins);
  return {b.append(std::move(n)), 0};
}

// A small loop for the registry's checks: c' = tanh(c * k + x) (times d, with d' = d + sin(c)
// when there are two carries), y = c * c.
std::shared_ptr<const Graph> test_body(const OpRegistry& r, bool two_carries) {
  auto b = std::make_shared<Graph>();
  TensorType t{DType::f32, {3}};
  Value c = b->add_input("c", t);
  Value d = two_carries ? b->add_input("d", t) : Value{};
  Value x = b->add_input("x", t), k = b->add_input("k", t);
  Value next = test_op(*b, r, "tanh", {test_op(*b, r, "add", {test_op(*b, r, "mul", {c, k}), x})});
  if (two_carries) {
    b->add_output("c'", test_op(*b, r, "mul", {next, d}));
    b->add_output("d'", test_op(*b, r, "add", {d, test_op(*b, r, "sin", {c})}));
  } else {
    b->add_output("c'", next);
  }
  b->add_output("y", test_op(*b, r, "mul", {c, c}));
  return b;
}

}  // namespace

void register_scan_ops(OpRegistry& r) {
  OpDef def;
  def.name = "scan";
  def.num_inputs = -1;
  def.attrs = {{"length", AttrKind::Int, std::nullopt},
               {"num_carry", AttrKind::Int, std::nullopt},
               {"num_xs", AttrKind::Int, int64_t(0)},
               {"reverse", AttrKind::Int, int64_t(0)},
               {"save_carries", AttrKind::Int, int64_t(0)},
               {"save_every", AttrKind::Int, int64_t(1)},
               {"checkpoint", AttrKind::Int, int64_t(0)},
               {"slots", AttrKind::Int, int64_t(0)},
               {"num_advance", AttrKind::Int, int64_t(0)}};
  def.body_shape = scan_shape;
  def.grad = scan_grad;
  def.reference = scan_reference;
  def.kernel_scratch = scan_kernel_scratch;
  def.kernel = [](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
    if (attr_int(ctx.node.attrs, "num_advance") > 0) return make_checkpointed_scan_kernel(ctx);
    return std::make_unique<ScanKernel>(ctx);
  };
  OpTestCase one;
  one.inputs = {{DType::f32, {3}}, {DType::f32, {4, 3}}, {DType::f32, {3}}};
  one.attrs = {{"length", int64_t(4)}, {"num_carry", int64_t(1)}, {"num_xs", int64_t(1)}};
  one.lo = -1.0, one.hi = 1.0, one.body = test_body(r, false), one.note = "one carry, forward";
  OpTestCase two;
  two.inputs = {{DType::f32, {3}}, {DType::f32, {3}}, {DType::f32, {3, 3}}, {DType::f32, {3}}};
  two.attrs = {{"length", int64_t(3)}, {"num_carry", int64_t(2)}, {"num_xs", int64_t(1)}, {"reverse", int64_t(1)},
               {"save_carries", int64_t(1)}};
  two.lo = -1.0, two.hi = 1.0, two.body = test_body(r, true), two.note = "two carries, reverse, saved carries";
  OpTestCase every = one;
  every.inputs = {{DType::f32, {3}}, {DType::f32, {5, 3}}, {DType::f32, {3}}};
  every.attrs = {{"length", int64_t(5)}, {"num_carry", int64_t(1)}, {"num_xs", int64_t(1)}, {"reverse", int64_t(1)},
                 {"save_carries", int64_t(1)}, {"save_every", int64_t(2)}};
  every.differentiable = {false, false, false};  // made at compile time, after autodiff (scan_grad refuses it)
  every.note = "one carry, reverse, every 2nd carry saved";
  def.tests = {one, two, every};
  r.add(std::move(def));
}

ScanResult scan(int64_t length, const std::vector<Tensor>& init, const std::vector<Tensor>& xs,
                const std::vector<Tensor>& consts, const ScanBody& body, bool reverse) {
  Graph* outer = nullptr;
  for (const auto* list : {&init, &xs, &consts})
    for (const Tensor& t : *list) {
      if (outer && &t.graph() != outer) throw GraphError("scan: the loop's inputs come from different graphs");
      outer = &t.graph();
    }
  if (!outer) throw GraphError("scan: a loop needs at least one carry, stacked input or invariant");
  auto b = std::make_shared<Graph>();
  std::vector<Tensor> bc, bx, bk;
  for (size_t i = 0; i < init.size(); ++i) bc.push_back(input(*b, fmt::format("c{}", i), init[i].shape(), init[i].dtype()));
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i].rank() == 0 || xs[i].dim(0) != length)
      throw ShapeError(fmt::format("scan: stacked input {} has shape {}, its leading dimension must be the length {}", i,
                                   shape_str(xs[i].shape()), length));
    Shape s(xs[i].shape().begin() + 1, xs[i].shape().end());
    bx.push_back(input(*b, fmt::format("x{}", i), s, xs[i].dtype()));
  }
  for (size_t i = 0; i < consts.size(); ++i) bk.push_back(input(*b, fmt::format("k{}", i), consts[i].shape(), consts[i].dtype()));
  ScanStep step = body(bc, bx, bk);
  if (step.carries.size() != init.size())
    throw ShapeError(fmt::format("scan: the body returned {} carries for {}", step.carries.size(), init.size()));
  auto add_out = [&](const std::string& name, const Tensor& t) {
    if (!t.defined() || &t.graph() != b.get())
      throw GraphError(fmt::format("scan: body output \"{}\" is not a value of the body graph (read enclosing values through consts)", name));
    b->add_output(name, t.value());
  };
  for (size_t i = 0; i < step.carries.size(); ++i) add_out(fmt::format("c{}'", i), step.carries[i]);
  for (size_t i = 0; i < step.ys.size(); ++i) add_out(fmt::format("y{}", i), step.ys[i]);
  std::vector<Value> ins;
  for (const auto* list : {&init, &xs, &consts})
    for (const Tensor& t : *list) ins.push_back(t.value());
  Attrs a{{"length", length}, {"num_carry", int64_t(init.size())}, {"num_xs", int64_t(xs.size())},
          {"reverse", int64_t(reverse)}};
  std::vector<Value> outs = outer->add_op_multi("scan", std::move(ins), std::move(a), "", std::move(b));
  ScanResult r;
  for (size_t i = 0; i < init.size(); ++i) r.carries.emplace_back(outer, outs[i]);
  for (size_t i = init.size(); i < outs.size(); ++i) r.ys.emplace_back(outer, outs[i]);
  return r;
}

}  // namespace metagrad
