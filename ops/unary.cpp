// Unary elementwise ops and stop_gradient.
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "metagrad/ops.h"
#include "ops/eltwise_math.h"
#include "ops/families.h"
#include "ops/op_helpers.h"

namespace metagrad {

Tensor neg(const Tensor& x) { return apply("neg", {x}); }
Tensor exp(const Tensor& x) { return apply("exp", {x}); }
Tensor log(const Tensor& x) { return apply("log", {x}); }
Tensor sqrt(const Tensor& x) { return apply("sqrt", {x}); }
Tensor rsqrt(const Tensor& x) { return apply("rsqrt", {x}); }
Tensor abs(const Tensor& x) { return apply("abs", {x}); }
Tensor sign(const Tensor& x) { return apply("sign", {x}); }
Tensor square(const Tensor& x) { return apply("square", {x}); }
Tensor relu(const Tensor& x) { return apply("relu", {x}); }
Tensor leaky_relu(const Tensor& x, double alpha) { return apply("leaky_relu", {x}, {{"alpha", alpha}}); }
Tensor sigmoid(const Tensor& x) { return apply("sigmoid", {x}); }
Tensor tanh(const Tensor& x) { return apply("tanh", {x}); }
Tensor softplus(const Tensor& x) { return apply("softplus", {x}); }
Tensor stop_gradient(const Tensor& x) { return apply("stop_gradient", {x}); }
Tensor floor(const Tensor& x) { return apply("floor", {x}); }
Tensor sin(const Tensor& x) { return apply("sin", {x}); }
Tensor cos(const Tensor& x) { return apply("cos", {x}); }

namespace {

std::vector<TensorType> same_type(const std::vector<TensorType>& in, const Attrs&) {
  if (in[0].dtype != DType::f32) throw ShapeError("expects an f32 input, got " + type_str(in[0]));
  return {in[0]};
}

// A range of test inputs: [lo, hi], and [-hi, -lo] too when mirrored.
struct Range {
  double lo, hi;
  bool mirror = false;
};

struct Unary {
  const char* name;
  double (*ref)(double, double);  // (x, param)
  EltwiseFn fn;                   // f32 math (ops/eltwise_math.h): the kernel, and the op inside fused kernels
  GradKind kind = GradKind::Rule;
  // Rule from (x, y, g, param): builds g * f'(x).
  Tensor (*grad)(const Tensor& x, const Tensor& y, const Tensor& g, double param) = nullptr;
  // A oneDNN eltwise primitive as the kernel instead of `fn`: only where it is exact, so that it
  // computes the same numbers as `fn` (the transcendental ones are off by up to 1e9 ulp in
  // oneDNN 2.6; see docs/ARCHITECTURE.md, Kernel accuracy).
  dnnl::algorithm dnnl = dnnl::algorithm::undef;
  float alpha = 0.f, beta = 0.f;  // its parameters
  Range domain = {-2.0, 2.0};     // test inputs; kinked ops are mirrored away from the kink
  std::vector<Range> hard = {};   // further test inputs where f32 kernels go wrong: saturation, near 1
  const char* param = nullptr;    // float attribute name, if any
};

void add_unary(OpRegistry& r, const Unary& u) {
  OpDef d;
  d.name = u.name;
  d.num_inputs = 1;
  if (u.param) d.attrs = {{u.param, AttrKind::Float, AttrValue(0.01)}};
  d.shape = same_type;
  d.grad_kind = u.kind;
  std::string pname = u.param ? u.param : "";
  if (u.grad) {
    auto rule = u.grad;
    d.grad = [rule, pname](const GradCtx& c) {
      double p = pname.empty() ? 0.0 : attr_float(c.attrs, pname);
      return std::vector<Tensor>{rule(c.inputs[0], c.outputs[0], c.cotangents[0], p)};
    };
  }
  auto f = u.ref;
  d.reference = [f, pname](const Node& n, const std::vector<const RefTensor*>& in, std::vector<RefTensor>& out) {
    double p = pname.empty() ? 0.0 : attr_float(n.attrs, pname);
    for (size_t i = 0; i < out[0].data.size(); ++i) out[0].data[i] = f(in[0]->data[i], p);
  };
  auto alg = u.dnnl;
  auto fn = u.fn;
  float a = u.alpha, b = u.beta;
  d.kernel = [=](const KernelCtx& ctx) -> std::unique_ptr<Kernel> {
    float p = pname.empty() ? 0.f : float(attr_float(ctx.node.attrs, pname));
    if (alg == dnnl::algorithm::undef) return loop_eltwise_kernel(ctx, fn, p);
    // leaky_relu is oneDNN's relu with a negative slope.
    return eltwise_kernel(ctx, alg, pname.empty() ? a : p, b);
  };
  d.elementwise = true;
  d.eltwise_f32 = u.fn;
  d.eltwise_param = pname;
  auto cases = [&](const Range& rg, std::vector<Shape> shapes) {
    for (const Shape& s : shapes) {
      OpTestCase c = tcase({s}, {}, rg.lo, rg.hi);
      c.mirror = rg.mirror;
      c.kernel_ulp = kKernelUlp;
      d.tests.push_back(c);
    }
  };
  cases(u.domain, {{2, 3}, {}, {4, 1, 5}});
  if (u.param) {
    cases(u.domain, {{3, 4}});
    d.tests.back().attrs = {{u.param, 0.2}};
  }
  for (const Range& h : u.hard) {
    cases(h, {{4, 5}});
    d.tests.back().note = fmt::format("hard region [{}, {}]{}", h.lo, h.hi, h.mirror ? " and its negative" : "");
  }
  r.add(std::move(d));
}

}  // namespace

void register_unary_ops(OpRegistry& r) {
  using A = dnnl::algorithm;
  using T = const Tensor&;
  const Range kinked{0.2, 2.0, true}, positive{0.5, 2.0};  // kinks at 0: test away from them
  add_unary(r, {.name = "neg",
                .ref = [](double x, double) { return -x; },
                .fn = eltwise::neg,
                .grad = [](T, T, T g, double) { return -g; },
                .dnnl = A::eltwise_linear,
                .alpha = -1.f});
  add_unary(r, {.name = "exp",
                .ref = [](double x, double) { return std::exp(x); },
                .fn = eltwise::exp,
                .grad = [](T, T y, T g, double) { return g * y; },
                .hard = {{-100.0, -60.0}, {60.0, 88.0}}});  // subnormal results; near overflow
  add_unary(r, {.name = "log",
                .ref = [](double x, double) { return std::log(x); },
                .fn = eltwise::log,
                .grad = [](T x, T, T g, double) { return g / x; },
                .domain = positive,
                .hard = {{0.999, 1.001}}});
  add_unary(r, {.name = "sqrt",
                .ref = [](double x, double) { return std::sqrt(x); },
                .fn = eltwise::sqrt,
                .grad = [](T, T y, T g, double) { return g * 0.5 / y; },
                .dnnl = A::eltwise_sqrt,
                .domain = positive});
  add_unary(r, {.name = "rsqrt",
                .ref = [](double x, double) { return 1.0 / std::sqrt(x); },
                .fn = eltwise::rsqrt,
                .grad = [](T, T y, T g, double) { return g * -0.5 * (y * y * y); },
                .domain = positive});
  add_unary(r, {.name = "abs",
                .ref = [](double x, double) { return std::abs(x); },
                .fn = eltwise::abs,
                .grad = [](T x, T, T g, double) { return g * sign(x); },
                .dnnl = A::eltwise_abs,
                .domain = kinked});
  add_unary(r, {.name = "sign",
                .ref = [](double x, double) { return double((x > 0) - (x < 0)); },
                .fn = eltwise::sign,
                .kind = GradKind::Zero});
  add_unary(r, {.name = "square",
                .ref = [](double x, double) { return x * x; },
                .fn = eltwise::square,
                .grad = [](T x, T, T g, double) { return g * 2.0 * x; },
                .dnnl = A::eltwise_square});
  // relu's gradient reads its output (relu(x) > 0 exactly where x > 0), so the pre-activation can
  // die at the relu and the relu fuse into its producer: one large buffer fewer per conv block.
  add_unary(r, {.name = "relu",
                .ref = [](double x, double) { return x > 0 ? x : 0.0; },
                .fn = eltwise::relu,
                .grad = [](T, T y, T g, double) { return g * greater(y, scalar(y.graph(), 0.0)); },
                .dnnl = A::eltwise_relu,
                .domain = kinked});
  add_unary(r, {.name = "leaky_relu",
                .ref = [](double x, double a) { return x > 0 ? x : a * x; },
                .fn = eltwise::leaky_relu,
                .grad =
                    [](T x, T, T g, double a) {
                      Tensor pos = greater(x, scalar(x.graph(), 0.0));
                      return g * (pos + (1.0 - pos) * a);
                    },
                .dnnl = A::eltwise_relu,
                .domain = kinked,
                .param = "alpha"});
  add_unary(r, {.name = "sigmoid",
                .ref = [](double x, double) { return 1.0 / (1.0 + std::exp(-x)); },
                .fn = eltwise::sigmoid,
                .grad = [](T, T y, T g, double) { return g * y * (1.0 - y); },
                .hard = {{8.0, 40.0, true}}});
  add_unary(r, {.name = "tanh",
                .ref = [](double x, double) { return std::tanh(x); },
                .fn = eltwise::tanh,
                .grad = [](T, T y, T g, double) { return g * (1.0 - y * y); },
                .hard = {{4.0, 12.0, true}}});
  add_unary(r, {.name = "softplus",
                .ref = [](double x, double) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); },
                .fn = eltwise::softplus,
                .grad = [](T x, T, T g, double) { return g * sigmoid(x); },
                .hard = {{10.0, 40.0, true}}});
  add_unary(r, {.name = "floor",
                .ref = [](double x, double) { return std::floor(x); },
                .fn = eltwise::floor,
                .kind = GradKind::Zero});
  add_unary(r, {.name = "sin",
                .ref = [](double x, double) { return std::sin(x); },
                .fn = eltwise::sin,
                .grad = [](T x, T, T g, double) { return g * cos(x); }});
  add_unary(r, {.name = "cos",
                .ref = [](double x, double) { return std::cos(x); },
                .fn = eltwise::cos,
                .grad = [](T x, T, T g, double) { return -(g * sin(x)); }});
  add_unary(r, {.name = "stop_gradient",
                .ref = [](double x, double) { return x; },
                .fn = eltwise::identity,
                .kind = GradKind::StopGradient});
}

}  // namespace metagrad
