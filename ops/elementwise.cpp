// Binary elementwise ops with NumPy broadcasting, comparisons and `where`.
#include <cmath>

#include "metagrad/ops.h"
#include "ops/broadcast.h"
#include "ops/eltwise_math.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

Tensor add(const Tensor& a, const Tensor& b) { return apply("add", {a, b}); }
Tensor sub(const Tensor& a, const Tensor& b) { return apply("sub", {a, b}); }
Tensor mul(const Tensor& a, const Tensor& b) { return apply("mul", {a, b}); }
Tensor div(const Tensor& a, const Tensor& b) { return apply("div", {a, b}); }
Tensor pow(const Tensor& a, const Tensor& b) { return apply("pow", {a, b}); }
Tensor pow(const Tensor& a, double exponent) { return apply("pow", {a, scalar(a.graph(), exponent)}); }
Tensor maximum(const Tensor& a, const Tensor& b) { return apply("maximum", {a, b}); }
Tensor minimum(const Tensor& a, const Tensor& b) { return apply("minimum", {a, b}); }
Tensor equal(const Tensor& a, const Tensor& b) { return apply("equal", {a, b}); }
Tensor not_equal(const Tensor& a, const Tensor& b) { return apply("not_equal", {a, b}); }
Tensor less(const Tensor& a, const Tensor& b) { return apply("less", {a, b}); }
Tensor less_equal(const Tensor& a, const Tensor& b) { return apply("less_equal", {a, b}); }
Tensor greater(const Tensor& a, const Tensor& b) { return apply("greater", {a, b}); }
Tensor greater_equal(const Tensor& a, const Tensor& b) { return apply("greater_equal", {a, b}); }
Tensor where(const Tensor& c, const Tensor& a, const Tensor& b) { return apply("where", {c, a, b}); }

namespace {

std::vector<TensorType> broadcast_rule(const std::vector<TensorType>& in, const Attrs&) {
  Shape s = in[0].shape;
  for (const auto& t : in) {
    if (t.dtype != DType::f32) throw ShapeError("elementwise ops take f32 inputs, got " + type_str(t));
    s = broadcast_shapes(s, t.shape);
  }
  return {{DType::f32, s}};
}

// Cases every binary op is checked on: same shape, row and column broadcasts, scalars, rank 0.
// The kernels are IEEE arithmetic (or the C library's powf), so they are checked in ulps.
std::vector<OpTestCase> binary_cases(double lo, double hi) {
  std::vector<OpTestCase> cases{tcase({{2, 3}, {2, 3}}, {}, lo, hi), tcase({{3, 1}, {1, 4}}, {}, lo, hi),
                                tcase({{2, 3, 4}, {4}}, {}, lo, hi), tcase({{}, {2, 3}}, {}, lo, hi),
                                tcase({{}, {}}, {}, lo, hi)};
  for (OpTestCase& c : cases) c.kernel_ulp = kKernelUlp;
  return cases;
}

struct Binary {
  const char* name;
  double (*ref)(double, double);
  EltwiseFn fn;                                   // f32 math: fused kernels, and the fallback kernel
  dnnl::algorithm dnnl = dnnl::algorithm::undef;  // oneDNN binary primitive (exact IEEE ops), if any
  bool commutative = false;                       // oneDNN broadcasts only its second operand
  GradKind kind = GradKind::Rule;
  GradFn grad = nullptr;
  double lo = -2, hi = 2;  // test-case domain
};

void add_binary(OpRegistry& r, const Binary& b) {
  OpDef d;
  d.name = b.name;
  d.num_inputs = 2;
  d.shape = broadcast_rule;
  d.grad_kind = b.kind;
  d.grad = b.grad;
  auto f = b.ref;
  d.reference = [f](const Node&, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    ref_broadcast(in, out[0], [f](const double* x) { return f(x[0], x[1]); });
  };
  auto alg = b.dnnl;
  auto fn = b.fn;
  bool comm = b.commutative;
  if (alg == dnnl::algorithm::undef)
    d.kernel = [fn](const KernelCtx& ctx) { return loop_eltwise_kernel(ctx, fn); };
  else
    d.kernel = [alg, fn, comm](const KernelCtx& ctx) { return binary_kernel(ctx, alg, fn, comm); };
  d.elementwise = true;
  d.eltwise_f32 = b.fn;
  d.tests = binary_cases(b.lo, b.hi);
  r.add(std::move(d));
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  using A = dnnl::algorithm;
  add_binary(r, {.name = "add",
                 .ref = [](double x, double y) { return x + y; },
                 .fn = eltwise::add,
                 .dnnl = A::binary_add,
                 .commutative = true,
                 .grad = [](const GradCtx& c) { return std::vector<Tensor>{c.cotangents[0], c.cotangents[0]}; }});
  add_binary(r, {.name = "sub",
                 .ref = [](double x, double y) { return x - y; },
                 .fn = eltwise::sub,
                 .dnnl = A::binary_sub,
                 .grad = [](const GradCtx& c) { return std::vector<Tensor>{c.cotangents[0], -c.cotangents[0]}; }});
  add_binary(r, {.name = "mul",
                 .ref = [](double x, double y) { return x * y; },
                 .fn = eltwise::mul,
                 .dnnl = A::binary_mul,
                 .commutative = true,
                 .grad =
                     [](const GradCtx& c) {
                       const Tensor& g = c.cotangents[0];
                       return std::vector<Tensor>{g * c.inputs[1], g * c.inputs[0]};
                     }});
  add_binary(r, {.name = "div",
                 .ref = [](double x, double y) { return x / y; },
                 .fn = eltwise::div,
                 .dnnl = A::binary_div,
                 .grad =
                     [](const GradCtx& c) {
                       const Tensor& g = c.cotangents[0];
                       Tensor ga = g / c.inputs[1];
                       return std::vector<Tensor>{ga, -(ga * c.outputs[0])};
                     },
                 .lo = 0.5,
                 .hi = 2.0});
  add_binary(r, {.name = "pow",
                 .ref = [](double x, double y) { return std::pow(x, y); },
                 .fn = eltwise::pow,
                 .grad =
                     [](const GradCtx& c) {
                       const Tensor& g = c.cotangents[0];
                       const Tensor &a = c.inputs[0], &b = c.inputs[1];
                       // d/da a^b = b a^(b-1); d/db a^b = a^b log a (defined for a > 0).
                       return std::vector<Tensor>{g * b * pow(a, b - 1.0), g * c.outputs[0] * log(a)};
                     },
                 .lo = 0.5,
                 .hi = 2.0});
  // Ties route the cotangent to the first operand, like a subgradient.
  add_binary(r, {.name = "maximum",
                 .ref = [](double x, double y) { return x >= y ? x : y; },
                 .fn = eltwise::maximum,
                 .dnnl = A::binary_max,
                 .commutative = true,
                 .grad =
                     [](const GradCtx& c) {
                       Tensor mask = greater_equal(c.inputs[0], c.inputs[1]);
                       const Tensor& g = c.cotangents[0];
                       return std::vector<Tensor>{g * mask, g * (1.0 - mask)};
                     }});
  add_binary(r, {.name = "minimum",
                 .ref = [](double x, double y) { return x <= y ? x : y; },
                 .fn = eltwise::minimum,
                 .dnnl = A::binary_min,
                 .commutative = true,
                 .grad =
                     [](const GradCtx& c) {
                       Tensor mask = less_equal(c.inputs[0], c.inputs[1]);
                       const Tensor& g = c.cotangents[0];
                       return std::vector<Tensor>{g * mask, g * (1.0 - mask)};
                     }});
  // Comparisons: 1 or 0, piecewise constant.
  add_binary(r, {.name = "equal",
                 .ref = [](double x, double y) { return double(x == y); },
                 .fn = eltwise::equal,
                 .dnnl = A::binary_eq,
                 .commutative = true,
                 .kind = GradKind::Zero});
  add_binary(r, {.name = "not_equal",
                 .ref = [](double x, double y) { return double(x != y); },
                 .fn = eltwise::not_equal,
                 .dnnl = A::binary_ne,
                 .commutative = true,
                 .kind = GradKind::Zero});
  add_binary(r, {.name = "less",
                 .ref = [](double x, double y) { return double(x < y); },
                 .fn = eltwise::less,
                 .dnnl = A::binary_lt,
                 .kind = GradKind::Zero});
  add_binary(r, {.name = "less_equal",
                 .ref = [](double x, double y) { return double(x <= y); },
                 .fn = eltwise::less_equal,
                 .dnnl = A::binary_le,
                 .kind = GradKind::Zero});
  add_binary(r, {.name = "greater",
                 .ref = [](double x, double y) { return double(x > y); },
                 .fn = eltwise::greater,
                 .dnnl = A::binary_gt,
                 .kind = GradKind::Zero});
  add_binary(r, {.name = "greater_equal",
                 .ref = [](double x, double y) { return double(x >= y); },
                 .fn = eltwise::greater_equal,
                 .dnnl = A::binary_ge,
                 .kind = GradKind::Zero});

  OpDef w;
  w.name = "where";
  w.num_inputs = 3;
  w.shape = broadcast_rule;
  w.grad = [](const GradCtx& c) {
    const Tensor& g = c.cotangents[0];
    Tensor zero = scalar(g.graph(), 0.0);
    return std::vector<Tensor>{none(), where(c.inputs[0], g, zero), where(c.inputs[0], zero, g)};
  };
  w.reference = [](const Node&, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    ref_broadcast(in, out[0], [](const double* x) { return x[0] != 0.0 ? x[1] : x[2]; });
  };
  w.kernel = [](const KernelCtx& ctx) { return loop_eltwise_kernel(ctx, eltwise::where); };
  w.elementwise = true;
  w.eltwise_f32 = eltwise::where;
  for (auto shapes : std::vector<std::vector<Shape>>{{{2, 3}, {2, 3}, {2, 3}}, {{3, 1}, {1, 4}, {}}, {{4}, {2, 4}, {4}}}) {
    OpTestCase c = tcase(shapes, {}, -1, 1);
    c.differentiable = {false, true, true};
    c.kernel_ulp = kKernelUlp;
    w.tests.push_back(c);
  }
  r.add(std::move(w));
}

}  // namespace metagrad
