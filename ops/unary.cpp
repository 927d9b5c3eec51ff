// Unary elementwise ops and stop_gradient.
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

struct Unary {
  const char* name;
  double (*ref)(double, double);  // (x, param)
  EltwiseFn fn;
  dnnl::algorithm alg;            // undef: loop kernel
  float alpha, beta;              // oneDNN eltwise parameters
  GradKind kind;
  // Rule from (x, y, g, param): builds g * f'(x).
  Tensor (*grad)(const Tensor& x, const Tensor& y, const Tensor& g, double param);
  double lo = -2, hi = 2;
  const char* param = nullptr;    // float attribute name, if any
  bool mirror = false;            // test on both sides of a kink at 0
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
  auto alg = u.alg;
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
  d.tests = {tcase({{2, 3}}, {}, u.lo, u.hi), tcase({{}}, {}, u.lo, u.hi), tcase({{4, 1, 5}}, {}, u.lo, u.hi)};
  if (u.param) d.tests.push_back(tcase({{3, 4}}, {{u.param, 0.2}}, u.lo, u.hi));
  for (auto& c : d.tests) c.mirror = u.mirror;
  r.add(std::move(d));
}

}  // namespace

void register_unary_ops(OpRegistry& r) {
  using A = dnnl::algorithm;
  using T = const Tensor&;
  add_unary(r, {"neg", [](double x, double) { return -x; }, eltwise::neg, A::eltwise_linear, -1.f, 0.f, GradKind::Rule,
                [](T, T, T g, double) { return -g; }});
  add_unary(r, {"exp", [](double x, double) { return std::exp(x); }, eltwise::exp, A::eltwise_exp, 0.f, 0.f,
                GradKind::Rule, [](T, T y, T g, double) { return g * y; }});
  add_unary(r, {"log", [](double x, double) { return std::log(x); }, eltwise::log, A::eltwise_log, 0.f, 0.f,
                GradKind::Rule, [](T x, T, T g, double) { return g / x; }, 0.5, 2.0});
  add_unary(r, {"sqrt", [](double x, double) { return std::sqrt(x); }, eltwise::sqrt, A::eltwise_sqrt, 0.f, 0.f,
                GradKind::Rule, [](T, T y, T g, double) { return g * 0.5 / y; }, 0.5, 2.0});
  add_unary(r, {"rsqrt", [](double x, double) { return 1.0 / std::sqrt(x); }, eltwise::rsqrt, A::eltwise_pow, 1.f,
                -0.5f, GradKind::Rule, [](T, T y, T g, double) { return g * -0.5 * (y * y * y); }, 0.5, 2.0});
  // Kinked ops (abs, relu, leaky_relu) are checked on [-2, -0.2] ∪ [0.2, 2], away from the kink.
  add_unary(r, {"abs", [](double x, double) { return std::abs(x); }, eltwise::abs, A::eltwise_abs, 0.f, 0.f,
                GradKind::Rule, [](T x, T, T g, double) { return g * sign(x); }, 0.2, 2.0, nullptr, true});
  add_unary(r, {"sign", [](double x, double) { return double((x > 0) - (x < 0)); }, eltwise::sign, A::undef, 0.f, 0.f,
                GradKind::Zero, nullptr});
  add_unary(r, {"square", [](double x, double) { return x * x; }, eltwise::square, A::eltwise_square, 0.f, 0.f,
                GradKind::Rule, [](T x, T, T g, double) { return g * 2.0 * x; }});
  // relu's gradient reads its output (relu(x) > 0 exactly where x > 0), so the pre-activation can
  // die at the relu and the relu fuse into its producer: one large buffer fewer per conv block.
  add_unary(r, {"relu", [](double x, double) { return x > 0 ? x : 0.0; }, eltwise::relu, A::eltwise_relu, 0.f, 0.f,
                GradKind::Rule, [](T, T y, T g, double) { return g * greater(y, scalar(y.graph(), 0.0)); }, 0.2, 2.0, nullptr, true});
  add_unary(r, {"leaky_relu", [](double x, double a) { return x > 0 ? x : a * x; }, eltwise::leaky_relu,
                A::eltwise_relu, 0.f, 0.f, GradKind::Rule,
                [](T x, T, T g, double a) {
                  Tensor pos = greater(x, scalar(x.graph(), 0.0));
                  return g * (pos + (1.0 - pos) * a);
                },
                0.2, 2.0, "alpha", true});
  add_unary(r, {"sigmoid", [](double x, double) { return 1.0 / (1.0 + std::exp(-x)); }, eltwise::sigmoid,
                A::eltwise_logistic, 0.f, 0.f, GradKind::Rule, [](T, T y, T g, double) { return g * y * (1.0 - y); }});
  add_unary(r, {"tanh", [](double x, double) { return std::tanh(x); }, eltwise::tanh, A::eltwise_tanh, 0.f, 0.f,
                GradKind::Rule, [](T, T y, T g, double) { return g * (1.0 - y * y); }});
  add_unary(r, {"softplus", [](double x, double) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); },
                eltwise::softplus, A::eltwise_soft_relu, 0.f, 0.f, GradKind::Rule,
                [](T x, T, T g, double) { return g * sigmoid(x); }});
  // oneDNN 2.6 has no floor, sine or cosine primitive: loop kernels.
  add_unary(r, {"floor", [](double x, double) { return std::floor(x); }, eltwise::floor, A::undef, 0.f, 0.f,
                GradKind::Zero, nullptr});
  add_unary(r, {"sin", [](double x, double) { return std::sin(x); }, eltwise::sin, A::undef, 0.f, 0.f, GradKind::Rule,
                [](T x, T, T g, double) { return g * cos(x); }});
  add_unary(r, {"cos", [](double x, double) { return std::cos(x); }, eltwise::cos, A::undef, 0.f, 0.f, GradKind::Rule,
                [](T x, T, T g, double) { return -(g * sin(x)); }});
  add_unary(r, {"stop_gradient", [](double x, double) { return x; }, eltwise::identity, A::undef, 0.f, 0.f,
                GradKind::StopGradient, nullptr});
}

}  // namespace metagrad
