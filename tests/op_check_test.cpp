// Registry-driven op checks: for every op and every OpTestCase of its entry, the f32 kernel
// against the f64 reference, and first- and second-order gradients against central finite
// differences in f64.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "graph/op_def.h"
#include "metagrad/autodiff.h"
#include "metagrad/error.h"
#include "metagrad/executable.h"
#include "metagrad/ops.h"
#include "metagrad/reference.h"
#include "tests/accuracy_sweep.h"
#include "tests/test_util.h"

namespace metagrad {
namespace {

struct CaseId {
  std::string op;
  size_t index;
};

std::vector<CaseId> all_cases() {
  std::vector<CaseId> ids;
  for (const auto& [name, def] : OpRegistry::get().all()) {
    if (def.tests.empty()) ids.push_back({name, size_t(-1)});  // fails below: every op needs cases
    for (size_t i = 0; i < def.tests.size(); ++i) ids.push_back({name, i});
  }
  return ids;
}

RefTensor random_tensor(const TensorType& t, const OpTestCase& c, std::mt19937_64& rng) {
  RefTensor r{t.shape, std::vector<double>(size_t(t.numel()))};
  if (t.dtype == DType::i32) {
    int64_t lo = c.int_range.size() == 2 ? c.int_range[0] : 0, hi = c.int_range.size() == 2 ? c.int_range[1] : 2;
    std::uniform_int_distribution<int64_t> d(lo, hi - 1);
    for (double& v : r.data) v = double(d(rng));
  } else {
    std::uniform_real_distribution<double> d(c.lo, c.hi);
    // Values are rounded to f32 so the kernel and the reference see identical inputs.
    std::bernoulli_distribution flip(0.5);
    for (double& v : r.data) v = double(float(d(rng))) * (c.mirror && flip(rng) ? -1.0 : 1.0);
  }
  return r;
}

RefTensor random_like(const Shape& s, std::mt19937_64& rng) {
  RefTensor r{s, std::vector<double>(size_t(num_elements(s)))};
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  for (double& v : r.data) v = d(rng);
  return r;
}

bool is_diff(const OpTestCase& c, const TensorType& t, size_t i) {
  if (t.dtype != DType::f32) return false;
  return c.differentiable.empty() || (i < c.differentiable.size() && c.differentiable[i]);
}

using testing::finite_diff;

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1.0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (size_t k = 0; k < got.size(); ++k)
    ASSERT_NEAR(got[k], want[k], tol * scale) << what << " element " << k;
}

class OpCheck : public ::testing::TestWithParam<CaseId> {};

TEST_P(OpCheck, KernelAndGradients) {
  const CaseId& id = GetParam();
  const OpDef& def = OpRegistry::get().at(id.op);
  ASSERT_NE(id.index, size_t(-1)) << "op " << id.op << " has no test cases in its registry entry";
  const OpTestCase& c = def.tests[id.index];
  SCOPED_TRACE(id.op + " case " + std::to_string(id.index) + (c.note.empty() ? "" : ": " + c.note));
  std::mt19937_64 rng(1234 + id.index);

  Graph g;
  std::vector<Tensor> ins;
  RefValues feeds;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    std::string name = "in" + std::to_string(i);
    ins.push_back(input(g, name, c.inputs[i].shape, c.inputs[i].dtype));
    feeds[name] = random_tensor(c.inputs[i], c, rng);
  }
  std::vector<Value> in_vals;
  for (auto& t : ins) in_vals.push_back(t.value());
  std::vector<Value> outs = g.add_op_multi(id.op, in_vals, c.attrs, "", c.body);
  for (size_t k = 0; k < outs.size(); ++k) g.add_output("y" + std::to_string(k), outs[k]);

  // f32 kernel against the f64 reference.
  auto ref = reference_eval(g, outs, feeds);
  {
    ParamStore store;
    Executable exe(g, store);
    std::vector<std::vector<float>> f32(c.inputs.size());
    std::vector<std::vector<int32_t>> i32(c.inputs.size());
    std::vector<Feed> fs;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const auto& d = feeds["in" + std::to_string(i)].data;
      if (c.inputs[i].dtype == DType::f32) {
        f32[i].assign(d.begin(), d.end());
        fs.push_back(Feed::f32("in" + std::to_string(i), c.inputs[i].shape, f32[i]));
      } else {
        for (double v : d) i32[i].push_back(int32_t(v));
        fs.push_back(Feed::i32("in" + std::to_string(i), c.inputs[i].shape, i32[i]));
      }
    }
    exe.run(fs);
    for (size_t k = 0; k < outs.size(); ++k) {
      auto got = exe.fetch(k);
      std::vector<double> gd(got.begin(), got.end());
      for (size_t e = 0; e < gd.size(); ++e) {
        if (c.kernel_ulp >= 0)
          ASSERT_LE(accuracy::ulp_distance(got[e], float(ref[k].data[e])), c.kernel_ulp)
              << "f32 kernel (" << id.op << ") output " << k << " element " << e << ": " << gd[e] << " vs f64 "
              << ref[k].data[e];
        else
          ASSERT_NEAR(gd[e], ref[k].data[e], c.kernel_tolerance * std::max(1.0, std::abs(ref[k].data[e])))
              << "f32 kernel (" << id.op << ") output " << k << " element " << e;
      }
    }
  }

  std::vector<size_t> diff;
  for (size_t i = 0; i < ins.size(); ++i)
    if (is_diff(c, c.inputs[i], i)) diff.push_back(i);
  if (diff.empty()) return;

  // L = sum_k sum(y_k * R_k): its gradient is the vector-Jacobian product with R.
  Tensor L;
  for (Value o : outs) {
    if (g.type(o).dtype != DType::f32) continue;
    RefTensor r = random_like(g.type(o).shape, rng);
    Tensor term = sum(Tensor(&g, o) * constant(g, r.shape, r.data));
    L = L.defined() ? L + term : term;
  }
  std::vector<Tensor> wrt;
  for (size_t i : diff) wrt.push_back(ins[i]);

  if (def.grad_kind == GradKind::Undefined) {
    EXPECT_THROW(grad(L, wrt), Error);
    return;
  }
  std::vector<Tensor> g1 = grad(L, wrt);
  std::vector<Value> g1v;
  for (auto& t : g1) g1v.push_back(t.value());
  auto g1ref = reference_eval(g, g1v, feeds);
  for (size_t j = 0; j < diff.size(); ++j) {
    std::string name = "in" + std::to_string(diff[j]);
    auto fd = finite_diff(g, L.value(), feeds, name);
    if (def.grad_kind == GradKind::StopGradient) {
      for (double v : g1ref[j].data) ASSERT_EQ(v, 0.0) << "stop_gradient must cut the derivative";
      continue;
    }
    expect_close(g1ref[j].data, fd, c.tolerance, "first-order gradient of " + name);
  }
  if (!c.second_order || def.grad_kind != GradKind::Rule) return;

  // L2 = sum_j sum(dL/dx_j * S_j): its gradient is a Hessian-vector product.
  Tensor L2;
  for (size_t j = 0; j < diff.size(); ++j) {
    RefTensor s = random_like(g1[j].shape(), rng);
    Tensor term = sum(g1[j] * constant(g, s.shape, s.data));
    L2 = L2.defined() ? L2 + term : term;
  }
  std::vector<Tensor> g2 = grad(L2, wrt);
  std::vector<Value> g2v;
  for (auto& t : g2) g2v.push_back(t.value());
  auto g2ref = reference_eval(g, g2v, feeds);
  for (size_t j = 0; j < diff.size(); ++j) {
    std::string name = "in" + std::to_string(diff[j]);
    auto fd = finite_diff(g, L2.value(), feeds, name);
    expect_close(g2ref[j].data, fd, std::max(c.tolerance, 1e-5), "second-order gradient of " + name);
  }
}

std::string case_name(const ::testing::TestParamInfo<CaseId>& info) {
  return info.param.op + "_" + (info.param.index == size_t(-1) ? std::string("none") : std::to_string(info.param.index));
}

INSTANTIATE_TEST_SUITE_P(Registry, OpCheck, ::testing::ValuesIn(all_cases()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(OpCheck);

// Every registered op declares how it differentiates (rule, zero, stop) or that it cannot.
TEST(OpRegistryTest, EveryOpHasAGradientDecision) {
  for (const auto& [name, def] : OpRegistry::get().all()) {
    if (def.grad_kind == GradKind::Rule) {
      EXPECT_TRUE(bool(def.grad)) << name;
    }
    EXPECT_FALSE(def.tests.empty()) << name << " has no test cases";
  }
}

}  // namespace
}  // namespace metagrad
